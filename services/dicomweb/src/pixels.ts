/**
 * What the pixel-serving routes (rendered, thumbnail, WADO-URI, decompressed retrieval) share: finding the
 * instance, or a representative one of a series or study, reading one frame's bytes with ranged reads,
 * resolving bulk LUT data, and the ETag of a stored copy.
 *
 * ETags: an instance is immutable until it is replaced by a re-send, which gives it a new `received_at`
 * (and possibly a new row). `instance_pk` + `received_at` therefore identify the stored copy; a rendered
 * answer adds the parameters that shaped it, so each representation has its own tag (RFC 9110 §8.8.3).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createInflate, createInflateRaw } from 'node:zlib';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { rowToStored, type InstanceRow as DbInstanceRow, type StoredInstance } from '@portico/db';
import { parseInstance, readFileMetaInformation, TRANSFER_SYNTAX, type DicomJsonDataset } from '@portico/dicom';
import { PorticoError, toPorticoError } from '@portico/errors';
import type { ObjectStore } from '@portico/storage';
import type { RouteDeps } from './deps.ts';
import { realignBits } from './routes/wado-rs.ts';

export interface PixelScope {
  readonly study: string;
  readonly series?: string | undefined;
  readonly sop?: string | undefined;
}

export interface PixelInstance extends StoredInstance {
  readonly json: DicomJsonDataset;
}

const COLUMNS = `i.instance_pk, i.sop_instance_uid, se.series_instance_uid, st.study_instance_uid, i.sop_class_uid,
  i.transfer_syntax_uid, i.object_key, i.object_size, i.number_of_frames, i.frames, i.bulk_data,
  i.pixel_data_encapsulated, i.received_at, i.json`;
const FROM = 'FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk';
/** Instance Number as an integer for ordering (it is IS, may be empty or malformed). */
const INSTANCE_NUMBER = `CASE WHEN i.instance_number ~ '^\\s*[+-]?\\d{1,9}\\s*$' THEN i.instance_number::int END`;
const SERIES_NUMBER = `CASE WHEN se.series_number ~ '^\\s*[+-]?\\d{1,9}\\s*$' THEN se.series_number::int END`;

function toInstance(r: DbInstanceRow & { json: DicomJsonDataset }): PixelInstance {
  return { ...rowToStored(r), json: r.json };
}

function describe(scope: PixelScope): string {
  return scope.sop ? `instance ${scope.sop}` : scope.series ? `series ${scope.series}` : `study ${scope.study}`;
}

/**
 * The instance a pixel request is about. At instance level, that instance. At series level, the middle
 * image of the series by Instance Number; at study level, the middle image of its first image series by
 * Series Number (PS3.18 §9.3 lets the origin server choose the representative instance). "Image" means an
 * instance with Rows and at least one locatable frame (or a deflated one whose frames we locate by reading).
 * @throws NOT_FOUND when the scope does not exist or holds no image
 */
export async function findPixelInstance(deps: RouteDeps, scope: PixelScope): Promise<PixelInstance> {
  const params: unknown[] = [scope.study];
  const conds = ['st.study_instance_uid = $1'];
  if (scope.series !== undefined) {
    params.push(scope.series);
    conds.push(`se.series_instance_uid = $${params.length}`);
  }
  if (scope.sop !== undefined) {
    params.push(scope.sop);
    conds.push(`i.sop_instance_uid = $${params.length}`);
    const res = await deps.db.query<DbInstanceRow & { json: DicomJsonDataset }>(`SELECT ${COLUMNS} ${FROM} WHERE ${conds.join(' AND ')}`, params);
    const r = res.rows[0];
    if (!r) throw new PorticoError('NOT_FOUND', `${describe(scope)} not found`);
    return toInstance(r);
  }
  const images = `${conds.join(' AND ')} AND i.rows IS NOT NULL AND (jsonb_array_length(i.frames) > 0 OR i.transfer_syntax_uid = '1.2.840.10008.1.2.1.99')`;
  const res = await deps.db.query<DbInstanceRow & { json: DicomJsonDataset }>(
    `WITH s AS (
       SELECT se.series_pk FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
        WHERE ${images}
        GROUP BY se.series_pk, ${SERIES_NUMBER} ORDER BY ${SERIES_NUMBER} NULLS LAST, se.series_pk LIMIT 1
     ), c AS (
       SELECT i.instance_pk, row_number() OVER (ORDER BY ${INSTANCE_NUMBER} NULLS LAST, i.instance_pk) AS k, count(*) OVER () AS n
         ${FROM} WHERE ${images} AND se.series_pk = (SELECT series_pk FROM s)
     )
     SELECT ${COLUMNS} ${FROM} JOIN c ON c.instance_pk = i.instance_pk WHERE c.k = c.n / 2 + 1`,
    params,
  );
  const r = res.rows[0];
  if (!r) {
    const exists = await deps.db.query(`SELECT 1 ${FROM} WHERE ${conds.join(' AND ')} LIMIT 1`, params);
    throw new PorticoError('NOT_FOUND', exists.rows.length > 0 ? `${describe(scope)} holds no image to render` : `${describe(scope)} not found`);
  }
  return toInstance(r);
}

