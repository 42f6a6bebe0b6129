/**
 * WADO-URI (PS3.18 §9 "URI Service", formerly PS3.18 2011 §8): `GET <wadoUriPath>?requestType=WADO&studyUID=…
 * &seriesUID=…&objectUID=…` answering one object as `application/dicom` (as stored, or decompressed with
 * `transferSyntax=1.2.840.10008.1.2.1`) or rendered as `image/jpeg` / `image/png` with frameNumber,
 * rows/columns (fit inside, aspect kept), windowCenter/windowWidth, region and imageQuality.
 *
 * Refused with a 400 problem: a missing or other requestType, missing or invalid UIDs, `anonymize=yes`
 * (we do not de-identify on the fly, and answering identified data to a client that asked for anonymised
 * data would be worse than refusing), presentationUID/presentationSeriesUID (presentation states are not
 * applied), unknown parameters and malformed values. A content type we cannot produce is a 406.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isValidUid } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { DEFAULT_JPEG_QUALITY, EXPLICIT_VR_LITTLE_ENDIAN, MAX_VIEWPORT, parseQuality, type RenderOptions } from '@portico/imaging';
import type { RouteDeps } from '../deps.ts';
import { answerNotModified, etagOf, findPixelInstance, openObject } from '../pixels.ts';
import { canDecompress, decompressed } from './decompress.ts';
import { sendRendered } from './rendered.ts';

type Query = Record<string, string | string[] | undefined>;

const KNOWN = new Set([
  'requestType',
  'studyUID',
  'seriesUID',
  'objectUID',
  'contentType',
  'charset',
  'anonymize',
  'annotation',
  'rows',
  'columns',
  'region',
  'windowCenter',
  'windowWidth',
  'frameNumber',
  'imageQuality',
  'presentationUID',
  'presentationSeriesUID',
  'transferSyntax',
]);

function one(q: Query, k: string): string | undefined {
  const v = q[k];
  if (Array.isArray(v)) {
    if (v.length > 1) throw new PorticoError('BAD_REQUEST', `${k} may be given once`);
    return v[0];
  }
  return v;
}

function positiveInt(v: string, what: string, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < 1 || n > max) throw new PorticoError('BAD_REQUEST', `${what} must be an integer from 1 to ${max}`);
  return n;
}

/** The rendering options of a WADO-URI image request. */
export function wadoUriRenderOptions(q: Query, mediaType: 'image/jpeg' | 'image/png'): { opts: RenderOptions; frame: number } {
  const rows = one(q, 'rows');
  const columns = one(q, 'columns');
  const wc = one(q, 'windowCenter');
  const ww = one(q, 'windowWidth');
  const region = one(q, 'region');
  const quality = one(q, 'imageQuality');
  const frame = one(q, 'frameNumber');
  if ((wc === undefined) !== (ww === undefined)) throw new PorticoError('BAD_REQUEST', 'windowCenter and windowWidth go together');
  let window: RenderOptions['window'];
  if (wc !== undefined && ww !== undefined) {
    const center = Number(wc);
    const width = Number(ww);
    if (wc.trim() === '' || !Number.isFinite(center) || !(width > 0))
      throw new PorticoError('BAD_REQUEST', 'windowCenter must be a number and windowWidth a number above 0');
    window = { center, width };
  }
  let relativeRegion: RenderOptions['relativeRegion'];
  if (region !== undefined) {
    const r = region.split(',').map((s) => Number(s.trim()));
    if (r.length !== 4 || r.some((x) => !Number.isFinite(x) || x < 0 || x > 1) || r[0]! >= r[2]! || r[1]! >= r[3]!)
      throw new PorticoError('BAD_REQUEST', 'region must be x1,y1,x2,y2 as fractions 0..1 of the image with x1 < x2 and y1 < y2');
    relativeRegion = { x1: r[0]!, y1: r[1]!, x2: r[2]!, y2: r[3]! };
  }
  // rows/columns bound the output; one alone leaves the other side free (aspect kept).
  const viewport =
    rows !== undefined || columns !== undefined
      ? {
          width: columns !== undefined ? positiveInt(columns, 'columns', MAX_VIEWPORT) : MAX_VIEWPORT,
          height: rows !== undefined ? positiveInt(rows, 'rows', MAX_VIEWPORT) : MAX_VIEWPORT,
        }
      : undefined;
  return {
    opts: { mediaType, quality: quality !== undefined ? parseQuality(quality) : DEFAULT_JPEG_QUALITY, window, viewport, relativeRegion },
    frame: frame !== undefined ? positiveInt(frame, 'frameNumber', 2 ** 31 - 1) : 1,
  };
}

