/**
 * WADO-RS (PS3.18 §10.4): instances, metadata, frames and bulk data.
 *
 * Everything streams. Instances go out as the stored bytes, one object after another from the object
 * store, inside `multipart/related; type="application/dicom"`, written into the response through a ring
 * of a few reusable buffers (object-parts.ts) that is also the back-pressure, so a 10 GB study costs a
 * few MiB of memory. Frames are
 * one ranged read per fragment range recorded at ingest (`instance.frames`), bulk data one ranged read
 * (`instance.bulk_data`). Metadata is read from the index in pages and streamed as a JSON array.
 *
 * Negotiation (see media-types.ts): instances are served as stored, or decompressed to Explicit VR Little
 * Endian when asked for `transfer-syntax=1.2.840.10008.1.2.1` (decompress.ts); frames as their stored
 * encoding (image/jpeg, image/jls, image/jp2, image/jphc, image/dicom-rle, application/octet-stream for
 * native data) or decoded to application/octet-stream (Explicit VR Little Endian); bulk data as
 * application/octet-stream, single part when the client asks for it.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { rowToStored, type InstanceRow as DbInstanceRow, type StoredInstance } from '@portico/db';
import { PorticoError } from '@portico/errors';
import type { ObjectStore } from '@portico/storage';
import type { RouteDeps } from '../deps.ts';
import { absolutizeBulkDataUris, declareUtf8, type DicomJson } from '../dicom-json.ts';
import { multipartContentType, negotiateBulkData, negotiateFrames, negotiateInstances, parseAccept, requireDicomJson } from '../media-types.ts';
import { closeDelimiter, newBoundary, partHead } from '../multipart.ts';
import { discardOpened, openForSending, writeObjectParts } from '../object-parts.ts';
import { instanceUrl, serviceBase } from '../urls.ts';
import { isValidUid } from '@portico/dicom';
import { canDecompress, sendDecodedFrames, sendDecompressedInstances } from './decompress.ts';
import { answerNotModified, describeScope, openObject, scopeEtag, scopeSql, type PixelScope } from '../pixels.ts';
import { realignBits } from '@portico/imaging';

type Scope = PixelScope;

type Params = { study: string; series?: string; sop?: string; frames?: string; '*'?: string };
type Req = FastifyRequest<{ Params: Params }>;

const PIXEL_DATA_TAGS = new Set(['7FE00010', '7FE00008', '7FE00009']);
const METADATA_PAGE = 200;

function scopeOf(req: Req): Scope {
  const { study, series, sop } = req.params;
  for (const uid of [study, series, sop]) {
    if (uid !== undefined && !isValidUid(uid)) throw new PorticoError('BAD_REQUEST', 'a UID in the URL is not a valid UID');
  }
  return { study, series, sop };
}

interface FrameInstance extends StoredInstance {
  readonly rows: number | null;
  readonly columns: number | null;
  readonly bitsAllocated: number | null;
  readonly samplesPerPixel: number | null;
}

/** One instance within its study/series, with what frame and bulk data retrieval need; 404 when absent. */
async function findScopedInstance(deps: RouteDeps, scope: Scope): Promise<FrameInstance> {
  const params: unknown[] = [];
  const res = await deps.db.query<
    DbInstanceRow & { rows: number | null; columns: number | null; bits_allocated: string | null; samples_per_pixel: string | null }
  >(
    `SELECT i.instance_pk, i.sop_instance_uid, se.series_instance_uid, st.study_instance_uid, i.sop_class_uid,
            i.transfer_syntax_uid, i.object_key, i.object_size, i.number_of_frames, i.frames, i.bulk_data,
            i.pixel_data_encapsulated, i.received_at, i.rows, i.columns,
            i.json #>> '{00280100,Value,0}' AS bits_allocated, i.json #>> '{00280002,Value,0}' AS samples_per_pixel
       FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
      WHERE ${scopeSql(scope, params)}`,
    params,
  );
  const r = res.rows[0];
  if (!r) throw new PorticoError('NOT_FOUND', `${describeScope(scope)} not found`);
  const num = (v: string | null): number | null => (v === null || !Number.isFinite(Number(v)) ? null : Number(v));
  return { ...rowToStored(r), rows: r.rows, columns: r.columns, bitsAllocated: num(r.bits_allocated), samplesPerPixel: num(r.samples_per_pixel) };
}

