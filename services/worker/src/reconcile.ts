/**
 * The reconciler: re-enqueues staged objects whose ingest job was lost.
 *
 * A staged object exists only between an acknowledgement and the end of its ingest job, so one that is
 * still there long after it was written means its job is gone — a queue backend that lost data (Redis
 * without persistence, restored from an old snapshot). The bytes are safe; only the job is re-added.
 * Job ids are derived from the staging key, so re-adding a job that still exists is a no-op in BullMQ.
 * Unparseable objects are moved out of `staging/` by the job (to `failed/`), so they are not retried forever.
 */
import type { ObjectStore } from '@portico/storage';
import type { JobQueues } from '@portico/jobs';
import type { Logger } from '@portico/logging';

export interface ReconcileDeps {
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly log: Logger;
}

/** One pass; returns how many staged objects were (re-)enqueued. */
export async function reconcileStaging(deps: ReconcileDeps, olderThanMs: number, now = Date.now()): Promise<number> {
  let enqueued = 0;
  for await (const object of deps.store.list('staging/')) {
    if (!object.key.endsWith('.dcm') || now - object.modified.getTime() < olderThanMs) continue;
    await deps.queues.enqueueIngest({ stagingKey: object.key, sopInstanceUid: '', source: 'import', receivedAt: object.modified.toISOString() });
    enqueued++;
  }
  if (enqueued > 0) deps.log.warn({ enqueued }, 'reconciler re-enqueued staged objects whose ingest job was missing');
  return enqueued;
}

/** Runs a pass now and every intervalMs until stopped; a failing pass is logged and retried next time. */
export function startReconciler(deps: ReconcileDeps, opts: { intervalMs: number; olderThanMs: number }): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const pass = (): void => {
    running = reconcileStaging(deps, opts.olderThanMs).catch((err: unknown) => deps.log.warn({ err: (err as Error).message }, 'reconciler pass failed'));
  };
  pass();
  const timer = setInterval(pass, opts.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
