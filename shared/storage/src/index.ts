/**
 * `@portico/storage`: where DICOM bytes live. One small interface, {@link ObjectStore}, with exactly two
 * implementations chosen by config: a folder (standalone) and a bucket on MinIO / S3 (cluster).
 *
 * Keys are '/'-separated relative paths, e.g. `staging/<uuid>.dcm` for received bytes and
 * `studies/<StudyInstanceUID>/series/<SeriesInstanceUID>/instances/<SOPInstanceUID>.dcm` for stored
 * instances (DESIGN.md "Storage layout"). A key that is empty, absolute, contains a `.`/`..`/empty
 * segment, a backslash or a control character, or is over 1024 bytes, is rejected with
 * {@link InvalidKeyError} (`code === 'InvalidKey'`).
 */
import type { ObjectBody } from './body.ts';
import { FsObjectStore } from './fs-store.ts';

export type { ObjectBody } from './body.ts';
export { InvalidKeyError, InvalidRangeError, ObjectNotFoundError, isNotFound } from './errors.ts';
export { assertValidKey } from './keys.ts';

export interface PutOptions {
  /** Expected length; a body of another length is an error. */
  readonly size?: number;
  readonly contentType?: string;
  /** See {@link ObjectStore.put}. */
  readonly onVisible?: () => void;
}

/** An object store. Every method rejects with {@link InvalidKeyError} for a bad key. */
export interface ObjectStore {
  readonly kind: 'fs' | 's3';
  /**
   * Durably stores body under key, replacing any object there; resolves only when the bytes are durable
   * (fs: temp file in the same folder, fsync, rename, fsync folder; S3: PUT or CompleteMultipartUpload
   * succeeded). Streams with back-pressure and never buffers the whole body: fs holds at most 1 MiB, S3
   * about one part ({@link S3ObjectStoreConfig.partSize}). With `size`, a body of any other length is an
   * error. On any error (source stream, disk, network, size mismatch) no object is left under key (an
   * existing one stays as it was), a Readable body is destroyed, and the promise rejects. Resolves with
   * the number of bytes stored.
   *
   * `onVisible` is called once the whole object can be read under key, which for the fs store is before
   * it is durable (the temp file is renamed first and then fsynced together with its folder): a caller
   * that must publish the key (enqueue a job naming it) can do that while the flush runs. The promise
   * still resolves only when the object is durable. Only for keys nobody else writes (staging keys): a
   * crash before put resolves may leave the object absent or incomplete, and an error after onVisible
   * removes it again.
   */
  put(key: string, body: ObjectBody, opts?: PutOptions): Promise<{ size: number }>;
  /**
   * A readable of the whole object, or of bytes [start, end] inclusive (an `end` past the object is cut to
   * its last byte, as in HTTP Range). Rejects with `code === 'NotFound'` ({@link ObjectNotFoundError})
   * when missing, with `code === 'InvalidRange'` when start is at or past the end of the object, and with a
   * RangeError unless 0 <= start <= end are integers.
   */
  get(key: string, range?: { start: number; end: number }): Promise<NodeJS.ReadableStream>;
  /**
   * Optional (fs only): the object as positional reads into buffers the caller owns. A read stream
   * allocates a fresh buffer per chunk; a caller that streams many objects (a whole-study WADO-RS
   * retrieve) can instead cycle a few buffers of its own, which removes most of its garbage-collection
   * cost. Rejects with `code === 'NotFound'` when missing. The S3 store has no such reads: use {@link get}.
   */
  openReader?(key: string): Promise<ObjectReader>;
  /** Size of the object, or null when missing. */
  stat(key: string): Promise<{ size: number } | null>;
  /**
   * Durably copies an object (fs: copy to a temp file, fsync, rename; S3: server-side copy), overwriting
   * `to`. Rejects with `code === 'NotFound'` when `from` is missing. For a pipeline that indexes an
   * instance before letting go of its staging copy.
   */
  copy(from: string, to: string): Promise<void>;
  /**
   * Moves an object (fs: rename + fsync; S3: server-side copy, then delete). Overwrites `to`. Idempotent:
   * if `from` is gone and `to` exists, resolves (a retried job). Rejects with `code === 'NotFound'` when
   * neither exists.
   */
  move(from: string, to: string): Promise<void>;
  /**
   * Objects whose key starts with `prefix` (a folder-like prefix ending in '/'), one level deep, with size
   * and last-modified time; for maintenance scans such as re-enqueueing staged objects whose job was lost.
   */
  list(prefix: string): AsyncIterable<{ key: string; size: number; modified: Date }>;
  /** Deletes an object; resolves when it was already missing. */
  delete(key: string): Promise<void>;
  /** Cheap readiness probe for /readyz: throws when the folder is not a writable folder, or the S3 endpoint is unreachable or the bucket missing. */
  ping(): Promise<void>;
  /** Releases connections (S3); the store must not be used afterwards. */
  close(): Promise<void>;
}

/** Positional reads of one object ({@link ObjectStore.openReader}); must be closed. */
export interface ObjectReader {
  /**
   * Reads up to `length` bytes at `position` into `into` (from offset 0); resolves with the number read,
   * which is less than `length` only at the end of the object (a regular file), 0 past it.
   */
  read(into: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** A folder on the local filesystem, created when missing (standalone default `./data/objects`). */
export interface FsObjectStoreConfig {
  kind: 'fs';
  root: string;
}

/** A bucket on MinIO or any S3 (created when missing), optionally under a key prefix. */
export interface S3ObjectStoreConfig {
  kind: 's3';
  endPoint: string;
  port?: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region?: string;
  /** Path-style URLs (`host/bucket/key`); default true, which MinIO needs. */
  pathStyle?: boolean;
  /** Prepended to every key (e.g. a tenant partition); the keys callers see stay unprefixed. */
  prefix?: string;
  /** Multipart part size in bytes, 5 MiB..5 GiB, default 16 MiB; also the most one upload holds in memory. */
  partSize?: number;
}

export type ObjectStoreConfig = FsObjectStoreConfig | S3ObjectStoreConfig;

/**
 * Opens the store the config names: fs creates the root folder; s3 creates the bucket when missing.
 * Rejects when the folder cannot be created or the S3 endpoint does not answer.
 */
export async function openObjectStore(cfg: ObjectStoreConfig): Promise<ObjectStore> {
  switch (cfg.kind) {
    case 'fs':
      return new FsObjectStore(cfg.root).open();
    case 's3':
      // Loaded on demand: the minio client adds ~25 MB to a process that stores in a folder.
      const { S3ObjectStore } = await import('./s3-store.ts');
      return new S3ObjectStore(cfg).open();
  }
}
export { ChunkChannel, flowingChunks } from './channel.ts';
export { seekableObject, type SeekableObject } from './seekable.ts';
