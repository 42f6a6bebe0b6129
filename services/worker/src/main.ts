/**
 * The worker role: consumes `ingest-instance` jobs. Composition only; the job itself is in jobs/.
 */
import type { Db } from '@portico/db';
import { receivedHeaders } from '@portico/dicom';
import type { ObjectStore } from '@portico/storage';
import type { JobQueues, JobWorkers } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import { ingestInstance } from './jobs/ingest-instance.ts';
import { startReconciler } from './reconcile.ts';
import type { Router } from './route.ts';
import type { ExportRetryPolicy } from '@portico/jobs';

export interface WorkerDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly log: Logger;
  readonly concurrency: number;
  /** Reconciler schedule (see reconcile.ts); omitted: no reconciler. */
  readonly reconcile?: { readonly intervalMs: number; readonly olderThanMs: number };
  /** Routing (store-and-forward); omitted: instances are only stored. */
  readonly routing?: { readonly router: Router; readonly policy: ExportRetryPolicy };
}

/** Starts the ingest consumers (and the reconciler); close() stops taking jobs and waits for running ones. */
export async function startWorker(deps: WorkerDeps): Promise<JobWorkers> {
  // Receivers in this process (standalone) hand their parsed headers to this worker from now on.
  const closeHandoff = receivedHeaders.open();
  let workers: JobWorkers;
  try {
    workers = await deps.queues.startIngestWorker(
      async (payload, ctx) => {
        const routing = deps.routing;
        await ingestInstance(
          {
            db: deps.db,
            store: deps.store,
            // read when something is logged (see JobContext.log)
            get log() {
              return ctx.log;
            },
            ...(routing ? { routing: { plan: routing.router, enqueue: (refs) => deps.queues.enqueueExports(refs, routing.policy) } } : {}),
          },
          payload,
        );
      },
      { concurrency: deps.concurrency, log: deps.log.child({ role: 'worker' }) },
    );
  } catch (err) {
    closeHandoff();
    throw err;
  }
  const reconciler = deps.reconcile
    ? startReconciler({ store: deps.store, queues: deps.queues, log: deps.log.child({ role: 'reconciler' }) }, deps.reconcile)
    : undefined;
  return {
    async close() {
      await reconciler?.stop();
      await workers.close();
      closeHandoff();
    },
  };
}
