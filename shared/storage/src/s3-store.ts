/**
 * The cluster object store: one bucket (optionally under a key prefix) on MinIO or any S3, through the
 * `minio` client.
 *
 * Uploads do not use minio's `putObject` for streams: in minio 8 it reads a body of up to one part (64 MiB
 * by default) into a single Buffer, sizes parts for a 5 TiB object (~528 MiB each) when the length is
 * unknown, looks for an earlier multipart upload of the same key to resume (a LIST that s3rver and some
 * S3 services refuse), and pipes the body without watching it for errors, so a source that fails
 * mid-way can leave the upload pending instead of rejecting. Instead `put` cuts the body
 * into parts itself ({@link toParts}): a body that fits in one part is a single PUT (`putObject` with a
 * Buffer); a larger one is a multipart upload, one part in flight and in memory at a time, aborted on any
 * failure so that no object appears. Memory per upload is bounded by one part (`partSize`, 16 MiB by
 * default, 5 MiB..5 GiB; two for a moment while a part is assembled), whatever the object size.
 *
 * A put is atomic either way: S3 makes an object visible only when its PUT or CompleteMultipartUpload
 * succeeds, and then durably.
 *
 * Limits: `copy` and `move` use a server-side CopyObject, which S3 allows up to 5 GiB; larger objects would need
 * UploadPartCopy. Content type is stored as `Content-Type`.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Transform, pipeline } from 'node:stream';
import type { Readable } from 'node:stream';
import { Client, CopyDestinationOptions, CopySourceOptions } from 'minio';
import { checkDeclaredSize, chunksOf, discardBody, toParts } from './body.ts';
import type { ObjectBody } from './body.ts';
import { InvalidRangeError, ObjectNotFoundError, isNotFound } from './errors.ts';
import { assertValidKey, assertValidRange } from './keys.ts';
import type { ObjectStore, PutOptions, S3ObjectStoreConfig } from './index.ts';

const MiB = 1024 * 1024;
/** Default part size: small enough to bound memory per concurrent upload, large enough for 160 GiB objects. */
export const DEFAULT_PART_SIZE = 16 * MiB;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PART_SIZE = 5 * 1024 * MiB;
const MAX_PARTS = 10_000;

/**
 * The part size for an object: the configured one, grown (in whole MiB) when a declared size would
 * otherwise need more than S3's 10,000 parts.
 */
export function partSizeFor(size: number | undefined, configured: number): number {
  if (size === undefined || size <= configured * MAX_PARTS) return configured;
  return Math.ceil(size / MAX_PARTS / MiB) * MiB;
}

