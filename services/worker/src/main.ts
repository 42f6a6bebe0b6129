/**
 * The worker role: consumes `ingest-instance` jobs. Composition only; the job itself is in jobs/.
 */
import type { Db } from '@portico/db';
import type { ObjectStore } from '@portico/storage';
import type { JobQueues, JobWorkers } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import { ingestInstance } from './jobs/ingest-instance.ts';

export interface WorkerDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly log: Logger;
  readonly concurrency: number;
}

/** Starts the ingest consumers; close() stops taking jobs and waits for running ones. */
export async function startWorker(deps: WorkerDeps): Promise<JobWorkers> {
  return deps.queues.startIngestWorker(
    async (payload, ctx) => {
      await ingestInstance({ db: deps.db, store: deps.store, log: ctx.log }, payload);
    },
    { concurrency: deps.concurrency, log: deps.log.child({ role: 'worker' }) },
  );
}
