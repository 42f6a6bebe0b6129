/**
 * Jobs: one registry, two backends.
 *
 * Each job is defined once ({@link JOBS}): its queue, default options and idempotency key. Payloads
 * carry keys, UIDs and a W3C traceparent — never attribute values — so a queue dump reveals no patient.
 *
 * Backends: BullMQ on Redis (cluster), or PostgreSQL (standalone; no Redis): the ingest queue is a table
 * of our own there (pg-ingest.ts says why), the export queues BullMQ's PostgreSQL backend. The producer
 * side fails fast when the backend is unreachable (no offline queue), because the DIMSE and STOW-RS edges
 * must answer "out of resources" rather than hang or acknowledge.
 */
import { Queue, Worker, UnrecoverableError, withBackend, createPostgresBackend, type Job, type JobsOptions } from 'bullmq';
import type { Logger } from '@portico/logging';
import type { PorticoConfig } from '@portico/config';
import { openIngestQueue, type IngestQueue } from './pg-ingest.ts';

export { UnrecoverableError } from 'bullmq';

/** Payload of `ingest-instance`: where the received bytes are and who sent them. */
export interface IngestInstancePayload {
  /** Object key of the received bytes (`staging/<uuid>.dcm`). */
  readonly stagingKey: string;
  readonly sopInstanceUid: string;
  /** From the data set ('' when it has none); lets a retry find the object at its final key. */
  readonly studyInstanceUid?: string;
  readonly seriesInstanceUid?: string;
  /** 'import' when the reconciler found a staged object whose job was lost (its source is unknown). */
  readonly source: 'dimse' | 'stow-rs' | 'import';
  readonly callingAeTitle?: string;
  readonly calledAeTitle?: string;
  /** ISO time the acknowledgement was about to be sent; the latest received copy of an instance wins. */
  readonly receivedAt: string;
  readonly traceparent?: string;
}

export interface JobDefinition<P> {
  readonly queue: string;
  readonly options: JobsOptions;
  /** Idempotency key; BullMQ ignores an add whose job id exists. Never contains ':'. */
  readonly jobId: (payload: P) => string;
}

