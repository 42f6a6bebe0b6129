/**
 * The copy of an instance made for one destination: transcoded and/or with the route's attribute
 * mutations applied (@portico/imaging transformInstance). One instance is held in memory while it is
 * made; the stored object is never changed.
 *
 * The work runs on worker threads (transform-worker.ts), started on first use: the codecs are synchronous
 * WASM, and a JPEG 2000 encode of a CT slice takes ~170 ms here, which on the main thread would hold up
 * every association and HTTP request of the process.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ClaimedExport } from '@portico/db';
import type { ObjectStore } from '@portico/storage';

export interface DestinationCopy {
  readonly bytes: Buffer;
  readonly transferSyntaxUid: string;
}

async function readObject(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await store.get(key)) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

type Reply = { id: number; ok: true; bytes: Uint8Array; transferSyntaxUid: string } | { id: number; ok: false; error: string };

/** A few threads (one fewer than the CPUs, at least one, at most four), each taking the next copy. */
interface Slot {
  readonly worker: Worker;
  /** Copies sent to this thread and not answered yet. */
  readonly inFlight: Set<number>;
}

class TransformPool {
  private readonly workers: Slot[] = [];
  private readonly pending = new Map<number, { resolve: (c: DestinationCopy) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private readonly size = Math.max(1, Math.min(4, availableParallelism() - 1));

  private spawn(): Slot {
    const worker = new Worker(new URL('./transform-worker.ts', import.meta.url));
    const slot: Slot = { worker, inFlight: new Set() };
    const inFlight = slot.inFlight;
    worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      inFlight.delete(r.id);
      if (!p) return;
      if (r.ok) p.resolve({ bytes: Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), transferSyntaxUid: r.transferSyntaxUid });
      else p.reject(new Error(r.error));
    });
    // A thread that dies (out of memory on a huge instance) fails its copies; the next one gets a new thread.
    worker.on('error', (err) => {
      for (const id of inFlight) {
        this.pending.get(id)?.reject(err);
        this.pending.delete(id);
      }
      const at = this.workers.indexOf(slot);
      if (at >= 0) this.workers.splice(at, 1);
    });
    worker.unref();
    this.workers.push(slot);
    return slot;
  }

  run(bytes: Buffer, opts: { transferSyntaxUid?: string; mutations: ClaimedExport['mutations'] }): Promise<DestinationCopy> {
    const idle = this.workers.find((w) => w.inFlight.size === 0);
    const slot = idle ?? (this.workers.length < this.size ? this.spawn() : this.workers.reduce((a, b) => (b.inFlight.size < a.inFlight.size ? b : a)));
    const id = ++this.nextId;
    slot.inFlight.add(id);
    return new Promise<DestinationCopy>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Copied by the structured clone (Node's pooled buffers cannot be transferred).
      slot.worker.postMessage({ id, bytes, opts });
    });
  }

  async close(): Promise<void> {
    const all = this.workers.splice(0);
    await Promise.all(all.map((w) => w.worker.terminate()));
  }
}

let pool: TransformPool | undefined;

/** Part-10 bytes of the copy: in `transferSyntaxUid` (undefined: as stored) with the item's mutations. */
export async function transformForDestination(
  store: ObjectStore,
  item: Pick<ClaimedExport, 'objectKey' | 'mutations'>,
  transferSyntaxUid: string | undefined,
): Promise<DestinationCopy> {
  const source = await readObject(store, item.objectKey);
  pool ??= new TransformPool();
  return pool.run(source, { ...(transferSyntaxUid ? { transferSyntaxUid } : {}), mutations: item.mutations });
}

/** Stops the transform threads (they do not keep the process alive; this is for an orderly shutdown). */
export async function closeTransforms(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close();
}
