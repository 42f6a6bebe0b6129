/**
 * The ingest queue of the PostgreSQL backend (standalone, or a cluster without Redis): one table in the
 * queue schema, not BullMQ.
 *
 * Why not BullMQ's PostgreSQL backend, which still carries the export queues: measured with
 * `bench/ingest-cpu.ts` and pg_stat_statements, its `add_job` on the C-STORE path and its fused
 * finish-and-claim were PL/pgSQL functions that waited on each other's row locks (means 1.1 and 2.5 ms),
 * a quarter of PostgreSQL's CPU per instance, and every job paid for a wake-up, a claim and a completion
 * in their own round trips. Here an instance costs one INSERT (the durable enqueue the acknowledgement
 * waits for) and a share of a batched DELETE; see bench/README for the numbers.
 *
 * - **Enqueue** inserts a row keyed by the job id (an existing id is left as it is, as in BullMQ),
 *   committed without waiting for the WAL flush. The acknowledgement's promise does not rest on that
 *   flush: it waits for the object store to hold the bytes durably (an fsynced staging file, an S3 PUT),
 *   and a row lost with the last moments of WAL — an operating-system crash; a crash of Portico alone
 *   loses nothing PostgreSQL acknowledged — is re-created by the reconciler, which re-enqueues every staged
 *   object older than `queue.reconcileAfterMs`. On one association that flush was 1-2 ms of each
 *   instance's ~6 ms between acknowledgements. When
 *   a worker runs in this same process, the row is inserted already claimed by it and handed over in
 *   memory: no claim round trip, no wake-up. Otherwise a NOTIFY wakes the workers of other processes.
 * - **Claiming** marks rows with the claiming worker's session (`pid:backend_start` of its LISTEN
 *   connection). A row whose owner session is gone (a crashed process) is claimable again at once; so is
 *   a row without owner (released at a graceful stop, or enqueued by another process).
 * - **Completion** deletes the row, batched, without waiting for the WAL flush: a completion lost in a
 *   crash only runs an idempotent job again.
 * - **Failure** puts the row back with a due time (exponential backoff) or, after the last attempt or an
 *   UnrecoverableError, marks it failed; failed rows are kept for inspection and replay.
 *
 * Rows hold the payload: keys and UIDs, no patient data.
 */
import pg from 'pg';
import { UnrecoverableError } from 'bullmq';
import type { Logger } from '@portico/logging';
import type { IngestHandler, IngestInstancePayload, JobWorkers } from './index.ts';

export interface PgIngestPolicy {
  readonly attempts: number;
  /** First retry delay; doubles with each attempt. */
  readonly backoffMs: number;
}