export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3';
  readonly bucket: string;
  private readonly client: Client;
  private readonly agent: HttpAgent;
  private readonly prefix: string;
  private readonly region: string;
  private readonly partSize: number;

  constructor(cfg: S3ObjectStoreConfig) {
    this.partSize = cfg.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE) {
      throw new RangeError(`partSize ${cfg.partSize} is outside S3's 5 MiB..5 GiB`);
    }
    this.bucket = cfg.bucket;
    this.region = cfg.region ?? '';
    this.prefix = normalizePrefix(cfg.prefix);
    // Our own keep-alive agent, so close() can release the sockets instead of waiting for them to time out.
    this.agent = cfg.useSSL ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.client = new Client({
      endPoint: cfg.endPoint,
      port: cfg.port,
      useSSL: cfg.useSSL,
      accessKey: cfg.accessKey,
      secretKey: cfg.secretKey,
      region: cfg.region,
      pathStyle: cfg.pathStyle,
      transportAgent: this.agent,
    });
  }

  /** Creates the bucket when missing (tolerating another process creating it at the same moment). */
  async open(): Promise<this> {
    try {
      if (await this.client.bucketExists(this.bucket)) return this;
      try {
        await this.client.makeBucket(this.bucket, this.region);
      } catch (err) {
        if (!(await this.client.bucketExists(this.bucket))) throw err;
      }
      return this;
    } catch (err) {
      this.agent.destroy();
      throw err;
    }
  }

  private nameOf(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  async put(key: string, body: ObjectBody, opts: PutOptions = {}): Promise<{ size: number }> {
    let name: string;
    try {
      name = this.nameOf(key);
    } catch (err) {
      discardBody(body);
      throw err;
    }
    const headers = { 'Content-Type': opts.contentType ?? 'application/octet-stream' };
    const etags: Array<{ part: number; etag: string }> = [];
    let uploadId: string | undefined;
    let size = 0;
    try {
      for await (const part of toParts(chunksOf(body), partSizeFor(opts.size, this.partSize))) {
        size += part.data.length;
        checkDeclaredSize(key, opts.size, size, part.last);
        if (part.last && uploadId === undefined) {
          await this.putSingle(name, part.data, headers);
          // On S3 an object becomes visible when it is durable.
          opts.onVisible?.();
          return { size };
        }
        uploadId ??= await this.client.initiateNewMultipartUpload(this.bucket, name, headers);
        const partNumber = etags.length + 1;
        if (partNumber > MAX_PARTS) {
          throw new Error(`put ${key}: more than ${MAX_PARTS} parts of ${this.partSize} bytes; pass opts.size or raise partSize`);
        }
        const { etag } = await this.client.uploadPart({ bucketName: this.bucket, objectName: name, uploadID: uploadId, partNumber, headers: {} }, part.data);
        etags.push({ part: partNumber, etag });
      }
      if (uploadId === undefined) throw new Error('unreachable: toParts always yields a last part');
      await this.client.completeMultipartUpload(this.bucket, name, uploadId, etags);
      opts.onVisible?.();
      return { size };
    } catch (err) {
      // Best effort: an upload that is never completed never becomes an object; aborting frees its parts.
      // (s3rver cannot abort; real S3 also expires them with a bucket lifecycle rule.)
      if (uploadId !== undefined) await this.client.abortMultipartUpload(this.bucket, name, uploadId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * One PUT of a Buffer. minio's putObject copies the Buffer first (Buffer.from) and hashes it twice, MD5
   * always and SHA-256 for the signature over plain HTTP: for a 513 KiB instance a 513 KiB allocation and
   * ~1 ms of MD5 that is sent only over HTTPS. Here only the hash that goes on the wire is computed, as
   * minio does it: over HTTP the signed payload's SHA-256, over HTTPS (minio signs UNSIGNED-PAYLOAD) the
   * Content-MD5.
   */
  private async putSingle(name: string, data: Buffer, headers: Record<string, string>): Promise<void> {
    const signed = this.client.enableSHA256;
    const sha256 = signed ? createHash('sha256').update(data).digest('hex') : '';
    const res = await this.client.makeRequestStreamAsync(
      {
        method: 'PUT',
        bucketName: this.bucket,
        objectName: name,
        headers: { ...headers, 'Content-Length': data.length, ...(signed ? {} : { 'Content-MD5': createHash('md5').update(data).digest('base64') }) },
      },
      data,
      sha256,
      [200],
      '',
    );
    res.resume();
    await new Promise<void>((resolve, reject) => {
      res.once('end', resolve);
      res.once('error', reject);
    });
  }

  async get(key: string, range?: { start: number; end: number }): Promise<NodeJS.ReadableStream> {
    const name = this.nameOf(key);
    if (range) assertValidRange(range);
    try {
      if (!range) return await this.client.getObject(this.bucket, name);
      const length = range.end - range.start + 1;
      const res = await this.client.getPartialObject(this.bucket, name, range.start, length);
      return sentMoreThanAsked(res, range.end) ? pipeline(res, limitBytes(length), () => undefined) : res;
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(key, { cause: err });
      if ((err as { code?: unknown }).code === 'InvalidRange') {
        throw new InvalidRangeError(`range ${range?.start}-${range?.end} starts beyond ${key}`, { cause: err });
      }
      throw err;
    }
  }

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const { size } = await this.client.statObject(this.bucket, this.nameOf(key));
      return { size };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async copy(from: string, to: string): Promise<void> {
    const src = this.nameOf(from);
    const dst = this.nameOf(to);
    if (src === dst) {
      // S3 refuses a copy onto itself without a metadata change.
      if (await this.stat(from)) return;
      throw new ObjectNotFoundError(from);
    }
    try {
      await this.client.copyObject(
        new CopySourceOptions({ Bucket: this.bucket, Object: src }),
        new CopyDestinationOptions({ Bucket: this.bucket, Object: dst }),
      );
    } catch (err) {
      throw isNotFound(err) ? new ObjectNotFoundError(from, { cause: err }) : err;
    }
  }

  async move(from: string, to: string): Promise<void> {
    if (this.nameOf(from) === this.nameOf(to)) {
      // copy-then-delete would lose the object.
      if (await this.stat(from)) return;
      throw new ObjectNotFoundError(from);
    }
    try {
      await this.copy(from, to);
    } catch (err) {
      // Idempotent: a retried move whose first attempt got as far as the copy.
      if (isNotFound(err) && (await this.stat(to))) return;
      throw err;
    }
    await this.delete(from);
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number; modified: Date }> {
    const folder = prefix.replace(/\/+$/, '');
    // validates the folder like a key; listing needs the trailing '/' a key may not have
    const stream = this.client.listObjectsV2(this.bucket, `${this.nameOf(folder)}/`, false);
    for await (const item of stream as AsyncIterable<{ name?: string; size?: number; lastModified?: Date }>) {
      if (!item.name) continue; // common prefixes (sub-folders)
      yield { key: item.name.slice(this.prefix.length), size: item.size ?? 0, modified: item.lastModified ?? new Date(0) };
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.removeObject(this.bucket, this.nameOf(key));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async ping(): Promise<void> {
    if (!(await this.client.bucketExists(this.bucket))) throw new Error(`bucket ${this.bucket} does not exist`);
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}

/**
 * True when a ranged response runs past the requested end, per its Content-Range. S3 and MinIO honour
 * ranges exactly; s3rver 3.7 answers `bytes=0-0` with the whole object (it reads an end of 0 as "none").
 */
function sentMoreThanAsked(res: Readable, end: number): boolean {
  const contentRange = (res as Partial<IncomingMessage>).headers?.['content-range'];
  const sentEnd = /^bytes \d+-(\d+)\//.exec(contentRange ?? '')?.[1];
  return sentEnd !== undefined && Number(sentEnd) > end;
}

/** Passes the first n bytes through and drops the rest. */
function limitBytes(n: number): Transform {
  let left = n;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const keep = chunk.subarray(0, left);
      left -= keep.length;
      callback(null, keep.length > 0 ? keep : undefined);
    },
  });
}

/** '' or a prefix without a leading '/' that ends in exactly one '/'. */
function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  assertValidKey(trimmed);
  return `${trimmed}/`;
}
