/**
 * Hand-off of a header parsed on receipt to the ingest job of the same staged object, inside one process.
 *
 * The receivers (C-STORE, STOW-RS) parse every data set while it arrives, to refuse what cannot be
 * indexed before acknowledging it; the ingest job then parsed the staged object a second time (open, read,
 * parse, DICOM JSON: ~0.8 ms of CPU per 512 KiB CT instance). When both run in one process (standalone,
 * or a `dimse` / `dicomweb` process that also runs the worker) the receiver offers its result here, keyed
 * by the staging key (a fresh UUID per received copy, so a key never names two different byte streams),
 * and the job takes it instead of parsing again. In the cluster shape the job runs elsewhere, finds
 * nothing, and parses the object as before: this is an optimisation, never a source of truth.
 *
 * Bounded: at most {@link MAX_ENTRIES} entries (offers beyond are not kept), each dropped after
 * {@link MAX_AGE_MS}; a worker that is far behind (a backlog after an outage) parses from the object
 * store, as it must anyway after a restart.
 * The byte count is checked against the stored object's size by the taker.
 */
import type { ParsedInstance } from './parse-instance.ts';

const MAX_ENTRIES = 256;
const MAX_AGE_MS = 60_000;

export interface HandedOffHeader {
  readonly parsed: ParsedInstance;
  /** Bytes of the staged object (File Meta group included). */
  readonly size: number;
}

export class ParsedHeaderHandoff {
  private readonly entries = new Map<string, HandedOffHeader & { readonly at: number }>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  /** Ingest workers running in this process; offers are ignored while there is none (a `dimse` process). */
  private takers = 0;

  constructor(opts: { maxEntries?: number; maxAgeMs?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? MAX_ENTRIES;
    this.maxAgeMs = opts.maxAgeMs ?? MAX_AGE_MS;
  }

  /** An ingest worker of this process starts taking entries; call the returned function when it stops. */
  open(): () => void {
    this.takers++;
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      if (--this.takers === 0) this.entries.clear();
    };
  }

  /** Called by a receiver before it enqueues the ingest job of `stagingKey`. */
  offer(stagingKey: string, parsed: ParsedInstance, size: number, now = Date.now()): void {
    if (this.takers === 0) return;
    this.expire(now);
    // Full: the new entry is the one left out. The worker takes jobs oldest first, so evicting the oldest
    // entry threw away the next one it needed: while receptions outpaced indexing (STOW-RS, 4 requests of 50
    // instances in flight) the kept entries ran ahead of the worker and half the jobs re-parsed their object
    // (600 of 1200 in a test run).
    if (this.entries.size >= this.maxEntries) return;
    this.entries.set(stagingKey, { parsed, size, at: now });
  }

  /** The entry of `stagingKey`, removed; undefined when there is none (other process, expired, evicted). */
  take(stagingKey: string, now = Date.now()): HandedOffHeader | undefined {
    const e = this.entries.get(stagingKey);
    if (!e) return undefined;
    this.entries.delete(stagingKey);
    return now - e.at <= this.maxAgeMs ? { parsed: e.parsed, size: e.size } : undefined;
  }

  /** Drops an entry whose job will not run (the acknowledgement was refused). */
  withdraw(stagingKey: string): void {
    this.entries.delete(stagingKey);
  }

  get size(): number {
    return this.entries.size;
  }

  private expire(now: number): void {
    for (const [key, e] of this.entries) {
      if (now - e.at <= this.maxAgeMs) break; // the rest are younger
      this.entries.delete(key);
    }
  }
}

/** The process-wide hand-off between the receivers and the ingest worker. */
export const receivedHeaders = new ParsedHeaderHandoff();
