/**
 * One export job: claim the delivery (and the other waiting deliveries of the same study to the same
 * destination, up to its batch size), send them, record each outcome.
 *
 * The `export_request` row decides, not the job: a job whose row is finished, cancelled, of a newer
 * generation or held by a live sender does nothing, so a job run twice (a crash between the send and the
 * queue's acknowledgement, a reconciler re-add) does no harm beyond a possible second C-STORE of the same
 * instance, which a destination takes as a replacement. A failed delivery is retried with exponential
 * backoff and jitter until `maxAttempts`, then it is dead; a refusal (a status saying the same bytes will
 * never be taken) is dead at once. Batch-mates whose delivery failed are re-enqueued here, since their
 * own jobs may already have run and found them held. A destination with `storageCommitment` is then asked
 * to commit what the batch delivered (commitment.ts), without the job waiting for its answer.
 */
import { claimExports, finishExports, renewLease, type Db, type ExportOutcome } from '@portico/db';
import type { ExportJobPayload, JobContext, JobQueues } from '@portico/jobs';
import type { ObjectStore } from '@portico/storage';
import type { CommitmentRequester } from './commitment.ts';
import { deliveryLimits, type Destination } from './destinations.ts';
import type { DimseSender } from './dimse-sender.ts';
import type { SendResult } from './outcome.ts';
import { stowBatch } from './stow-sender.ts';

export interface DeliverDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly dimse: DimseSender;
  readonly destination: (name: string) => Destination | undefined;
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly leaseMs: number;
  /** Storage commitment for destinations that ask for it (absent: never requested). */
  readonly commitment?: CommitmentRequester;
}

/** The delay before attempt n + 1 (n ≥ 1 attempts made): exponential, the mean of a 50% jitter. */
export function backoffDelay(attemptsMade: number, baseMs: number): number {
  const full = baseMs * 2 ** Math.max(0, attemptsMade - 1);
  return Math.round(full * (1 - Math.random() * 0.5));
}

export async function deliver(deps: DeliverDeps, payload: ExportJobPayload, ctx: JobContext): Promise<void> {
  const destination = deps.destination(payload.destination);
  if (!destination) throw new Error(`destination ${payload.destination} is not configured (nodes file or admin API)`);
  const limits = deliveryLimits(destination);
  const claimed = await claimExports(deps.db, payload, { batchSize: limits.batchSize, leaseMs: deps.leaseMs });
  if (claimed.length === 0) {
    ctx.log.debug('nothing to deliver: finished, cancelled, superseded or held by another sender');
    return;
  }
  const renew = setInterval(
    () =>
      void renewLease(
        deps.db,
        claimed.map((c) => c.exportPk),
        deps.leaseMs,
      ).catch(() => undefined),
    Math.max(1000, Math.floor(deps.leaseMs / 3)),
  );
  let results: SendResult[];
  try {
    results = destination.kind === 'dimse' ? await deps.dimse.sendBatch(destination.node, claimed) : await stowBatch(deps.store, destination.dicomweb, claimed);
  } finally {
    clearInterval(renew);
  }
  const byPk = new Map(claimed.map((c) => [c.exportPk, c]));
  const outcomes: ExportOutcome[] = results.map((r) => {
    const row = byPk.get(r.exportPk)!;
    const status = r.outcome === 'delivered' ? 'delivered' : r.outcome === 'refused' || row.attempts >= deps.maxAttempts ? 'dead' : 'failed';
    return {
      exportPk: r.exportPk,
      generation: r.generation,
      status,
      ...(r.detail ? { error: r.detail.slice(0, 1000) } : {}),
      ...(status === 'failed' ? { retryAfterMs: backoffDelay(row.attempts, deps.backoffMs) } : {}),
    };
  });
  await finishExports(deps.db, outcomes);
  if (destination.kind === 'dimse' && destination.node.storageCommitment && deps.commitment) {
    // After the batch, not per instance: one N-ACTION references what this association delivered.
    const delivered = new Set(outcomes.filter((o) => o.status === 'delivered').map((o) => o.exportPk));
    deps.commitment.request(
      destination.node,
      claimed.filter((c) => delivered.has(c.exportPk)),
    );
  }
  const delivered = outcomes.filter((o) => o.status === 'delivered').length;
  const failed = outcomes.filter((o) => o.status !== 'delivered');
  ctx.log.info(
    {
      destination: payload.destination,
      batch: claimed.length,
      delivered,
      failed: failed.length,
      dead: outcomes.filter((o) => o.status === 'dead').length,
      ...(failed[0]?.error ? { error: failed[0].error } : {}),
    },
    'export batch done',
  );
  // Batch-mates to try again: their next attempt after the backoff (an existing job keeps its schedule).
  const retryMates = outcomes.filter((o) => o.status === 'failed' && o.exportPk !== payload.exportPk);
  if (retryMates.length > 0) {
    const attempts = Math.max(...retryMates.map((o) => byPk.get(o.exportPk)!.attempts));
    await deps.queues.enqueueExports(
      retryMates.map((o) => ({ exportPk: o.exportPk, generation: o.generation, destination: payload.destination })),
      { attempts: deps.maxAttempts, backoffMs: deps.backoffMs },
      { delayMs: backoffDelay(attempts, deps.backoffMs) },
    );
  }
  const own = outcomes.find((o) => o.exportPk === payload.exportPk);
  // The job's own delivery failed and has attempts left: the queue retries it after the backoff.
  if (own?.status === 'failed') throw new Error(own.error ?? 'delivery failed');
}