/** Opens an object (or a range of it), mapping store failures onto our error table. */
export async function openObject(store: ObjectStore, key: string, range?: { start: number; end: number }): Promise<NodeJS.ReadableStream> {
  try {
    return await store.get(key, range);
  } catch (err) {
    if ((err as { code?: string }).code === 'NotFound')
      throw new PorticoError('PROCESSING_FAILURE', `indexed object ${key} is missing from the object store`, { cause: err });
    throw toPorticoError(err, 'OUT_OF_RESOURCES');
  }
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Reads `[offset, offset + length)` of an object. */
export async function readRange(store: ObjectStore, key: string, offset: number, length: number): Promise<Buffer> {
  if (length === 0) return Buffer.alloc(0);
  return readAll(await openObject(store, key, { start: offset, end: offset + length - 1 }));
}

/**
 * The bytes of frame `n` (1-based): its native samples (bit-packed 1-bit frames realigned to bit 0) or its
 * codestream (fragments concatenated). @throws NOT_FOUND beyond the last frame, NOT_ACCEPTABLE when the
 * frames of this object are not located (deflated data set, multi-fragment frames without offset table)
 */
export async function readFrame(store: ObjectStore, inst: PixelInstance, n: number): Promise<Buffer> {
  if (inst.frames.length === 0 && inst.transferSyntaxUid === TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian) return readDeflatedFrame(store, inst, n);
  if (inst.frames.length === 0)
    throw new PorticoError('NOT_ACCEPTABLE', `the frames of instance ${inst.sopInstanceUid} cannot be located without decoding the whole object`);
  const ranges = inst.frames[n - 1];
  if (!ranges) throw new PorticoError('NOT_FOUND', `frame ${n} does not exist: the instance has ${inst.frames.length} frame(s)`);
  const parts = await Promise.all(ranges.map((r) => readRange(store, inst.objectKey, r.offset, r.length)));
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const v = (tag: string): number | undefined => {
    const x = inst.json[tag]?.Value?.[0];
    return typeof x === 'number' ? x : undefined;
  };
  if (!inst.pixelDataEncapsulated && v('00280100') === 1) {
    const bits = (v('00280010') ?? 0) * (v('00280011') ?? 0) * (v('00280002') ?? 1);
    const shift = ((n - 1) * bits) % 8;
    if (shift !== 0) return realignBits(bytes, shift, bits);
  }
  return bytes;
}

/**
 * A native frame of a Deflated Explicit VR Little Endian object (PS3.5 §A.5). Its index has no byte ranges
 * (they would be inside the deflate stream), so: one streaming parse to learn where Pixel Data starts in
 * the inflated data set, then a second streaming inflate that skips to the frame and keeps only its bytes.
 * Memory stays at one frame plus the parser's header; time is two reads of the object (a rare syntax).
 */
async function readDeflatedFrame(store: ObjectStore, inst: PixelInstance, n: number): Promise<Buffer> {
  const parsed = await parseInstance((await openObject(store, inst.objectKey)) as AsyncIterable<Buffer>).catch((err: unknown) => {
    throw new PorticoError('PROCESSING_FAILURE', `stored object of ${inst.sopInstanceUid} cannot be parsed again`, { cause: err });
  });
  const px = parsed.pixelData;
  const num = (tag: string): number => {
    const x = parsed.json[tag]?.Value?.[0];
    return typeof x === 'number' ? x : 0;
  };
  const frameSize = num('00280010') * num('00280011') * (num('00280002') || 1) * Math.ceil(num('00280100') / 8);
  if (!px || px.encapsulated || px.valueLength === null || frameSize === 0)
    throw new PorticoError('NOT_ACCEPTABLE', 'deflated object without native pixel data');
  if (n > px.numberOfFrames || n * frameSize > px.valueLength) throw new PorticoError('NOT_FOUND', `frame ${n} does not exist`);
  const meta = readFileMetaInformation(await readRange(store, inst.objectKey, 0, Math.min(inst.objectSize, 64 * 1024)));
  const body = (await openObject(store, inst.objectKey, { start: meta.datasetOffset, end: inst.objectSize - 1 })) as Readable;
  const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const firstChunk = await it.next();
  const head: Buffer = firstChunk.done ? Buffer.alloc(0) : firstChunk.value;
  // Raw deflate as PS3.5 §A.5 says, or zlib-wrapped as some writers produce (the parser's test).
  const zlibWrapped = head.length >= 2 && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
  const inflater = zlibWrapped ? createInflate() : createInflateRaw();
  const src = Readable.from(
    (async function* () {
      yield head;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    })(),
  );
  const inflatedStream = src.pipe(inflater);
  let pos = 0;
  const start = px.valueOffset + (n - 1) * frameSize;
  const out = Buffer.alloc(frameSize);
  let got = 0;
  try {
    for await (const chunk of inflatedStream as AsyncIterable<Buffer>) {
      const from = Math.max(0, start - pos);
      if (from < chunk.length) {
        const take = chunk.subarray(from, from + (frameSize - got));
        take.copy(out, got);
        got += take.length;
      }
      pos += chunk.length;
      if (got === frameSize) break;
    }
  } finally {
    inflatedStream.destroy();
    body.destroy();
  }
  if (got < frameSize) throw new PorticoError('PROCESSING_FAILURE', `deflated data set of ${inst.sopInstanceUid} ended inside frame ${n}`);
  return out;
}

/** Reads a bulk data value of the instance (LUT data and the like) by its tag path. */
export function binaryResolver(store: ObjectStore, inst: PixelInstance): (path: string) => Promise<Buffer> {
  return async (path) => {
    const r = inst.bulkData[path];
    if (!r) throw new PorticoError('NOT_ACCEPTABLE', `bulk data ${path} of instance ${inst.sopInstanceUid} is not located`);
    return readRange(store, inst.objectKey, r.offset, r.length);
  };
}

/** Bumped when rendering changes, so that caches drop what an older Portico produced. */
const RENDER_VERSION = '1';

/** Strong ETag of the stored copy, optionally of one representation of it (rendering parameters). */
export function etagOf(copy: { instancePk: string; receivedAt: Date }, ...variant: unknown[]): string {
  const h = createHash('sha256')
    .update(`${copy.instancePk}|${copy.receivedAt.toISOString()}|${RENDER_VERSION}|${JSON.stringify(variant)}`)
    .digest('base64url')
    .slice(0, 27);
  return `"${h}"`;
}

/** ETag of a set of stored copies (series/study retrieve, metadata): changes whenever one of them does. */
export function etagOfSet(rows: ReadonlyArray<{ instancePk: string; receivedAt: Date }>, ...variant: unknown[]): string {
  const h = createHash('sha256');
  for (const r of rows) h.update(`${r.instancePk}|${r.receivedAt.toISOString()};`);
  h.update(`${RENDER_VERSION}|${JSON.stringify(variant)}`);
  return `"${h.digest('base64url').slice(0, 27)}"`;
}

/**
 * ETag of everything a WADO-RS scope (study, series, instance) holds, from one index query: answers built
 * from the stored copies (retrieve, metadata) change exactly when one of them is added, replaced or removed.
 */
export async function scopeEtag(deps: RouteDeps, scope: PixelScope, ...variant: unknown[]): Promise<string | undefined> {
  const params: unknown[] = [scope.study];
  const conds = ['st.study_instance_uid = $1'];
  if (scope.series !== undefined) {
    params.push(scope.series);
    conds.push(`se.series_instance_uid = $${params.length}`);
  }
  if (scope.sop !== undefined) {
    params.push(scope.sop);
    conds.push(`i.sop_instance_uid = $${params.length}`);
  }
  const res = await deps.db.query<{ instance_pk: string; received_at: Date }>(
    `SELECT i.instance_pk, i.received_at ${FROM} WHERE ${conds.join(' AND ')} ORDER BY i.instance_pk`,
    params,
  );
  if (res.rows.length === 0) return undefined;
  return etagOfSet(
    res.rows.map((r) => ({ instancePk: r.instance_pk, receivedAt: r.received_at })),
    ...variant,
  );
}

/**
 * True when the request's If-None-Match matches `etag` (weak comparison, RFC 9110 §13.1.2): the caller
 * answers 304 with the ETag and no body.
 */
export function notModified(req: FastifyRequest, etag: string): boolean {
  const inm = req.headers['if-none-match'];
  if (typeof inm !== 'string') return false;
  if (inm.trim() === '*') return true;
  const strip = (t: string): string => t.trim().replace(/^W\//, '');
  return inm.split(',').some((t) => strip(t) === strip(etag));
}

/** Sends 304 Not Modified for `etag` when the request already has it; returns true when it did. */
export function answerNotModified(req: FastifyRequest, reply: FastifyReply, etag: string): boolean {
  reply.header('etag', etag);
  if (!notModified(req, etag)) return false;
  void reply.code(304).send();
  return true;
}
