/**
 * Stored objects as the parts of a multipart/related response body, written straight into the HTTP
 * response (WADO-RS study, series and instance retrieve).
 *
 * Why not a Readable: a whole-study retrieve is hundreds of MB of file bytes, and a file read stream
 * allocates a fresh buffer per chunk. At 500 KiB per chunk every chunk is an external allocation that V8
 * must account for and free, and with Portico's small young generation this cost more CPU than the bytes
 * themselves (bench/dicomweb.ts, CPU profile: a quarter of the process in the garbage collector, another
 * ~40 % in allocation, stream and async-iterator plumbing). Here a few buffers of {@link CHUNK_BYTES} go
 * round a ring: a buffer is read into (positional reads, {@link ObjectStore.openReader}), handed to
 * `res.write`, and reused only when the write callback says the socket took it. The ring is also the
 * back-pressure: at most {@link RING} chunks are in flight, so a slow client holds the reads, and memory
 * stays at RING x CHUNK_BYTES whatever the study size.
 *
 * Stores without positional reads (S3) stream each object with `get`, waiting for `drain`.
 *
 * The bytes are the stored objects as they are (byte-exact); the framing (part heads, close delimiter)
 * comes from the caller.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ObjectReader, ObjectStore } from '@portico/storage';
import { openObject } from './pixels.ts';
import { PorticoError, toPorticoError } from '@portico/errors';

/**
 * Bytes per read. A 513 KiB CT instance is one read (the short read ends it): one thread-pool round trip
 * and one socket write per instance. Measured side by side here (server CPU per MB of a 262 MB study):
 * 1 MiB x 3 about 1.0 ms, 1 MiB x 2 about 1.2 ms, 2 MiB x 2 about 1.4, 256 KiB x 4 about 1.3, 128 KiB x 8 about 2.5.
 */
export const CHUNK_BYTES = 1024 * 1024;
/** Buffers in flight per response (allocated as needed): reading the next chunk overlaps writing the last ones. */
export const RING = 3;

/** An object opened for sending: positional reads where the store has them, else a stream. */
export type OpenedObject = { readonly reader: ObjectReader } | { readonly stream: NodeJS.ReadableStream };

/** Opens an object for {@link writeObjectParts}, mapping store failures onto our error table (as openObject does). */
export async function openForSending(store: ObjectStore, key: string): Promise<OpenedObject> {
  if (!store.openReader) return { stream: await openObject(store, key) };
  try {
    return { reader: await store.openReader(key) };
  } catch (err) {
    if ((err as { code?: string }).code === 'NotFound')
      throw new PorticoError('PROCESSING_FAILURE', `indexed object ${key} is missing from the object store`, { cause: err });
    throw toPorticoError(err, 'OUT_OF_RESOURCES');
  }
}

/** Releases an opened object that will not be sent. */
export function discardOpened(o: OpenedObject): void {
  if ('reader' in o) void o.reader.close().catch(() => undefined);
  else (o.stream as Readable).destroy();
}

export interface ObjectParts {
  readonly count: number;
  /** Object key of part i (0-based). */
  keyOf(i: number): string;
  /** Delimiter and header block of part i. */
  headOf(i: number): Buffer;
  /** Close delimiter, written after the last part. */
  readonly tail: Buffer;
}

/**
 * Writes the parts into `res` (whose head is already written) and ends it. `first` is part 0's object,
 * opened by the caller before answering so that a store outage can still be a proper error response.
 * Resolves when the body is written, or early when the client went away (the objects are closed then).
 * Rejects when an object cannot be opened or read mid-body: the caller must destroy `res`, as a
 * multipart body cut short is the only way left to say so.
 */
export async function writeObjectParts(res: ServerResponse, store: ObjectStore, parts: ObjectParts, first: OpenedObject): Promise<void> {
  let gone = res.destroyed;
  const free: Buffer[] = [];
  let allocated = 0;
  let wake: (() => void) | undefined;
  const wakeUp = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onClose = (): void => {
    gone = true;
    wakeUp();
  };
  res.once('close', onClose);
  const release = (b: Buffer): void => {
    free.push(b);
    wakeUp();
  };
  /** A free buffer of the ring; undefined once the client is gone. */
  const acquire = async (): Promise<Buffer | undefined> => {
    for (;;) {
      if (gone) return undefined;
      const b = free.pop();
      if (b) return b;
      if (allocated < RING) {
        allocated++;
        return Buffer.allocUnsafeSlow(CHUNK_BYTES);
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  const drained = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });

  let current: OpenedObject | undefined = first;
  // The next object is opened while the current one is sent, hiding the store's open latency.
  let next: Promise<OpenedObject> | undefined;
  try {
    for (let i = 0; i < parts.count && !gone; i++) {
      const obj: OpenedObject = current ?? (await next!);
      current = undefined;
      next = i + 1 < parts.count ? openForSending(store, parts.keyOf(i + 1)) : undefined;
      next?.catch(() => undefined);
      try {
        res.write(parts.headOf(i));
        if ('reader' in obj) {
          for (let position = 0; ;) {
            const buf = await acquire();
            if (!buf) break;
            const n = await obj.reader.read(buf, CHUNK_BYTES, position);
            position += n;
            if (n > 0) res.write(n === CHUNK_BYTES ? buf : buf.subarray(0, n), () => release(buf));
            else release(buf);
            // A short read of a regular file is its end: no extra read to learn that.
            if (n < CHUNK_BYTES) break;
          }
        } else {
          for await (const chunk of obj.stream as AsyncIterable<Buffer>) {
            if (gone) break;
            if (!res.write(chunk)) await drained();
          }
        }
      } finally {
        if ('reader' in obj) await obj.reader.close().catch(() => undefined);
        else (obj.stream as Readable).destroy();
      }
    }
    if (!gone) res.end(parts.tail);
  } finally {
    res.off('close', onClose);
    if (current) discardOpened(current);
    void next?.then(discardOpened, () => undefined);
  }
}
