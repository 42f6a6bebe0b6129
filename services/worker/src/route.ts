/**
 * Routing at ingest: the routes decide where an indexed instance goes; each destination gets an
 * `export_request` row (the durable record) and then a job on its queue. Rows first: a crash or a queue
 * outage between the two leaves rows the export reconciler re-enqueues; the job is retried anyway, and
 * routing the same received copy again asks for no second delivery (see planExports).
 */
import { planExports, type Db, type ExportPlan } from '@portico/db';
import type { ExportRetryPolicy, JobQueues } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import type { IndexedInstance } from './jobs/ingest-instance.ts';

/** Where an instance goes: one plan per destination (none: it stays here only). */
export type Router = (indexed: IndexedInstance) => readonly ExportPlan[];

export interface RouteDeps {
  readonly db: Db;
  readonly queues: JobQueues;
  readonly router: Router;
  readonly policy: ExportRetryPolicy;
  readonly log: Logger;
}

export async function routeIndexed(deps: RouteDeps, indexed: IndexedInstance): Promise<void> {
  const plans = deps.router(indexed);
  if (plans.length === 0) return;
  const refs = await planExports(deps.db, indexed, plans);
  const toSend = refs.filter((r) => r.status === 'queued' || r.status === 'failed' || r.status === 'sending');
  if (toSend.length > 0) await deps.queues.enqueueExports(toSend, deps.policy);
  deps.log.debug({ sopInstanceUid: indexed.sopInstanceUid, destinations: plans.map((p) => `${p.destination} (${p.rule})`) }, 'instance routed');
}