/**
 * Frame bytes. Native frames of Bits Allocated 1 are bit-packed across frame boundaries (PS3.5 §8.1.1):
 * a frame that starts inside a byte is read whole and shifted so that it starts at bit 0, as PS3.18
 * §8.7.3.3.2 asks of uncompressed frames.
 */
async function* frameBytes(store: ObjectStore, inst: FrameInstance, frameNumber: number): AsyncGenerator<Buffer> {
  const ranges = inst.frames[frameNumber - 1]!;
  const packed = !inst.pixelDataEncapsulated && inst.bitsAllocated === 1 && inst.rows && inst.columns;
  if (packed) {
    const bits = inst.rows! * inst.columns! * (inst.samplesPerPixel ?? 1);
    const shift = ((frameNumber - 1) * bits) % 8;
    if (shift !== 0) {
      const r = ranges[0]!;
      const chunks: Buffer[] = [];
      for await (const c of (await openObject(store, inst.objectKey, { start: r.offset, end: r.offset + r.length - 1 })) as AsyncIterable<Buffer>)
        chunks.push(c);
      yield realignBits(Buffer.concat(chunks), shift, bits);
      return;
    }
  }
  for (const r of ranges) {
    if (r.length === 0) continue;
    yield* (await openObject(store, inst.objectKey, { start: r.offset, end: r.offset + r.length - 1 })) as AsyncIterable<Buffer>;
  }
}

function frameLength(inst: FrameInstance, frameNumber: number): number {
  if (!inst.pixelDataEncapsulated && inst.bitsAllocated === 1 && inst.rows && inst.columns) {
    const bits = inst.rows * inst.columns * (inst.samplesPerPixel ?? 1);
    if (((frameNumber - 1) * bits) % 8 !== 0) return Math.ceil(bits / 8);
  }
  return inst.frames[frameNumber - 1]!.reduce((n, r) => n + r.length, 0);
}

/** Parses `1,3,5` (1-based). @throws BAD_REQUEST for syntax, NOT_FOUND for numbers beyond the instance */
export function parseFrameList(list: string, numberOfFrames: number): number[] {
  if (!/^\s*\d+\s*(,\s*\d+\s*)*$/.test(list)) throw new PorticoError('BAD_REQUEST', 'frame list must be comma-separated frame numbers (1-based)');
  const frames = list.split(',').map((s) => Number(s.trim()));
  if (frames.some((n) => n < 1)) throw new PorticoError('BAD_REQUEST', 'frame numbers start at 1');
  const beyond = frames.filter((n) => n > numberOfFrames);
  if (beyond.length > 0) throw new PorticoError('NOT_FOUND', `frame ${beyond[0]} does not exist: the instance has ${numberOfFrames} frame(s)`);
  return frames;
}

/** Parses a single `bytes=` range against a value of `size` bytes; null when absent, malformed or unsatisfiable (then ignored, RFC 9110 §14.2). */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '') || size === 0) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : null;
}

