/**
 * Reads the stored objects of C-MOVE and C-GET sub-operations ahead, into a few buffers that go round.
 *
 * Sub-operations go one at a time (no asynchronous operations window is negotiated), so each instance
 * used to wait, after the previous C-STORE-RSP, for its object store reads — for the folder store an open,
 * a stat and three reads, each a thread-pool round trip — and every 512 KiB chunk was a fresh buffer. Here
 * the next objects are read while the current one is on the wire and its response awaited, each with one
 * positional read (ObjectStore.openReader) into a buffer of the ring: no allocation per instance, and so
 * next to no garbage collection (a read stream's buffers held one instance ahead cost 28 mark-compact GCs
 * per 500-instance C-MOVE).
 *
 * A buffer is handed back with {@link ReadAhead.release} once the sub-operation is over: by then the
 * writer has flushed every byte of it to the socket (writeStoreRequest resolves only then). Objects larger
 * than {@link READ_AHEAD_MAX_BYTES}, a store without positional reads (S3), a failed or short read, or an
 * object that is not the size the index says: the object is streamed from the store as before, when its
 * turn comes, so that read reports any error. The bytes are the stored ones, unchanged.
 */
import type { ObjectStore } from '@portico/storage';
import type { ObjectSource } from './store-scu.ts';

/** Objects up to this size are read ahead whole. */
export const READ_AHEAD_MAX_BYTES = 16 * 1024 * 1024;
/**
 * Buffers in the ring: the object being sent and the next {@link READ_AHEAD_DEPTH}. One ahead was not
 * always enough on a loaded machine: the thread-pool read of the next object was still running when its
 * turn came for about one sub-operation in five.
 */
export const READ_AHEAD_DEPTH = 2;
const RING = READ_AHEAD_DEPTH + 1;
/** Smallest buffer: a CT or MR instance fits, so buffers are rarely replaced by larger ones. */
const MIN_BUFFER = 1024 * 1024;

export interface ReadAheadItem {
  readonly objectKey: string;
  readonly objectSize: number;
}

export class ReadAhead implements ObjectSource {
  private readonly store: Pick<ObjectStore, 'get' | 'openReader'>;
  private readonly free: Buffer[] = [];
  private allocated = 0;
  /** By object key: the ring buffer it is read into, and its bytes once read (undefined: read failed). */
  private readonly ahead = new Map<string, { buffer: Buffer; bytes: Promise<Buffer | undefined> }>();

  constructor(store: Pick<ObjectStore, 'get' | 'openReader'>) {
    this.store = store;
  }

  /** Starts reading this object into a free buffer of the ring; does nothing when none is free. */
  prefetch(item: ReadAheadItem): void {
    const openReader = this.store.openReader?.bind(this.store);
    if (!openReader || item.objectSize > READ_AHEAD_MAX_BYTES || this.ahead.has(item.objectKey)) return;
    // One byte more than the index says, so that a longer object shows up as such.
    const need = item.objectSize + 1;
    let buffer = this.free.pop();
    if (!buffer && this.allocated < RING) {
      this.allocated++;
      buffer = Buffer.allocUnsafeSlow(Math.max(MIN_BUFFER, need));
    }
    if (!buffer) return;
    if (buffer.length < need) buffer = Buffer.allocUnsafeSlow(need);
    const target = buffer;
    const bytes = (async () => {
      const reader = await openReader(item.objectKey);
      try {
        const n = await reader.read(target, need, 0);
        return n === item.objectSize ? target.subarray(0, n) : undefined;
      } finally {
        await reader.close();
      }
    })().catch(() => undefined);
    this.ahead.set(item.objectKey, { buffer: target, bytes });
  }

  /** The object's bytes: from the ring when it was read ahead, else a stream from the store. */
  async get(key: string): Promise<Iterable<Uint8Array> | NodeJS.ReadableStream> {
    const entry = this.ahead.get(key);
    const bytes = entry ? await entry.bytes : undefined;
    if (bytes) return [bytes];
    return this.store.get(key);
  }

  /**
   * The sub-operation of this object is over (sent and answered, failed, or not attempted): its buffer
   * goes back to the ring. Only once nothing holds a view of the buffer any more.
   */
  async release(key: string): Promise<void> {
    const entry = this.ahead.get(key);
    if (!entry) return;
    this.ahead.delete(key);
    // A read still running writes into the buffer: wait for it before anyone else may.
    await entry.bytes;
    this.free.push(entry.buffer);
  }
}