function stagingId(key: string): string {
  return key.replace(/^.*\//, '').replace(/\.dcm$/, '');
}

/** The registry. A start-up check ({@link assertHandlers}) fails the boot if a job has no handler. */
export const JOBS = {
  'ingest-instance': {
    queue: 'ingest',
    // Generous attempts: a database or store outage must not turn into a lost instance. Failed jobs are
    // kept so `portico` tooling (and the reconciler) can see and replay them.
    options: { attempts: 12, backoff: { type: 'exponential', delay: 500 }, removeOnComplete: true, removeOnFail: { count: 100000 } },
    // One job per received copy, keyed by its staging object: a re-send while the first copy is queued is
    // a second job (the index upsert lets the latest received copy win), and the reconciler, which knows
    // only the staging key, re-adds a lost job under the same id, so it never duplicates a queued one.
    jobId: (p: IngestInstancePayload) => `ingest-instance.${stagingId(p.stagingKey)}`,
  } satisfies JobDefinition<IngestInstancePayload>,
} as const;

export type JobName = keyof typeof JOBS;

/**
 * Payload of an export job: one delivery (an `export_request` row in PostgreSQL, which holds everything
 * else) in one generation. Keys only, no patient data.
 */
export interface ExportJobPayload {
  readonly exportPk: string;
  readonly generation: number;
  readonly destination: string;
  readonly traceparent?: string;
}

/** Idempotency key of an export job: a delivery in one generation is enqueued once. */
export function exportJobId(p: Pick<ExportJobPayload, 'exportPk' | 'generation'>): string {
  return `export-${p.exportPk}-${p.generation}`;
}

/** One queue per destination (rate limits and concurrency are per queue); never contains ':'. */
export function exportQueueName(destination: string): string {
  return `export.${encodeURIComponent(destination)}`;
}

export interface ExportRetryPolicy {
  /** Attempts before the delivery is dead. */
  readonly attempts: number;
  /** First retry delay; doubles each time, with up to 50% jitter. */
  readonly backoffMs: number;
}

/** The retry policy of export deliveries, from the configuration (the worker enqueues them, the export role retries). */
export function exportRetryPolicy(config: PorticoConfig): ExportRetryPolicy {
  return { attempts: config.export.maxAttempts, backoffMs: config.export.backoffMs };
}

export function assertHandlers(handlers: Partial<Record<JobName, unknown>>, needed: readonly JobName[]): void {
  const missing = needed.filter((n) => typeof handlers[n] !== 'function');
  if (missing.length > 0) throw new Error(`no handler registered for job(s): ${missing.join(', ')}`);
}

export type QueueBackendConfig =
  | { readonly kind: 'redis'; readonly url: string; readonly prefix: string }
  | {
      readonly kind: 'postgres';
      readonly url: string;
      readonly schema: string;
      /** How often an idle ingest worker polls for rows nobody woke it for (default 1000 ms). */
      readonly ingestPollMs?: number;
    };

export interface JobContext {
  readonly jobId: string;
  readonly attempt: number;
  readonly log: Logger;
}

export type IngestHandler = (payload: IngestInstancePayload, ctx: JobContext) => Promise<void>;

/** Runs one export job; throwing asks for a retry after the backoff. */
export type ExportHandler = (payload: ExportJobPayload, ctx: JobContext) => Promise<void>;

export interface ExportQueueCounts {
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  readonly failed: number;
  /** Age of the oldest job waiting to run (not delayed), ms; null when none waits. */
  readonly oldestWaitingMs: number | null;
}

export interface JobWorkers {
  /** Stops taking jobs and waits for the running ones (graceful). */
  close(): Promise<void>;
}

export interface JobQueues {
  readonly backend: QueueBackendConfig['kind'];
  /** Durably enqueues; rejects (fast) when the backend is unreachable. */
  enqueueIngest(payload: IngestInstancePayload): Promise<void>;
  /**
   * Best effort: removes the queued ingest job of a staging object whose acknowledgement was refused
   * after the job had been added (the object store failed while the job was being enqueued). A job
   * already running is left alone: it finds the object gone, or indexes it.
   */
  cancelIngest(stagingKey: string): Promise<void>;
  startIngestWorker(handler: IngestHandler, opts: { concurrency: number; log: Logger }): Promise<JobWorkers>;
  /** Waiting + active + delayed + failed counts of the ingest queue. */
  counts(): Promise<Record<string, number>>;
  /** Durably enqueues deliveries on their destinations' queues (an existing job id is left as it is). */
  enqueueExports(refs: readonly Omit<ExportJobPayload, 'traceparent'>[], policy: ExportRetryPolicy, opts?: { delayMs?: number }): Promise<void>;
  /** Removes waiting or delayed export jobs (a cancel); running ones finish and find their row cancelled. */
  removeExports(refs: readonly Pick<ExportJobPayload, 'exportPk' | 'generation' | 'destination'>[]): Promise<void>;
  /** Consumes one destination's queue: `concurrency` jobs at once, at most `maxPerSecond` started per second. */
  startExportWorker(destination: string, handler: ExportHandler, opts: { concurrency: number; maxPerSecond?: number; log: Logger }): Promise<JobWorkers>;
  exportCounts(destination: string): Promise<ExportQueueCounts>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const ENQUEUE_TIMEOUT_MS = 5000;
/** Export jobs added concurrently on the PostgreSQL backend (see enqueueExports). */
const EXPORT_ADDS_AT_ONCE = 8;

/**
 * Turns off the event stream of BullMQ's PostgreSQL backend in our queue schema. Every job state change
 * (added, waiting, active, completed: four per ingest job) inserts a row into its `event` table and
 * NOTIFYs, for QueueEvents listeners; Portico has none (job outcomes are recorded in the index database).
 * Measured with pg_stat_statements, 300 instances over one association: 33 -> 24 WAL records per instance.
 * The backend's own migrations re-create the function on a BullMQ upgrade; this runs at every start,
 * after them, under an advisory lock so that processes starting together do not race on the catalog.
 * Remove it (and re-run the migrations) if a QueueEvents consumer is ever added.
 */
async function muteEventStream(url: string, schema: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const fn = `${client.escapeIdentifier(schema)}.publish_event`;
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`portico:mute-events:${schema}`]);
    await client.query(`CREATE OR REPLACE FUNCTION ${fn}(p_queue text, p_event text, p_data jsonb) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await client.end();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Opens the producer side and returns the queue set; workers start on demand. */
export async function openJobQueues(cfg: QueueBackendConfig, log: Logger): Promise<JobQueues> {
  const def = JOBS['ingest-instance'];
  const closers: Array<() => Promise<unknown>> = [];
  let ingest: IngestQueue;
  /** `extra`: BullMQ worker options. */
  let makeWorker: (name: string, processor: (job: Job) => Promise<void>, concurrency: number, extra?: Record<string, unknown>) => Worker;
  let makeQueue: (name: string) => Queue;

  if (cfg.kind === 'redis') {
    // Producer connection: no offline queue, few retries — an enqueue while Redis is down must fail now.
    // Loaded on demand: standalone queues on PostgreSQL and needs no Redis client.
    const { Redis } = await import('ioredis');
    const producer = new Redis(cfg.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    producer.on('error', (err: Error) => log.warn({ err: err.message }, 'redis producer connection error'));
    await producer.connect().catch((err: unknown) => {
      producer.disconnect();
      throw new Error(`cannot reach Redis at ${new URL(cfg.url).host}: ${(err as Error).message}`);
    });
    closers.push(async () => producer.quit().catch(() => producer.disconnect()));
    makeQueue = (name) => new Queue(name, { connection: producer, prefix: cfg.prefix });
    makeWorker = (name, processor, concurrency, extra = {}) => {
      // Worker connections block (BRPOPLPUSH-style); BullMQ requires maxRetriesPerRequest null here.
      const conn = new Redis(cfg.url, { maxRetriesPerRequest: null });
      conn.on('error', (err: Error) => log.warn({ err: err.message }, 'redis worker connection error'));
      // No wake-up coalescing: a Redis wake-up costs next to nothing.
      const w = new Worker(name, processor, { connection: conn, prefix: cfg.prefix, concurrency, autorun: true, ...extra });
      w.on('closed', () => conn.disconnect());
      return w;
    };
    ingest = bullIngestQueue(makeQueue(def.queue), makeWorker);
  } else {
    const pg = withBackend(createPostgresBackend);
    // migrate: BullMQ creates or upgrades its own tables in this schema (under its own advisory lock).
    const connection = { connectionString: cfg.url, schema: cfg.schema, max: 5, migrate: true };
    // Consumers need not wait for the WAL flush when they mark a job done: a completion lost in a crash
    // only makes an idempotent job run again. Export producers keep synchronous commits (the ingest queue,
    // pg-ingest.ts, says why its enqueue need not).
    const consumerConnection = { ...connection, options: '-c synchronous_commit=off' };
    makeQueue = (name) => new pg.Queue(name, { connection }) as unknown as Queue;
    // BullMQ creates or upgrades its tables when a queue first connects; the event stream is muted after.
    const bootstrap = makeQueue('portico');
    try {
      await withTimeout(bootstrap.waitUntilReady(), 30000, 'queue backend start');
    } finally {
      await bootstrap.close();
    }
    await withTimeout(muteEventStream(cfg.url, cfg.schema), 30000, 'queue event stream');
    makeWorker = (name, processor, concurrency, extra = {}) => {
      const w = new pg.Worker(name, processor, { connection: consumerConnection, concurrency, autorun: false, ...extra }) as unknown as Worker;
      w.run().catch((err: unknown) => w.emit('error', err as Error));
      return w;
    };
    ingest = await withTimeout(
      openIngestQueue(
        cfg.url,
        cfg.schema,
        {
          policy: { attempts: def.options.attempts, backoffMs: def.options.backoff.delay },
          timeoutMs: ENQUEUE_TIMEOUT_MS,
          ...(cfg.ingestPollMs ? { pollMs: cfg.ingestPollMs } : {}),
        },
        log,
      ),
      30000,
      'ingest queue start',
    );
  }
  closers.push(() => ingest.close());
  // Export queues, opened on first use and kept (one per destination).
  const exportQueues = new Map<string, Queue>();
  const exportQueue = async (destination: string): Promise<Queue> => {
    let q = exportQueues.get(destination);
    if (!q) {
      q = makeQueue(exportQueueName(destination));
      q.on('error', (err: Error) => log.warn({ destination, err: err.message }, 'export queue error'));
      exportQueues.set(destination, q);
      closers.unshift(() => q!.close());
      await withTimeout(q.waitUntilReady(), 30000, 'export queue start');
    }
    return q;
  };

  return {
    backend: cfg.kind,
    async enqueueIngest(payload) {
      await withTimeout(ingest.enqueue(def.jobId(payload), payload), ENQUEUE_TIMEOUT_MS, 'enqueue');
    },
    async cancelIngest(stagingKey) {
      const jobId = def.jobId({ stagingKey, sopInstanceUid: '', source: 'import', receivedAt: '' });
      await withTimeout(ingest.cancel(jobId), ENQUEUE_TIMEOUT_MS, 'cancel').catch((err: unknown) =>
        log.warn({ jobId, err: (err as Error).message }, 'could not remove the ingest job of a refused instance'),
      );
    },
    async startIngestWorker(handler, opts) {
      assertHandlers({ 'ingest-instance': handler }, ['ingest-instance']);
      return ingest.startWorker(handler, opts);
    },
    async counts() {
      return withTimeout(ingest.counts(), ENQUEUE_TIMEOUT_MS, 'queue counts');
    },
    async enqueueExports(refs, policy, opts = {}) {
      const byDestination = new Map<string, Omit<ExportJobPayload, 'traceparent'>[]>();
      for (const r of refs) byDestination.set(r.destination, [...(byDestination.get(r.destination) ?? []), r]);
      for (const [destination, list] of byDestination) {
        const q = await exportQueue(destination);
        const jobs = list.map((r) => ({
          name: 'export-instance',
          data: { exportPk: r.exportPk, generation: r.generation, destination: r.destination } satisfies ExportJobPayload,
          opts: {
            jobId: exportJobId(r),
            attempts: policy.attempts,
            backoff: { type: 'exponential' as const, delay: policy.backoffMs, jitter: 0.5 },
            // Completed jobs go at once: the row says it was delivered, and a later re-add of the same
            // id (reconciler, batch-mate) must be able to run rather than be ignored.
            removeOnComplete: true,
            removeOnFail: { count: 10000 },
            ...(opts.delayMs ? { delay: opts.delayMs } : {}),
          },
        }));
        if (cfg.kind === 'redis') {
          await withTimeout(q.addBulk(jobs), ENQUEUE_TIMEOUT_MS, 'export enqueue');
          continue;
        }
        // Not addBulk on PostgreSQL: its add_jobs_bulk creates two temporary tables per call and writes
        // the event rows directly (past the muted event stream). Measured with pg_stat_statements while
        // forwarding 400 instances (one call each, from the worker): 16 ms of PostgreSQL time and 220 WAL
        // records per call, against about 1 ms for add_job. Single adds, a few at a time.
        for (let i = 0; i < jobs.length; i += EXPORT_ADDS_AT_ONCE)
          await withTimeout(
            Promise.all(jobs.slice(i, i + EXPORT_ADDS_AT_ONCE).map((j) => q.add(j.name, j.data, j.opts))),
            ENQUEUE_TIMEOUT_MS,
            'export enqueue',
          );
      }
    },
    async removeExports(refs) {
      for (const r of refs) {
        const q = await exportQueue(r.destination);
        await withTimeout(q.remove(exportJobId(r)), ENQUEUE_TIMEOUT_MS, 'export remove').catch(() => undefined);
      }
    },
    async startExportWorker(destination, handler, opts) {
      const name = exportQueueName(destination);
      await exportQueue(destination);
      const worker = makeWorker(
        name,
        async (job: Job) => {
          const jobLog = opts.log.child({ queue: name, jobId: job.id, attempt: job.attemptsMade + 1 });
          await handler(job.data as ExportJobPayload, { jobId: String(job.id), attempt: job.attemptsMade + 1, log: jobLog });
        },
        opts.concurrency,
        opts.maxPerSecond ? { limiter: { max: Math.max(1, Math.round(opts.maxPerSecond)), duration: 1000 } } : {},
      );
      worker.on('error', (err: Error) => opts.log.warn({ destination, err: err.message }, 'export worker error'));
      await worker.waitUntilReady();
      return { close: () => worker.close() };
    },
    async exportCounts(destination) {
      const q = await exportQueue(destination);
      const c = await withTimeout(q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized'), ENQUEUE_TIMEOUT_MS, 'export counts');
      const oldest = await withTimeout(q.getJobs(['waiting'], 0, 0, true), ENQUEUE_TIMEOUT_MS, 'export oldest');
      return {
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        active: c.active ?? 0,
        delayed: c.delayed ?? 0,
        failed: c.failed ?? 0,
        oldestWaitingMs: oldest[0] ? Date.now() - oldest[0].timestamp : null,
      };
    },
    async ping() {
      await withTimeout(ingest.ping(), 2000, 'queue ping');
    },
    async close() {
      for (const c of closers) await c().catch(() => undefined);
    },
  };
}

/** The ingest queue on BullMQ (the Redis backend). */
function bullIngestQueue(queue: Queue, makeWorker: (name: string, processor: (job: Job) => Promise<void>, concurrency: number) => Worker): IngestQueue {
  const def = JOBS['ingest-instance'];
  return {
    async enqueue(jobId, payload) {
      await queue.add('ingest-instance', payload, { ...def.options, jobId });
    },
    async cancel(jobId) {
      await queue.remove(jobId);
    },
    async startWorker(handler, opts) {
      const worker = makeWorker(
        def.queue,
        async (job: Job) => {
          // The job's logger is made on first use: a pino child with redaction costs ~30 µs, per job.
          let jobLog: Logger | undefined;
          const attempt = job.attemptsMade + 1;
          await handler(job.data as IngestInstancePayload, {
            jobId: String(job.id),
            attempt,
            get log() {
              return (jobLog ??= opts.log.child({ queue: def.queue, jobId: job.id, attempt }));
            },
          });
        },
        opts.concurrency,
      );
      worker.on('error', (err: Error) => opts.log.warn({ err: err.message }, 'worker error'));
      worker.on('failed', (job: Job | undefined, err: Error) =>
        opts.log.warn(
          { queue: def.queue, jobId: job?.id, attempt: job?.attemptsMade, err: err.message, unrecoverable: err instanceof UnrecoverableError },
          'job failed',
        ),
      );
      await worker.waitUntilReady();
      return { close: () => worker.close() };
    },
    counts: () => queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed'),
    async ping() {
      await queue.getJobCounts('waiting');
    },
    close: () => queue.close(),
  };
}
