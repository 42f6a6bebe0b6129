import type { Readable } from 'node:stream';

/**
 * A single-consumer async queue of Buffers with a high-water mark: the zero-copy way to feed one
 * incoming byte stream to several consumers at once (object store and header parser).
 *
 * A Node PassThrough read through its async iterator joins every buffered chunk into a new Buffer on
 * each read, so a tee of two PassThroughs copied each received byte twice more and kept the garbage
 * collector busy. Here the producer's Buffers are handed to the consumer as they are; consumers must
 * treat them as read-only, since the same Buffer goes to every channel of a tee.
 */
const EMPTY = Buffer.alloc(0);

export class ChunkChannel implements AsyncIterable<Buffer> {
  private queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private ended = false;
  private failure: Error | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private drainWaiters: Array<() => void> = [];
  private readonly highWaterMark: number;

  constructor(highWaterMark = 1 << 20) {
    this.highWaterMark = highWaterMark;
  }

  /** True once the consumer has stopped (finished, failed or broke out) or the channel was destroyed. */
  get closed(): boolean {
    return this.stopped || this.failure !== undefined;
  }

  /** Queues a chunk; false when the consumer is more than highWaterMark bytes behind (await drained()). */
  write(chunk: Buffer): boolean {
    if (this.closed || this.ended) return true;
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.notify();
    return this.queued < this.highWaterMark;
  }

  /** Resolves when the backlog is below the high-water mark, or the channel closed. */
  drained(): Promise<void> {
    if (this.queued < this.highWaterMark || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** No more chunks: the consumer's loop ends after the queued ones. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  /** Fails the consumer (its loop throws err) and drops what is queued. */
  destroy(err: Error): void {
    if (this.closed) return;
    this.failure = err;
    this.queue = [];
    this.queued = 0;
    this.notify();
    this.releaseDrain();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    try {
      for (;;) {
        if (this.failure) throw this.failure;
        if (this.head < this.queue.length) {
          const chunk = this.queue[this.head]!;
          // Drop the reference now: a producer that stays just ahead never lets the queue run empty, and
          // consumed chunks left in the array would be retained for the whole transfer.
          this.queue[this.head++] = EMPTY;
          if (this.head === this.queue.length) {
            this.queue = [];
            this.head = 0;
          } else if (this.head >= 1024) {
            this.queue = this.queue.slice(this.head);
            this.head = 0;
          }
          this.queued -= chunk.length;
          if (this.queued < this.highWaterMark) this.releaseDrain();
          yield chunk;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      this.stopped = true;
      this.queue = [];
      this.queued = 0;
      this.releaseDrain();
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private releaseDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * The chunks of a Readable as they were pushed, through a ChunkChannel. `for await` over a Readable reads
 * with `read()`, which joins every chunk buffered at that moment into a new Buffer: on a STOW-RS request
 * that copied about a third of all received bytes, and those short-lived copies (external memory, freed
 * only by full collections) were most of the ~100 MB of ArrayBuffers that piled up during STOW-RS ingest.
 * Flowing mode hands over each chunk itself; the source is paused while the consumer is more than
 * highWaterMark bytes behind. After a consumer that stopped early (break, throw) the rest is read and
 * dropped.
 */
export function flowingChunks(readable: Readable, highWaterMark = 256 * 1024): AsyncIterable<Buffer> {
  const channel = new ChunkChannel(highWaterMark);
  const onData = (chunk: Buffer | string): void => {
    if (channel.closed) {
      // Read and drop the rest: destroying a request here would reset the connection before the
      // answer that the consumer's error becomes (a 413, say) reaches the client.
      readable.off('data', onData);
      readable.resume();
      return;
    }
    if (channel.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) return;
    readable.pause();
    void channel.drained().then(() => readable.resume());
  };
  readable.on('data', onData);
  readable.once('end', () => channel.end());
  readable.once('error', (err: Error) => channel.destroy(err));
  // Destroyed without an error (e.g. the request aborted): the bytes will never all arrive.
  readable.once('close', () => {
    if (!readable.readableEnded) channel.destroy(readable.errored ?? new Error('stream closed before its end'));
  });
  return channel;
}