/** The first content type of the list we can produce (`*\/*` and `image/*` → image/jpeg). Default: image/jpeg. */
export function wadoUriContentType(value: string | undefined): 'application/dicom' | 'image/jpeg' | 'image/png' {
  if (value === undefined || value.trim() === '') return 'image/jpeg';
  for (const t of value.split(',').map((s) => s.split(';')[0]!.trim().toLowerCase())) {
    if (t === 'application/dicom' || t === 'image/jpeg' || t === 'image/png') return t;
    if (t === '*/*' || t === 'image/*') return 'image/jpeg';
  }
  throw new PorticoError('NOT_ACCEPTABLE', `contentType ${value} cannot be produced: use application/dicom, image/jpeg or image/png`);
}

export async function wadoUriRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  app.get(deps.config.http.wadoUriPath, async (req: FastifyRequest<{ Querystring: Query }>, reply: FastifyReply) => {
    const q = req.query;
    for (const k of Object.keys(q)) if (!KNOWN.has(k)) throw new PorticoError('BAD_REQUEST', `unknown WADO-URI parameter ${k}`);
    if (one(q, 'requestType') !== 'WADO') throw new PorticoError('BAD_REQUEST', 'requestType must be WADO');
    const study = one(q, 'studyUID');
    const series = one(q, 'seriesUID');
    const sop = one(q, 'objectUID');
    for (const [k, v] of [
      ['studyUID', study],
      ['seriesUID', series],
      ['objectUID', sop],
    ] as const) {
      if (v === undefined || !isValidUid(v)) throw new PorticoError('BAD_REQUEST', `${k} is required and must be a valid UID`);
    }
    const anonymize = one(q, 'anonymize');
    if (anonymize !== undefined && anonymize !== 'no')
      throw new PorticoError('BAD_REQUEST', 'anonymize is not supported: de-identification on retrieval is not offered');
    if (one(q, 'presentationUID') !== undefined || one(q, 'presentationSeriesUID') !== undefined)
      throw new PorticoError('BAD_REQUEST', 'presentationUID is not supported: presentation states are not applied');

    const contentType = wadoUriContentType(one(q, 'contentType'));
    const inst = await findPixelInstance(deps, { study: study!, series: series!, sop: sop! });
    if (contentType !== 'application/dicom') {
      const { opts, frame } = wadoUriRenderOptions(q, contentType);
      return sendRendered(deps, req, reply, inst, frame, opts);
    }
    for (const k of ['rows', 'columns', 'region', 'windowCenter', 'windowWidth', 'frameNumber', 'imageQuality'])
      if (one(q, k) !== undefined) throw new PorticoError('BAD_REQUEST', `${k} applies to image content types, not application/dicom`);
    const ts = one(q, 'transferSyntax');
    const decompress = ts !== undefined && ts !== inst.transferSyntaxUid && ts === EXPLICIT_VR_LITTLE_ENDIAN;
    if (ts !== undefined && ts !== inst.transferSyntaxUid && !(decompress && canDecompress(inst.transferSyntaxUid)))
      throw new PorticoError(
        'NOT_ACCEPTABLE',
        `the object is stored as ${inst.transferSyntaxUid}; it is available as stored or as ${EXPLICIT_VR_LITTLE_ENDIAN}`,
      );
    if (answerNotModified(req, reply, etagOf(inst, 'dicom', decompress ? EXPLICIT_VR_LITTLE_ENDIAN : '*'))) return reply;
    if (decompress) {
      const d = await decompressed(deps, inst);
      return reply
        .code(200)
        .type('application/dicom')
        .header('content-length', d.length)
        .send(Readable.from(d.body, { objectMode: false }));
    }
    const stream = await openObject(deps.store, inst.objectKey);
    return reply.code(200).type('application/dicom').header('content-length', inst.objectSize).send(stream);
  });
}
