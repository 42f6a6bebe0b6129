import { Readable } from 'node:stream';

/** What `put` accepts: a Node readable, any async iterable of bytes, or a Buffer. */
export type ObjectBody = NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array | string> | Buffer;

/**
 * The body as a sequence of Buffers, pulled one at a time so the source's back-pressure holds. When the
 * consumer stops early (an error downstream), the loop's return() destroys a Readable source.
 */
export async function* chunksOf(body: ObjectBody): AsyncGenerator<Buffer, void, undefined> {
  if (Buffer.isBuffer(body)) {
    yield body;
    return;
  }
  const iterable: AsyncIterable<Buffer | Uint8Array | string> =
    Symbol.asyncIterator in body ? (body as AsyncIterable<Buffer | Uint8Array | string>) : new Readable().wrap(body as NodeJS.ReadableStream);
  for await (const chunk of iterable) {
    if (Buffer.isBuffer(chunk)) yield chunk;
    else if (typeof chunk === 'string') yield Buffer.from(chunk, 'utf8');
    else yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** One slice of a body cut by {@link toParts}. */
export interface Part {
  data: Buffer;
  /** True for the final part; a body of n <= partSize bytes is exactly one part with `last: true`. */
  last: boolean;
}

/**
 * Cuts a stream of chunks into parts of exactly partSize bytes, except the last, which has 1..partSize
 * bytes (0 only for an empty body). A part is emitted only once a byte beyond it has arrived, so the
 * caller knows whether a part is the last one without holding two parts: a body that fits in one part
 * becomes a single PUT. At most one part plus one chunk is pending (and, for a moment, the copy that
 * becomes the next part).
 */
export async function* toParts(chunks: AsyncIterable<Buffer>, partSize: number): AsyncGenerator<Part, void, undefined> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    if (chunk.length === 0) continue;
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes > partSize) {
      const data = Buffer.concat(pending, partSize);
      pending = dropBytes(pending, partSize);
      pendingBytes -= partSize;
      yield { data, last: false };
    }
  }
  yield { data: Buffer.concat(pending, pendingBytes), last: true };
}

/** The chunks that remain after removing the first n bytes (views, not copies). */
export function dropBytes(chunks: Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = [];
  let skip = n;
  for (const chunk of chunks) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
    skip = 0;
  }
  return rest;
}

/**
 * Groups chunks into batches of at least minBytes (the last may be smaller), without copying, so a file is
 * written with one writev per batch rather than one syscall per network-sized chunk; holds at most
 * minBytes plus one chunk.
 */
export async function* batches(chunks: AsyncIterable<Buffer>, minBytes: number): AsyncGenerator<Buffer[], void, undefined> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= minBytes) {
      yield pending;
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield pending;
}

/** Throws when a declared size is already exceeded, or (at the end) not met. */
export function checkDeclaredSize(key: string, declared: number | undefined, seen: number, atEnd: boolean): void {
  if (declared === undefined) return;
  if (seen > declared || (atEnd && seen !== declared)) {
    throw new Error(`put ${key}: declared size ${declared} bytes, body ${atEnd ? 'has' : 'exceeds it with'} ${seen}`);
  }
}

/**
 * Releases a body that `put` gave up on before reading it to the end (for a socket-backed stream this
 * frees the socket). Destroys without an error: an 'error' event nobody listens to would crash the process.
 */
export function discardBody(body: ObjectBody): void {
  const destroy = (body as { destroy?: unknown }).destroy;
  if (!Buffer.isBuffer(body) && typeof destroy === 'function') destroy.call(body);
}