export async function wadoRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const root = deps.config.http.dicomwebRoot;
  const { store } = deps;

  // --- instances -------------------------------------------------------------------------------
  const retrieve = async (req: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const scope = scopeOf(req);
    const accept = parseAccept(req.headers.accept);
    const params: unknown[] = [];
    const res = await deps.db.query<{ sop_instance_uid: string; transfer_syntax_uid: string; object_key: string; object_size: string }>(
      `SELECT i.sop_instance_uid, i.transfer_syntax_uid, i.object_key, i.object_size
         FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
        WHERE ${scopeSql(scope, params)}
        ORDER BY se.series_pk, i.instance_pk`,
      params,
    );
    if (res.rows.length === 0) throw new PorticoError('NOT_FOUND', `${describeScope(scope)} not found`);
    const mode = negotiateInstances(accept, new Set(res.rows.map((r) => r.transfer_syntax_uid)), canDecompress);
    const etag = await scopeEtag(deps, scope, 'instances', mode);
    if (etag && answerNotModified(req, reply, etag)) return reply;
    if (mode === 'decompress') return sendDecompressedInstances(deps, reply, scope, res.rows);
    const boundary = newBoundary();
    // Open the first object before answering, so a store outage is a proper 503 rather than a cut body.
    const first = await openForSending(store, res.rows[0]!.object_key);
    // The body is written straight into the response with a ring of reusable buffers (object-parts.ts):
    // a Readable in between allocated a buffer per chunk and cost more CPU than the bytes.
    reply.hijack();
    // Headers set on the reply so far (CORS, ETag) go out with ours.
    const head: Record<string, string | number | string[]> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) head[k] = v;
    head['content-type'] = multipartContentType('application/dicom', boundary);
    reply.raw.writeHead(200, head);
    if (req.method === 'HEAD') {
      discardOpened(first);
      reply.raw.end();
      return reply;
    }
    const rows = res.rows;
    try {
      await writeObjectParts(
        reply.raw,
        store,
        {
          count: rows.length,
          keyOf: (i) => rows[i]!.object_key,
          headOf: (i) =>
            partHead(boundary, i, {
              'Content-Type': `application/dicom; transfer-syntax=${rows[i]!.transfer_syntax_uid}`,
              'Content-Length': rows[i]!.object_size,
            }),
          tail: closeDelimiter(boundary, rows.length),
        },
        first,
      );
    } catch (err) {
      // The head is out: a body cut short is all that is left to tell the client.
      req.log.error({ err, scope: describeScope(scope) }, 'WADO-RS retrieve failed mid-body');
      reply.raw.destroy(err as Error);
    }
    return reply;
  };

  // --- metadata --------------------------------------------------------------------------------
  const metadata = async (req: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const scope = scopeOf(req);
    requireDicomJson(parseAccept(req.headers.accept));
    const base = serviceBase(req, root);
    const etag = await scopeEtag(deps, scope, 'metadata', base);
    if (etag && answerNotModified(req, reply, etag)) return reply;
    const page = async (after: string): Promise<Array<{ instance_pk: string; sop_instance_uid: string; series_instance_uid: string; json: DicomJson }>> => {
      const params: unknown[] = [];
      const where = scopeSql(scope, params);
      params.push(after, METADATA_PAGE);
      const res = await deps.db.query<{ instance_pk: string; sop_instance_uid: string; series_instance_uid: string; json: DicomJson }>(
        `SELECT i.instance_pk, i.sop_instance_uid, se.series_instance_uid, i.json
           FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
          WHERE ${where} AND i.instance_pk > $${params.length - 1}
          ORDER BY i.instance_pk LIMIT $${params.length}`,
        params,
      );
      return res.rows;
    };
    const firstPage = await page('0');
    if (firstPage.length === 0) throw new PorticoError('NOT_FOUND', `${describeScope(scope)} not found`);
    async function* body(): AsyncGenerator<string> {
      let rows = firstPage;
      let n = 0;
      yield '[';
      while (rows.length > 0) {
        for (const r of rows) {
          const ds = declareUtf8(absolutizeBulkDataUris(r.json, instanceUrl(base, scope.study, r.series_instance_uid, r.sop_instance_uid)));
          yield (n++ === 0 ? '' : ',') + JSON.stringify(ds);
        }
        rows = rows.length < METADATA_PAGE ? [] : await page(rows[rows.length - 1]!.instance_pk);
      }
      yield ']';
    }
    return reply
      .code(200)
      .type('application/dicom+json')
      .send(Readable.from(body(), { objectMode: false }));
  };

  // --- frames ----------------------------------------------------------------------------------
  const sendFrames = async (reply: FastifyReply, inst: FrameInstance, frames: number[], accept: ReturnType<typeof parseAccept>): Promise<FastifyReply> => {
    const t = negotiateFrames(accept, inst.transferSyntaxUid, inst.pixelDataEncapsulated, canDecompress);
    if (t.decode)
      return sendDecodedFrames(
        deps,
        reply,
        { study: inst.studyInstanceUid, series: inst.seriesInstanceUid, sop: inst.sopInstanceUid },
        frames,
        t.type,
        t.partContentType,
      );
    const boundary = newBoundary();
    async function* body(): AsyncGenerator<Buffer> {
      let i = 0;
      for (const n of frames) {
        yield partHead(boundary, i++, { 'Content-Type': t.partContentType, 'Content-Length': frameLength(inst, n) });
        yield* frameBytes(store, inst, n);
      }
      yield closeDelimiter(boundary, i);
    }
    return reply
      .code(200)
      .type(multipartContentType(t.type, boundary))
      .send(Readable.from(body(), { objectMode: false }));
  };

  const frames = async (req: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const scope = scopeOf(req);
    const accept = parseAccept(req.headers.accept);
    const inst = await findScopedInstance(deps, scope);
    // Deflated data sets have no frame ranges in the index; their frames are decoded by inflating (decompress.ts).
    const deflated = inst.transferSyntaxUid === '1.2.840.10008.1.2.1.99' && inst.numberOfFrames > 0;
    if (inst.frames.length === 0 && !deflated)
      throw new PorticoError('NOT_FOUND', `instance ${inst.sopInstanceUid} has no pixel data frames that can be served`);
    return sendFrames(reply, inst, parseFrameList(req.params.frames ?? '', inst.frames.length || inst.numberOfFrames), accept);
  };

  // --- bulk data -------------------------------------------------------------------------------
  const bulkdata = async (req: Req, reply: FastifyReply): Promise<FastifyReply> => {
    const scope = scopeOf(req);
    const accept = parseAccept(req.headers.accept);
    const tagPath = (req.params['*'] ?? '').toUpperCase();
    if (!/^[0-9A-F]{8}(\/\d+\/[0-9A-F]{8})*$/.test(tagPath))
      throw new PorticoError('BAD_REQUEST', 'bulk data path must be a tag path such as 7FE00010 or 00540016/0/00181072');
    const inst = await findScopedInstance(deps, scope);
    // Encapsulated pixel data has no single value to send: it goes out frame by frame, as its frames resource.
    if (PIXEL_DATA_TAGS.has(tagPath) && inst.pixelDataEncapsulated) {
      if (inst.frames.length === 0) throw new PorticoError('NOT_FOUND', `instance ${inst.sopInstanceUid} has no pixel data frames that can be served`);
      return sendFrames(
        reply,
        inst,
        inst.frames.map((_, i) => i + 1),
        accept,
      );
    }
    const range = inst.bulkData[tagPath];
    if (!range) throw new PorticoError('NOT_FOUND', `instance ${inst.sopInstanceUid} has no bulk data at ${tagPath}`);
    const mode = negotiateBulkData(accept);
    if (mode === 'single') {
      const sub = parseRange(req.headers.range, range.length);
      const start = range.offset + (sub?.start ?? 0);
      const length = sub ? sub.end - sub.start + 1 : range.length;
      const stream = length > 0 ? await openObject(store, inst.objectKey, { start, end: start + length - 1 }) : Readable.from([]);
      reply.header('accept-ranges', 'bytes').header('content-length', length);
      if (sub) reply.code(206).header('content-range', `bytes ${sub.start}-${sub.end}/${range.length}`);
      return reply.type('application/octet-stream').send(stream);
    }
    const boundary = newBoundary();
    const stream = range.length > 0 ? await openObject(store, inst.objectKey, { start: range.offset, end: range.offset + range.length - 1 }) : undefined;
    async function* body(): AsyncGenerator<Buffer> {
      yield partHead(boundary, 0, { 'Content-Type': 'application/octet-stream', 'Content-Length': range!.length });
      if (stream) yield* stream as AsyncIterable<Buffer>;
      yield closeDelimiter(boundary, 1);
    }
    return reply
      .code(200)
      .type(multipartContentType('application/octet-stream', boundary))
      .send(Readable.from(body(), { objectMode: false }));
  };

  const s = `${root}/studies/:study`;
  const se = `${s}/series/:series`;
  const i = `${se}/instances/:sop`;
  app.get(s, retrieve);
  app.get(se, retrieve);
  app.get(i, retrieve);
  app.get(`${s}/metadata`, metadata);
  app.get(`${se}/metadata`, metadata);
  app.get(`${i}/metadata`, metadata);
  app.get(`${i}/frames/:frames`, frames);
  app.get(`${i}/bulkdata/*`, bulkdata);
}