/** The ingest queue as the job set uses it; implemented here on PostgreSQL and in index.ts on BullMQ. */
export interface IngestQueue {
  enqueue(jobId: string, payload: IngestInstancePayload): Promise<void>;
  cancel(jobId: string): Promise<void>;
  startWorker(handler: IngestHandler, opts: { concurrency: number; log: Logger }): Promise<JobWorkers>;
  counts(): Promise<Record<string, number>>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

interface Claimed {
  readonly id: string;
  readonly seq?: string;
  readonly payload: IngestInstancePayload;
  readonly attempts: number;
}

/** How often an idle worker looks for rows nobody woke it for (retries that came due, orphans). */
const POLL_MS = 1000;
/** Rows claimed at once when polling. */
const CLAIM_BATCH = 64;
/** Completions are deleted together once this many are pending, or after FLUSH_MS. */
const FLUSH_COUNT = 32;
const FLUSH_MS = 20;

export async function openIngestQueue(url: string, schema: string, policy: PgIngestPolicy, log: Logger, timeoutMs: number): Promise<IngestQueue> {
  const table = `${pg.escapeIdentifier(schema)}.portico_ingest_job`;
  const channel = `portico_ingest_${schema}`.slice(0, 63);
  // No statement waits for the WAL flush (see "Enqueue" above); the producers and the worker share the pool.
  const pool = new pg.Pool({
    connectionString: url,
    max: 5,
    options: '-c synchronous_commit=off',
    statement_timeout: timeoutMs,
    connectionTimeoutMillis: timeoutMs,
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'ingest queue connection error'));

  await migrate(pool, schema, table);

  /** The worker in this process, if one runs: enqueued rows are claimed for it and handed over directly. */
  let local: LocalWorker | undefined;

  const sql = {
    insertClaimed: `INSERT INTO ${table} (id, payload, owner, attempts) VALUES ($1, $2, $3, 1) ON CONFLICT (id) DO NOTHING RETURNING id`,
    insertNotify: `WITH ins AS (INSERT INTO ${table} (id, payload) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id) SELECT pg_notify($3, '') FROM ins`,
  };

  return {
    async enqueue(jobId, payload) {
      const json = JSON.stringify(payload);
      const owner = local?.owner;
      if (owner && local) {
        const r = await pool.query({ name: `ingest-enqueue-claimed.${schema}`, text: sql.insertClaimed, values: [jobId, json, owner] });
        if (r.rowCount === 1) local.accept({ id: jobId, payload, attempts: 1 });
      } else {
        await pool.query({ name: `ingest-enqueue.${schema}`, text: sql.insertNotify, values: [jobId, json, channel] });
      }
    },
    async cancel(jobId) {
      if (local?.forget(jobId) === 'running') return;
      await pool.query(`DELETE FROM ${table} WHERE id = $1`, [jobId]);
    },
    async startWorker(handler, opts) {
      if (local) throw new Error('an ingest worker already runs on this queue');
      const worker = new LocalWorker({ url, table, channel, pool, policy, handler, concurrency: opts.concurrency, log: opts.log });
      await worker.start();
      local = worker;
      return {
        close: async () => {
          await worker.close();
          if (local === worker) local = undefined;
        },
      };
    },
    async counts() {
      const r = await pool.query<{ waiting: string; active: string; delayed: string; failed: string }>(
        `SELECT count(*) FILTER (WHERE failed_at IS NULL AND owner IS NULL AND run_at <= now()) AS waiting,
                count(*) FILTER (WHERE failed_at IS NULL AND owner IS NOT NULL) AS active,
                count(*) FILTER (WHERE failed_at IS NULL AND owner IS NULL AND run_at > now()) AS delayed,
                count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
           FROM ${table}`,
      );
      const row = r.rows[0]!;
      return { waiting: Number(row.waiting), active: Number(row.active), delayed: Number(row.delayed), failed: Number(row.failed), completed: 0 };
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await local?.close();
      local = undefined;
      await pool.end();
    },
  };
}

/** Creates the table on first use, under an advisory lock so that processes starting together do not race. */
async function migrate(pool: pg.Pool, schema: string, table: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`portico:ingest-queue:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${client.escapeIdentifier(schema)}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${table} (
         id text PRIMARY KEY,
         seq bigint GENERATED ALWAYS AS IDENTITY,
         payload json NOT NULL,
         run_at timestamptz NOT NULL DEFAULT now(),
         attempts integer NOT NULL DEFAULT 0,
         owner text,
         failed_at timestamptz,
         last_error text
       )`,
    );
    await client.query(`CREATE INDEX IF NOT EXISTS portico_ingest_job_due ON ${table} (seq) WHERE failed_at IS NULL`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

interface LocalWorkerDeps {
  readonly url: string;
  readonly table: string;
  readonly channel: string;
  readonly pool: pg.Pool;
  readonly policy: PgIngestPolicy;
  readonly handler: IngestHandler;
  readonly concurrency: number;
  readonly log: Logger;
}

/** The consumer in this process: a FIFO backlog in memory, `concurrency` jobs at a time. */
class LocalWorker {
  /** `pid:backend_start` of the LISTEN session; rows claimed by this worker carry it. */
  owner: string | undefined;
  private listener: pg.Client | undefined;
  private readonly backlog: Claimed[] = [];
  private readonly running = new Set<string>();
  private readonly done: string[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private pollAgain = false;
  private closing = false;
  private readonly tasks = new Set<Promise<unknown>>();

  private readonly deps: LocalWorkerDeps;

  constructor(deps: LocalWorkerDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    await this.listen();
    this.poll();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.deps.url });
    client.on('error', (err) => {
      this.deps.log.warn({ err: err.message }, 'ingest queue listener lost; reconnecting');
      if (this.listener === client) {
        this.listener = undefined;
        this.owner = undefined;
      }
      client.end().catch(() => undefined);
      if (!this.closing) setTimeout(() => void this.listen().catch(() => undefined), 1000).unref();
    });
    client.on('notification', () => this.poll());
    await client.connect();
    const r = await client.query<{ owner: string }>(
      `SELECT pid || ':' || extract(epoch FROM backend_start)::text AS owner FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
    );
    await client.query(`LISTEN ${client.escapeIdentifier(this.deps.channel)}`);
    this.listener = client;
    this.owner = r.rows[0]!.owner;
  }

  /** A row enqueued in this process, already claimed for this worker. */
  accept(job: Claimed): void {
    this.backlog.push(job);
    this.pump();
  }

  /** Drops a not yet started job; tells whether it is running (then it is left alone). */
  forget(jobId: string): 'running' | 'gone' {
    if (this.running.has(jobId)) return 'running';
    const i = this.backlog.findIndex((j) => j.id === jobId);
    if (i >= 0) this.backlog.splice(i, 1);
    return 'gone';
  }

  private pump(): void {
    while (!this.closing && this.running.size < this.deps.concurrency && this.backlog.length > 0) {
      const job = this.backlog.shift()!;
      this.running.add(job.id);
      this.track(
        this.run(job).finally(() => {
          this.running.delete(job.id);
          this.pump();
        }),
      );
    }
    // Keep a batch in hand: claim more (orphans, retries, other processes' rows) as the backlog runs dry.
    if (this.backlog.length === 0 && this.pollAgain) this.poll();
  }

  private track(p: Promise<unknown>): void {
    this.tasks.add(p);
    void p.finally(() => this.tasks.delete(p));
  }

  private async run(job: Claimed): Promise<void> {
    const { policy, log } = this.deps;
    let jobLog: Logger | undefined;
    try {
      if (job.attempts > policy.attempts) throw new UnrecoverableError(`gave up after ${job.attempts - 1} attempts (the process ended while it ran)`);
      await this.deps.handler(job.payload, {
        jobId: job.id,
        attempt: job.attempts,
        get log() {
          return (jobLog ??= log.child({ queue: 'ingest', jobId: job.id, attempt: job.attempts }));
        },
      });
      this.done.push(job.id);
      if (this.done.length >= FLUSH_COUNT) this.flush();
      else this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
    } catch (err) {
      const message = (err as Error).message;
      const final = err instanceof UnrecoverableError || job.attempts >= policy.attempts;
      log.warn({ queue: 'ingest', jobId: job.id, attempt: job.attempts, err: message, unrecoverable: err instanceof UnrecoverableError }, 'job failed');
      const delayMs = policy.backoffMs * 2 ** (job.attempts - 1);
      await this.deps.pool
        .query(
          final
            ? `UPDATE ${this.deps.table} SET owner = NULL, failed_at = now(), last_error = $2 WHERE id = $1`
            : `UPDATE ${this.deps.table} SET owner = NULL, run_at = now() + make_interval(secs => $3), last_error = $2 WHERE id = $1`,
          final ? [job.id, message.slice(0, 1000)] : [job.id, message.slice(0, 1000), delayMs / 1000],
        )
        .catch((e: unknown) => log.warn({ jobId: job.id, err: (e as Error).message }, 'could not record a failed ingest job; it runs again'));
      if (!final) this.schedulePoll(delayMs);
    }
  }

  /** Deletes the completed rows (one statement for all pending). */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.done.length === 0) return;
    const ids = this.done.splice(0);
    this.track(
      this.deps.pool
        .query({ name: 'ingest-complete', text: `DELETE FROM ${this.deps.table} WHERE id = ANY($1::text[])`, values: [ids] })
        .catch((err: unknown) =>
          this.deps.log.warn({ err: (err as Error).message, jobs: ids.length }, 'could not delete completed ingest jobs; they run again'),
        ),
    );
  }

  private schedulePoll(ms: number): void {
    if (this.closing) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.poll(), ms);
    this.pollTimer.unref();
  }

  /** Claims due rows nobody (alive) owns, in order; runs again at once while it finds full batches. */
  private poll(): void {
    if (this.closing) return;
    if (this.polling || this.backlog.length > 0) {
      this.pollAgain = true;
      return;
    }
    this.pollAgain = false;
    const owner = this.owner;
    this.polling = (async () => {
      let claimed = 0;
      if (owner) {
        const r = await this.deps.pool.query<Claimed>({
          name: 'ingest-claim',
          text: `UPDATE ${this.deps.table} SET owner = $1, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM ${this.deps.table}
                                WHERE failed_at IS NULL AND run_at <= now() AND id <> ALL($3::text[])
                                  AND (owner IS NULL OR owner NOT IN (SELECT pid || ':' || extract(epoch FROM backend_start)::text FROM pg_stat_activity))
                                ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
              RETURNING id, seq, payload, attempts`,
          values: [owner, CLAIM_BATCH, [...this.running]],
        });
        claimed = r.rows.length;
        // RETURNING keeps no order: FIFO by seq (a bigint, as a string).
        r.rows.sort((a, b) => Number(BigInt(a.seq!) - BigInt(b.seq!)));
        for (const row of r.rows) this.backlog.push(row);
      }
      if (claimed === CLAIM_BATCH) this.pollAgain = true;
    })()
      .catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'ingest queue poll failed'))
      .finally(() => {
        this.polling = undefined;
        this.schedulePoll(POLL_MS);
        this.pump();
      });
    this.track(this.polling);
  }

  /** Stops taking jobs, waits for the running ones, and hands the rest back (unowned) for the next start. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.pollTimer);
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    this.flush();
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    const owner = this.owner;
    if (owner) {
      // Not started here: give back the claim and the attempt it counted.
      await this.deps.pool
        .query(`UPDATE ${this.deps.table} SET owner = NULL, attempts = greatest(attempts - 1, 0) WHERE owner = $1`, [owner])
        .catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'could not release claimed ingest jobs; the next start claims them'));
    }
    this.backlog.length = 0;
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
  }
}
