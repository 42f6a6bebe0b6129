/**
 * Pull-based reader over an async iterable of byte chunks, for a parser that must (a) look ahead a few
 * bytes, (b) read small values contiguously and (c) skip large values without ever holding them.
 *
 * Chunks are queued as received and only concatenated when a read spans chunks, so feeding a file one
 * byte at a time costs O(bytes), not O(bytes²). Skipped bytes are dropped chunk by chunk: skipping a
 * 2 GB Pixel Data value keeps at most one chunk alive.
 */
import { DicomParseError } from './errors.ts';

/**
 * Wraps an error thrown by the caller's stream (not by parsing), so that the parser can let it through
 * unchanged: a failed upload is the caller's I/O error, not a "bad DICOM" verdict.
 */
export class SourceFailure extends Error {
  readonly original: unknown;
  constructor(original: unknown) {
    super(original instanceof Error ? original.message : String(original));
    this.original = original;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * A byte source that can jump ahead: `seek(position)` makes the iteration continue at that absolute
 * offset (false when it lies beyond the end). A ranged object-store read implements it, so parsing an
 * instance at rest reads its header and not its pixel data.
 */
export interface SeekableByteSource extends AsyncIterable<Buffer> {
  seek(position: number): Promise<boolean>;
}

/** Skips at least this long are done by seeking when the source can (smaller ones are cheaper to read). */
const SEEK_THRESHOLD = 256 * 1024;

function isSeekable(source: unknown): source is SeekableByteSource {
  return source !== null && typeof source === 'object' && typeof (source as { seek?: unknown }).seek === 'function';
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new DicomParseError('NOT_DICOM', `the byte stream yielded a ${typeof chunk}, not bytes`);
}

function toAsyncIterator(source: AsyncIterable<unknown> | Iterable<unknown>): AsyncIterator<unknown> {
  if (source !== null && typeof source === 'object' && Symbol.asyncIterator in source) return source[Symbol.asyncIterator]();
  if (source !== null && typeof source === 'object' && Symbol.iterator in source) {
    const it = source[Symbol.iterator]();
    return {
      next: () => Promise.resolve(it.next()),
      return: () => Promise.resolve(it.return?.() ?? { done: true, value: undefined }),
    };
  }
  throw new DicomParseError('NOT_DICOM', 'the source is not an (async) iterable of bytes');
}

/**
 * Reader over a byte stream with absolute positions: `fill`/`require` buffer ahead, `peek`/`read` return
 * bytes that may share memory with the input chunks (copy before keeping them), `skip` discards without
 * buffering. Used by the instance parser; exported for other stream readers of DICOM (e.g. DIMSE PDVs).
 */
export class ByteReader {
  readonly #iterator: AsyncIterator<unknown>;
  #queue: Buffer[] = [];
  /** index of the first live chunk in #queue (avoids O(n) shift() when chunks are tiny) */
  #qi = 0;
  /** read offset inside #queue[#qi] */
  #head = 0;
  #available = 0;
  #position: number;
  #eof = false;
  readonly #seekable: SeekableByteSource | undefined;

  constructor(source: AsyncIterable<unknown> | Iterable<unknown>, startPosition = 0) {
    this.#iterator = toAsyncIterator(source);
    this.#position = startPosition;
    this.#seekable = isSeekable(source) ? source : undefined;
  }

  /** absolute offset of the next unread byte */
  get position(): number {
    return this.#position;
  }

  /** bytes received and not yet consumed */
  get available(): number {
    return this.#available;
  }

  async #pull(): Promise<boolean> {
    if (this.#eof) return false;
    let result: IteratorResult<unknown>;
    try {
      result = await this.#iterator.next();
    } catch (err) {
      throw err instanceof DicomParseError || err instanceof SourceFailure ? err : new SourceFailure(err);
    }
    if (result.done) {
      this.#eof = true;
      return false;
    }
    const buf = toBuffer(result.value);
    if (buf.length > 0) {
      this.#queue.push(buf);
      this.#available += buf.length;
    }
    return true;
  }

  /** Buffers until `n` bytes are available; false when the stream ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.#available < n) {
      if (!(await this.#pull())) return false;
    }
    return true;
  }

  /** Like `fill`, but a short stream is a `TRUNCATED` parse error naming `what` was being read. */
  async require(n: number, what: string): Promise<void> {
    if (this.#available >= n) return;
    if (!(await this.fill(n))) {
      throw new DicomParseError('TRUNCATED', `stream ended inside ${what}`, this.#position + this.#available);
    }
  }

  /** The next `n` bytes without consuming them; `n` must be available. May share memory with the input. */
  peek(n: number): Buffer {
    if (n > this.#available) throw new RangeError(`peek(${n}) with ${this.#available} available`);
    if (n === 0) return EMPTY;
    const first = this.#queue[this.#qi]!;
    if (first.length - this.#head >= n) return first.subarray(this.#head, this.#head + n);
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    let qi = this.#qi;
    let head = this.#head;
    while (copied < n) {
      const chunk = this.#queue[qi]!;
      const take = Math.min(chunk.length - head, n - copied);
      chunk.copy(out, copied, head, head + take);
      copied += take;
      qi++;
      head = 0;
    }
    return out;
  }

  /** Consumes and returns the next `n` bytes (which must be available). May share memory with the input. */
  read(n: number): Buffer {
    const out = this.peek(n);
    this.#consume(n);
    return out;
  }

  #consume(n: number): void {
    this.#available -= n;
    this.#position += n;
    while (n > 0) {
      const chunk = this.#queue[this.#qi]!;
      const rest = chunk.length - this.#head;
      if (rest > n) {
        this.#head += n;
        return;
      }
      n -= rest;
      this.#queue[this.#qi] = EMPTY;
      this.#qi++;
      this.#head = 0;
    }
    if (this.#qi > 1024 && this.#qi * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#qi);
      this.#qi = 0;
    }
  }

  /** Discards `n` bytes, pulling and dropping chunks as needed; false when the stream ends first. */
  async skip(n: number): Promise<boolean> {
    if (this.#seekable && !this.#eof && n - this.#available >= SEEK_THRESHOLD) {
      // Drop what is buffered and continue reading at the target: the skipped bytes are never read.
      const target = this.#position + n;
      this.#queue = [];
      this.#qi = 0;
      this.#head = 0;
      this.#available = 0;
      this.#position = target;
      try {
        return await this.#seekable.seek(target);
      } catch (err) {
        throw err instanceof DicomParseError || err instanceof SourceFailure ? err : new SourceFailure(err);
      }
    }
    while (n > 0) {
      if (this.#available === 0 && !(await this.#pull())) return false;
      const take = Math.min(n, this.#available);
      this.#consume(take);
      n -= take;
    }
    return true;
  }

  /** The unconsumed bytes followed by the rest of the stream; the reader must not be used afterwards. */
  async *remainder(): AsyncGenerator<Buffer> {
    while (this.#available > 0) {
      const chunk = this.#queue[this.#qi]!;
      const part = chunk.subarray(this.#head);
      this.#consume(part.length);
      yield part;
    }
    while (await this.#pull()) {
      if (this.#available > 0) yield this.read(this.#available);
    }
  }

  /** Stops the underlying iterator (lets a file or socket source release its resources). */
  async close(): Promise<void> {
    if (this.#eof) return;
    this.#eof = true;
    try {
      await this.#iterator.return?.();
    } catch {
      // The source failing while being closed changes nothing for the caller: the parse result stands.
    }
  }
}
