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
import type { FastifyReply, FastifyRequest } from 'fastify';
import { rowToStored, type InstanceRow as DbInstanceRow, type StoredInstance } from '@portico/db';
import type { DicomJsonDataset } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import type { ObjectStore } from '@portico/storage';
import type { RouteDeps } from './deps.ts';

export interface PixelScope {
  readonly study: string;
  readonly series?: string | undefined;
  readonly sop?: string | undefined;
}

export interface PixelInstance extends StoredInstance {
  readonly json: DicomJsonDataset;
}

import { readRange } from '@portico/imaging';
export { openObject, readAll, readRange, readFrame } from '@portico/imaging';

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

export function describeScope(scope: PixelScope): string {
  return scope.sop ? `instance ${scope.sop}` : scope.series ? `series ${scope.series}` : `study ${scope.study}`;
}

/** The WHERE conditions selecting a scope's instances (aliases st, se, i); its values are pushed to params. */
export function scopeSql(scope: PixelScope, params: unknown[]): string {
  params.push(scope.study);
  const conds = [`st.study_instance_uid = $${params.length}`];
  if (scope.series !== undefined) {
    params.push(scope.series);
    conds.push(`se.series_instance_uid = $${params.length}`);
  }
  if (scope.sop !== undefined) {
    params.push(scope.sop);
    conds.push(`i.sop_instance_uid = $${params.length}`);
  }
  return conds.join(' AND ');
}

/**
 * The instance a pixel request is about. At instance level, that instance. At series level, the middle
 * image of the series by Instance Number; at study level, the middle image of its first image series by
 * Series Number (PS3.18 §9.3 lets the origin server choose the representative instance). "Image" means an
 * instance with Rows and at least one locatable frame (or a deflated one whose frames we locate by reading).
 * @throws NOT_FOUND when the scope does not exist or holds no image
 */
export async function findPixelInstance(deps: RouteDeps, scope: PixelScope): Promise<PixelInstance> {
  const params: unknown[] = [];
  const where = scopeSql(scope, params);
  if (scope.sop !== undefined) {
    const res = await deps.db.query<DbInstanceRow & { json: DicomJsonDataset }>(`SELECT ${COLUMNS} ${FROM} WHERE ${where}`, params);
    const r = res.rows[0];
    if (!r) throw new PorticoError('NOT_FOUND', `${describeScope(scope)} not found`);
    return toInstance(r);
  }
  const images = `${where} AND i.rows IS NOT NULL AND (jsonb_array_length(i.frames) > 0 OR i.transfer_syntax_uid = '1.2.840.10008.1.2.1.99')`;
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
    const exists = await deps.db.query(`SELECT 1 ${FROM} WHERE ${where} LIMIT 1`, params);
    throw new PorticoError('NOT_FOUND', exists.rows.length > 0 ? `${describeScope(scope)} holds no image to render` : `${describeScope(scope)} not found`);
  }
  return toInstance(r);
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
  const params: unknown[] = [];
  const res = await deps.db.query<{ instance_pk: string; received_at: Date }>(
    `SELECT i.instance_pk, i.received_at ${FROM} WHERE ${scopeSql(scope, params)} ORDER BY i.instance_pk`,
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
