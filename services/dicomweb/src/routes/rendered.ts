/**
 * WADO-RS rendered and thumbnail resources (PS3.18 §8.3.5, §9, §10.4.1.1.4–5) at study, series, instance
 * and frame level: one consumer image (image/jpeg or image/png) made by the pixel pipeline of
 * @portico/imaging from one frame's bytes (one ranged read) and the header in the index.
 *
 * - Study and series level render a representative instance: the middle image of the (first image) series
 *   (see findPixelInstance). Instance level renders the first frame; `/frames/{n}/rendered` frame n.
 *   Multi-frame media types (GIF, video) are not offered: a list of several frames is a 406.
 * - Thumbnails are renderings that fit in `thumbnailSize` (setting) unless a viewport is given.
 * - Query parameters: window, viewport, quality, annotation (accepted, not drawn), accept; any other is a 400.
 * - ETag per stored copy and parameters; If-None-Match → 304 before any pixel is read.
 * - What cannot be decoded or is not an image is a 406 problem+json, never a crash.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isValidUid } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { parseRenderedQuery, pixelModuleFromJson, renderFrame, type RenderOptions } from '@portico/imaging';
import type { RouteDeps } from '../deps.ts';
import { parseAccept } from '../media-types.ts';
import { answerNotModified, binaryResolver, etagOf, findPixelInstance, readFrame, type PixelInstance, type PixelScope } from '../pixels.ts';

type Params = { study: string; series?: string; sop?: string; frames?: string };
type Req = FastifyRequest<{ Params: Params; Querystring: Record<string, string | string[] | undefined> }>;

function scopeOf(req: Req): PixelScope {
  const { study, series, sop } = req.params;
  for (const uid of [study, series, sop]) {
    if (uid !== undefined && !isValidUid(uid)) throw new PorticoError('BAD_REQUEST', 'a UID in the URL is not a valid UID');
  }
  return { study, series, sop };
}

function frameOf(req: Req): number | undefined {
  const list = req.params.frames;
  if (list === undefined) return undefined;
  if (!/^\s*\d+\s*(,\s*\d+\s*)*$/.test(list)) throw new PorticoError('BAD_REQUEST', 'frame list must be comma-separated frame numbers (1-based)');
  const frames = list.split(',').map((s) => Number(s.trim()));
  if (frames.length > 1)
    throw new PorticoError('NOT_ACCEPTABLE', 'several frames would need a multi-frame media type (GIF, video), which is not offered; ask for one frame');
  if (frames[0]! < 1) throw new PorticoError('BAD_REQUEST', 'frame numbers start at 1');
  return frames[0];
}

/** Renders one frame of `inst` and answers it (or 304), with the ETag of the stored copy and the options. */
export async function sendRendered(
  deps: RouteDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  inst: PixelInstance,
  frameNumber: number,
  opts: RenderOptions,
): Promise<FastifyReply> {
  const module = pixelModuleFromJson(inst.json);
  if (frameNumber > Math.max(inst.frames.length, 1) || frameNumber > module.numberOfFrames)
    throw new PorticoError('NOT_FOUND', `frame ${frameNumber} does not exist: the instance has ${inst.frames.length || module.numberOfFrames} frame(s)`);
  const etag = etagOf(inst, 'rendered', frameNumber, opts);
  if (answerNotModified(req, reply, etag)) return reply;
  const frame = await readFrame(deps.store, inst, frameNumber);
  const out = await renderFrame(
    { transferSyntaxUid: inst.transferSyntaxUid, module, json: inst.json, frameNumber, frame, resolveBinary: binaryResolver(deps.store, inst) },
    opts,
  );
  return reply
    .code(200)
    .type(opts.mediaType)
    .header('content-length', out.body.length)
    .header('cache-control', 'private, max-age=0, must-revalidate')
    .send(out.body);
}

export async function renderedRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const root = deps.config.http.dicomwebRoot;
  const thumbnailSize = deps.config.http.thumbnailSize;

  const handler =
    (kind: 'rendered' | 'thumbnail') =>
    async (req: Req, reply: FastifyReply): Promise<FastifyReply> => {
      const scope = scopeOf(req);
      const frame = frameOf(req);
      const accept = parseAccept(req.headers.accept).map((e) => e.type);
      let opts = parseRenderedQuery(req.query, accept);
      if (kind === 'thumbnail' && !opts.viewport) opts = { ...opts, viewport: { width: thumbnailSize, height: thumbnailSize } };
      const inst = await findPixelInstance(deps, scope);
      return sendRendered(deps, req, reply, inst, frame ?? 1, opts);
    };

  const s = `${root}/studies/:study`;
  const se = `${s}/series/:series`;
  const i = `${se}/instances/:sop`;
  const f = `${i}/frames/:frames`;
  for (const kind of ['rendered', 'thumbnail'] as const) {
    for (const path of [s, se, i, f]) app.get(`${path}/${kind}`, handler(kind));
  }
}
