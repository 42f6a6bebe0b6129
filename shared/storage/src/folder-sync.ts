/**
 * Flushing folder entries (fsync of a folder) for the folder store, cheaply.
 *
 * Every stored instance makes a folder entry durable three times (the staged object, its final key, the
 * removal of the staged copy), mostly in the same two folders. Opening and closing the folder for each
 * flush were two more thread-pool round trips each time; here the handles of recently flushed folders stay
 * open (at most {@link MAX_OPEN}, the least recently used closed first).
 *
 * Flushes of one folder are also coalesced: a request that arrives while a flush of that folder runs cannot
 * rely on it (it may have started before the caller's change), so it waits for the next one, which starts
 * when the running one ends and serves every request that arrived meanwhile — group commit, as databases
 * do for their log. Under concurrent ingest (several associations, the worker removing staged copies while
 * receivers add them) that turns several journal commits into one.
 *
 * A folder replaced behind the store's back (removed and re-created by hand) would keep being flushed
 * through the old handle; the store never removes folders, and a handle whose flush fails is dropped and
 * the flush retried once through a fresh one.
 */
import { open, type FileHandle } from 'node:fs/promises';

const MAX_OPEN = 32;

interface FolderState {
  handle?: Promise<FileHandle>;
  /** The flush that runs now. */
  running?: Promise<void>;
  /** The flush that starts when `running` ends, shared by everyone who asked meanwhile. */
  next?: Promise<void>;
}

export class FolderSync {
  private readonly folders = new Map<string, FolderState>();
  private closed = false;

  /** Resolves once every entry change made in `dir` before the call is durable. */
  sync(dir: string): Promise<void> {
    let s = this.folders.get(dir);
    if (s) {
      // Most recently used last (Map order), so eviction takes the first.
      this.folders.delete(dir);
      this.folders.set(dir, s);
    } else {
      s = {};
      this.folders.set(dir, s);
      this.evict();
    }
    const state = s;
    if (!state.running) return this.start(dir, state);
    state.next ??= state.running.then(
      () => this.startNext(dir, state),
      () => this.startNext(dir, state),
    );
    return state.next;
  }

  /** Closes every cached handle; later calls flush through a handle opened and closed each time. */
  async close(): Promise<void> {
    this.closed = true;
    const states = [...this.folders.values()];
    this.folders.clear();
    await Promise.all(states.map((s) => s.handle?.then((h) => h.close()).catch(() => undefined)));
  }

  private startNext(dir: string, state: FolderState): Promise<void> {
    state.next = undefined;
    return this.start(dir, state);
  }

  private start(dir: string, state: FolderState): Promise<void> {
    const run = this.flush(dir, state).finally(() => {
      if (state.running === run) state.running = undefined;
    });
    state.running = run;
    return run;
  }

  private async flush(dir: string, state: FolderState): Promise<void> {
    if (this.closed) return flushOnce(dir);
    try {
      state.handle ??= open(dir, 'r');
      await (await state.handle).sync();
    } catch (err) {
      // A stale or failed handle: drop it and try once with a fresh one (which also reports a real error).
      const stale = state.handle;
      state.handle = undefined;
      stale?.then((h) => h.close()).catch(() => undefined);
      state.handle = open(dir, 'r');
      try {
        await (await state.handle).sync();
      } catch (retryErr) {
        state.handle = undefined;
        throw retryErr instanceof Error ? retryErr : (err as Error);
      }
    }
  }

  private evict(): void {
    // Oldest first (Map order); deleting while iterating a Map is safe.
    for (const [dir, s] of this.folders) {
      if (this.folders.size <= MAX_OPEN) return;
      if (s.running) continue; // its handle is in use
      this.folders.delete(dir);
      s.handle?.then((h) => h.close()).catch(() => undefined);
    }
  }
}

/** Flushes a folder through a handle opened for it (or a file: fsync of its data and metadata). */
export async function flushOnce(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
