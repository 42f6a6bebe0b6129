/**
 * The export role: one queue consumer per destination (its concurrency and rate from the destination's
 * settings), restarted when the destinations change, plus the reconciler that re-enqueues deliveries a
 * queue lost. Composition only; delivery is deliver.ts.
 */
import { readFileSync } from 'node:fs';
import type { PorticoConfig } from '@portico/config';
import { expireCommitments, findStrandedExports, type Db } from '@portico/db';
import { exportRetryPolicy, type JobQueues, type JobWorkers } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import type { ObjectStore } from '@portico/storage';
import { deliveryLimits, startDestinationRegistry, type Destination, type DestinationRegistry } from './destinations.ts';
import { deliver } from './deliver.ts';
import { CommitmentRequester } from './commitment.ts';
import { DimseSender } from './dimse-sender.ts';
import { closeTransforms } from './transform.ts';

export interface ExportDeps {
  readonly config: PorticoConfig;
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly log: Logger;
}

export interface ExportService {
  readonly destinations: DestinationRegistry;
  /** Storage commitment requests this process made (settled(): wait for those under way). */
  readonly commitment: CommitmentRequester;
  /** One reconciler pass now; returns how many deliveries were re-enqueued. */
  reconcile(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Re-enqueues unfinished deliveries whose job may be gone (ids are stable: a job that exists is left
 * alone), and records storage commitment requests left unanswered past their timeout.
 */
export async function reconcileExports(db: Db, queues: JobQueues, config: PorticoConfig, log: Logger): Promise<number> {
  const expired = await expireCommitments(db, config.export.commitmentTimeoutMs);
  if (expired > 0) log.warn({ count: expired, timeoutMs: config.export.commitmentTimeoutMs }, 'storage commitment: no report within the timeout');
  const stranded = await findStrandedExports(db, config.export.reconcileAfterMs);
  if (stranded.length === 0) return 0;
  await queues.enqueueExports(stranded, exportRetryPolicy(config));
  log.info({ count: stranded.length }, 'export reconciler re-enqueued unfinished deliveries');
  return stranded.length;
}

export async function startExport(deps: ExportDeps): Promise<ExportService> {
  const { config, log } = deps;
  const registry = await startDestinationRegistry(deps.db, config.dimse.nodesFile, config.dimse.nodesReloadMs, log.child({ role: 'export' }));
  const tls = {
    ...(config.dimse.tlsCaFile ? { ca: readFileSync(config.dimse.tlsCaFile) } : {}),
    ...(config.dimse.tlsCertFile ? { cert: readFileSync(config.dimse.tlsCertFile) } : {}),
    ...(config.dimse.tlsKeyFile ? { key: readFileSync(config.dimse.tlsKeyFile) } : {}),
  };
  const commitment = new CommitmentRequester({
    db: deps.db,
    queues: deps.queues,
    log: log.child({ role: 'export' }),
    ourAeTitle: config.dimse.aeTitle,
    maxPduLength: config.dimse.maxPduLength,
    timeoutMs: config.dimse.scuTimeoutMs,
    tls,
    associationWaitMs: config.export.commitmentAssociationWaitMs,
    maxResends: config.export.commitmentMaxResends,
    retry: exportRetryPolicy(config),
  });
  const dimse = new DimseSender({
    store: deps.store,
    ourAeTitle: config.dimse.aeTitle,
    maxPduLength: config.dimse.maxPduLength,
    timeoutMs: config.dimse.scuTimeoutMs,
    idleMs: config.export.associationIdleMs,
    log,
    tls,
  });
  const deliverDeps = {
    db: deps.db,
    store: deps.store,
    queues: deps.queues,
    dimse,
    destination: (name: string) => registry.get(name),
    maxAttempts: config.export.maxAttempts,
    backoffMs: config.export.backoffMs,
    leaseMs: config.export.leaseMs,
    commitment,
  };
  const workers = new Map<string, { limits: string; workers: JobWorkers }>();
  let syncing: Promise<void> = Promise.resolve();
  const sync = (all: readonly Destination[]): Promise<void> =>
    (syncing = syncing.then(async () => {
      const wanted = new Map(all.map((d) => [d.name, d]));
      for (const [name, w] of workers) {
        const d = wanted.get(name);
        if (d && JSON.stringify(deliveryLimits(d)) === w.limits) continue;
        workers.delete(name);
        await w.workers.close();
        log.info({ destination: name }, d ? 'export consumer restarted with new limits' : 'export consumer stopped: destination removed');
      }
      for (const d of all) {
        if (workers.has(d.name)) continue;
        const limits = deliveryLimits(d);
        try {
          const w = await deps.queues.startExportWorker(d.name, (payload, ctx) => deliver(deliverDeps, payload, ctx), {
            concurrency: limits.concurrency,
            ...(limits.maxPerSecond ? { maxPerSecond: limits.maxPerSecond } : {}),
            log: log.child({ role: 'export', destination: d.name }),
          });
          workers.set(d.name, { limits: JSON.stringify(limits), workers: w });
        } catch (err) {
          log.warn({ destination: d.name, err: (err as Error).message }, 'could not start the export consumer; retrying at the next reload');
        }
      }
    }));
  await sync(registry.all());
  registry.onChange((all) => void sync(all));
  // Retry consumers that could not start (queue backend down at start) at every reload tick too.
  const retryTimer = setInterval(() => void sync(registry.all()), config.dimse.nodesReloadMs);
  retryTimer.unref();

  let reconciling: Promise<unknown> = Promise.resolve();
  const reconcile = (): Promise<number> => {
    const pass = reconcileExports(deps.db, deps.queues, config, log);
    reconciling = pass.catch((err: unknown) => log.warn({ err: (err as Error).message }, 'export reconciler pass failed'));
    return pass;
  };
  void reconcile().catch(() => undefined);
  const reconcileTimer = setInterval(() => void reconcile().catch(() => undefined), config.export.reconcileIntervalMs);
  reconcileTimer.unref();
  log.info({ destinations: registry.all().map((d) => d.name) }, 'export consumers started');

  return {
    destinations: registry,
    commitment,
    reconcile,
    async close() {
      registry.stop();
      clearInterval(retryTimer);
      clearInterval(reconcileTimer);
      await reconciling;
      await syncing;
      await Promise.all([...workers.values()].map((w) => w.workers.close()));
      workers.clear();
      await commitment.settled();
      await dimse.close();
      await closeTransforms();
    },
  };
}
