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
 *   instance's ~6 ms between acknowledgements. When a worker runs in this same process, the row is inserted
 *   already claimed by it and handed over in memory: no claim round trip, no wake-up. Otherwise a NOTIFY
 *   wakes the workers of other processes.
 * - **Claiming** marks rows with the claiming worker's session (`pid:backend_start` of its LISTEN
 *   connection). A row whose owner session is gone (a crashed process) is claimable again at once; so is
 *   a row without owner (released at a graceful stop, or enqueued by another process), and a row this
 *   worker owns but no longer holds in memory (a claim whose answer was lost). When the LISTEN connection
 *   is lost and made again, the worker re-owns what it holds under the new session; what another worker
 *   took meanwhile it drops (unless already running: that job then runs twice, which idempotence allows).
 * - **Completion** deletes the row, batched, without waiting for the WAL flush: a completion lost in a
 *   crash only runs an idempotent job again.
 * - **Failure** puts the row back with a due time (exponential backoff) or, after the last attempt or an
 *   UnrecoverableError, marks it failed; failed rows are kept for inspection and replay.
 *
 * Rows hold the payload: keys and UIDs, no patient data.
 */
import { createHash } from 'node:crypto';
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

export interface PgIngestOptions {
  readonly policy: PgIngestPolicy;
  /** Client-side limit for a statement or a connection attempt, ms. */
  readonly timeoutMs: number;
  /** How often an idle worker looks for rows nobody woke it for (retries that came due, orphans). */
  readonly pollMs?: number;
}

interface Claimed {
  readonly id: string;
  readonly seq?: string;
  readonly payload: IngestInstancePayload;
  readonly attempts: number;
}

const POLL_MS = 1000;
/** Rows claimed at once when polling. */
const CLAIM_BATCH = 64;
/** Completions are deleted together once this many are pending, or after FLUSH_MS. */
const FLUSH_COUNT = 32;
const FLUSH_MS = 20;
/** The LISTEN connection is made again after this long, doubling up to RECONNECT_MAX_MS, until it works. */
const RECONNECT_MS = 1000;
const RECONNECT_MAX_MS = 30_000;

/** An owner: `pid:backend_start` of a session (the session's identity; pids are reused). */
const OWNER_OF_SESSION = `pid || ':' || extract(epoch FROM backend_start)::text`;
/**
 * Whether a row's owner session is alive. pg_stat_activity hides backend_start of other roles' sessions
 * from a role without pg_read_all_stats: then a live pid counts as alive.
 */
const OWNER_ALIVE = `EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = split_part(owner, ':', 1)::int
                       AND (a.backend_start IS NULL OR extract(epoch FROM a.backend_start)::text = split_part(owner, ':', 2)))`;

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1000);
}

export async function openIngestQueue(url: string, schema: string, opts: PgIngestOptions, log: Logger): Promise<IngestQueue> {
  const table = `${pg.escapeIdentifier(schema)}.portico_ingest_job`;
  // NOTIFY channel names are identifiers of at most 63 bytes.
  const channel = `portico_ingest_${createHash('sha1').update(schema).digest('hex').slice(0, 20)}`;
  // No statement waits for the WAL flush (see "Enqueue" above); the producers and the worker share the pool.
  const pool = new pg.Pool({
    connectionString: url,
    max: 5,
    options: '-c synchronous_commit=off',
    statement_timeout: opts.timeoutMs,
    query_timeout: opts.timeoutMs + 1000,
    connectionTimeoutMillis: opts.timeoutMs,
    keepAlive: true,
  });
  pool.on('error', (err) => log.warn({ err: err.message }, 'ingest queue connection error'));
  try {
    await migrate(pool, schema, table, log);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }

  /** The worker in this process, if one runs: enqueued rows are claimed for it and handed over directly. */
  let local: LocalWorker | undefined;

  const sql = {
    insertClaimed: `INSERT INTO ${table} (id, payload, owner, attempts) VALUES ($1, $2, $3, 1) ON CONFLICT (id) DO NOTHING RETURNING id`,
    insertNotify: `WITH ins AS (INSERT INTO ${table} (id, payload) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id) SELECT pg_notify($3, '') FROM ins`,
  };

  return {
    async enqueue(jobId, payload) {
      const json = JSON.stringify(payload);
      const worker = local;
      const owner = worker?.acceptingAs();
      if (worker && owner) {
        const r = await pool.query({ name: `ingest-enqueue-claimed.${schema}`, text: sql.insertClaimed, values: [jobId, json, owner] });
        if (r.rowCount === 1) worker.accept({ id: jobId, payload, attempts: 1 });
      } else {
        await pool.query({ name: `ingest-enqueue.${schema}`, text: sql.insertNotify, values: [jobId, json, channel] });
      }
    },
    async cancel(jobId) {
      if (local?.forget(jobId) === 'running') return;
      await pool.query(`DELETE FROM ${table} WHERE id = $1`, [jobId]);
    },
    async startWorker(handler, workerOpts) {
      if (local) throw new Error('an ingest worker already runs on this queue');
      const worker = new LocalWorker({
        url,
        table,
        channel,
        pool,
        policy: opts.policy,
        pollMs: opts.pollMs ?? POLL_MS,
        timeoutMs: opts.timeoutMs,
        handler,
        concurrency: workerOpts.concurrency,
        log: workerOpts.log,
      });
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
async function migrate(pool: pg.Pool, schema: string, table: string, log: Logger): Promise<void> {
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
    await adoptBullmqIngestJobs(client, schema, table, log);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Moves ingest jobs left in BullMQ's tables of this schema (by a Portico from before this queue) into this
 * table, once: waiting, delayed and active ones to run, failed ones kept as failed. Without it they would
 * wait for the staging reconciler (`queue.reconcileAfterMs`).
 */
async function adoptBullmqIngestJobs(client: pg.PoolClient, schema: string, table: string, log: Logger): Promise<void> {
  const bullJobs = `${client.escapeIdentifier(schema)}.job`;
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [bullJobs]);
  if (!exists.rows[0]?.t) return;
  const r = await client.query(
    `WITH moved AS (
       DELETE FROM ${bullJobs} WHERE queue = 'ingest' AND state::text <> 'completed'
       RETURNING id, data, state::text AS state, attempts_made, failed_reason, seq)
     INSERT INTO ${table} (id, payload, attempts, failed_at, last_error)
     SELECT id, data::json, attempts_made, CASE WHEN state = 'failed' THEN now() END, failed_reason FROM moved ORDER BY seq
     ON CONFLICT (id) DO NOTHING`,
  );
  if ((r.rowCount ?? 0) > 0) log.warn({ jobs: r.rowCount, schema }, 'ingest jobs moved from the BullMQ queue of an earlier Portico');
}

interface LocalWorkerDeps {
  readonly url: string;
  readonly table: string;
  readonly channel: string;
  readonly pool: pg.Pool;
  readonly policy: PgIngestPolicy;
  readonly pollMs: number;
  readonly timeoutMs: number;
  readonly handler: IngestHandler;
  readonly concurrency: number;
  readonly log: Logger;
}

/** The consumer in this process: a FIFO backlog in memory, `concurrency` jobs at a time. */
class LocalWorker {
  /** `pid:backend_start` of the LISTEN session; rows claimed by this worker carry it. */
  private owner: string | undefined;
  private listener: pg.Client | undefined;
  private readonly deps: LocalWorkerDeps;
  private readonly backlog: Claimed[] = [];
  private readonly running = new Set<string>();
  /** Completed, not yet deleted. */
  private readonly done: string[] = [];
  /** Rows this worker still owns without holding them in backlog or running: deletes and failure records in flight. */
  private readonly settling = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private pollDueAt = Infinity;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private pollAgain = false;
  private closing = false;
  private readonly tasks = new Set<Promise<unknown>>();

  constructor(deps: LocalWorkerDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    await this.listen();
    this.poll();
  }

  /** The owner to insert rows for this worker under, or undefined when it takes none (closing, no session). */
  acceptingAs(): string | undefined {
    return this.closing ? undefined : this.owner;
  }

  /** Makes the LISTEN connection; its session is this worker's identity. Throws when it cannot. */
  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.deps.url, keepAlive: true, connectionTimeoutMillis: this.deps.timeoutMs });
    client.on('error', (err) => this.lost(client, err));
    client.on('notification', () => this.poll());
    try {
      await client.connect();
      const r = await client.query<{ owner: string }>(`SELECT ${OWNER_OF_SESSION} AS owner FROM pg_stat_activity WHERE pid = pg_backend_pid()`);
      await client.query(`LISTEN ${client.escapeIdentifier(this.deps.channel)}`);
      if (this.closing) throw new Error('closing');
      const owner = r.rows[0]!.owner;
      // A new session after a lost one: what this worker holds moves to it first (a failure here ends
      // this attempt, and the reconnect loop tries again).
      if (this.owner) await this.reown(this.owner, owner);
      this.listener = client;
      this.owner = owner;
    } catch (err) {
      client.removeAllListeners('notification');
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  /** The LISTEN connection failed: a new session (a new owner) as soon as the database lets us. */
  private lost(client: pg.Client, err: Error): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    this.deps.log.warn({ err: err.message }, 'ingest queue listener lost; reconnecting');
    client.end().catch(() => undefined);
    const retry = (delayMs: number): void => {
      if (this.closing) return;
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        this.listen().then(
          () => this.poll(),
          (e: unknown) => {
            if (!this.closing) this.deps.log.warn({ err: errorText(e), retryMs: delayMs }, 'ingest queue listener: cannot reconnect yet');
            retry(Math.min(delayMs * 2, RECONNECT_MAX_MS));
          },
        );
      }, delayMs);
      this.reconnectTimer.unref();
    };
    retry(RECONNECT_MS);
  }

  /** After a new session: takes back, under it, what this worker holds; drops what another worker took. */
  private async reown(previous: string, next: string): Promise<void> {
    const held = this.heldIds();
    if (held.length === 0) return;
    const r = await this.deps.pool.query<{ id: string }>(`UPDATE ${this.deps.table} SET owner = $1 WHERE owner = $2 AND id = ANY($3::text[]) RETURNING id`, [
      next,
      previous,
      held,
    ]);
    const kept = new Set(r.rows.map((row) => row.id));
    const before = this.backlog.length;
    for (let i = this.backlog.length - 1; i >= 0; i--) if (!kept.has(this.backlog[i]!.id)) this.backlog.splice(i, 1);
    if (this.backlog.length < before)
      this.deps.log.warn({ dropped: before - this.backlog.length }, 'ingest jobs taken over by another worker while reconnecting');
  }

  private heldIds(): string[] {
    return [...this.running, ...this.backlog.map((j) => j.id), ...this.done, ...this.settling];
  }

  /** A row enqueued in this process, already claimed for this worker. */
  accept(job: Claimed): void {
    // Closing: the row stays owned by this session and is taken over once it ends (or released at close).
    if (this.closing) return;
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

  /** Keeps a promise until it settles, for close(); never lets it reject unhandled. */
  private track(p: Promise<unknown>): void {
    const settled = p.then(
      () => undefined,
      (err: unknown) => this.deps.log.error({ err: errorText(err) }, 'ingest queue task failed'),
    );
    this.tasks.add(settled);
    void settled.finally(() => this.tasks.delete(settled));
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
      const final = err instanceof UnrecoverableError || job.attempts >= policy.attempts;
      log.warn({ queue: 'ingest', jobId: job.id, attempt: job.attempts, err: errorText(err), unrecoverable: err instanceof UnrecoverableError }, 'job failed');
      this.settling.add(job.id);
      await this.recordFailure(job, errorText(err), final);
    }
  }

  /**
   * Puts a failed job's row back (due after the backoff) or marks it failed. Should that fail, the job is
   * still this worker's: retried in memory after the backoff, or its failure recorded again later.
   */
  private async recordFailure(job: Claimed, error: string, final: boolean): Promise<void> {
    const delayMs = this.deps.policy.backoffMs * 2 ** (job.attempts - 1);
    try {
      await this.deps.pool.query(
        final
          ? `UPDATE ${this.deps.table} SET owner = NULL, failed_at = now(), last_error = $2 WHERE id = $1`
          : `UPDATE ${this.deps.table} SET owner = NULL, run_at = now() + make_interval(secs => $3), last_error = $2 WHERE id = $1`,
        final ? [job.id, error] : [job.id, error, delayMs / 1000],
      );
      this.settling.delete(job.id);
      if (!final) this.schedulePoll(delayMs);
    } catch (err) {
      this.deps.log.warn({ jobId: job.id, err: errorText(err) }, 'could not record a failed ingest job; trying again later');
      if (this.closing) {
        this.settling.delete(job.id);
        return;
      }
      const later = setTimeout(
        () => {
          this.settling.delete(job.id);
          if (final) {
            this.settling.add(job.id);
            this.track(this.recordFailure(job, error, final));
          } else this.accept({ ...job, attempts: job.attempts + 1 });
        },
        final ? this.deps.pollMs : delayMs,
      );
      later.unref();
    }
  }

  /** Deletes the completed rows (one statement for all pending). */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.done.length === 0) return;
    const ids = this.done.splice(0);
    for (const id of ids) this.settling.add(id);
    this.track(
      this.deps.pool
        .query({ name: 'ingest-complete', text: `DELETE FROM ${this.deps.table} WHERE id = ANY($1::text[])`, values: [ids] })
        .catch((err: unknown) => this.deps.log.warn({ err: errorText(err), jobs: ids.length }, 'could not delete completed ingest jobs; they run again'))
        .finally(() => {
          for (const id of ids) this.settling.delete(id);
        }),
    );
  }

  /** Polls after `ms`, unless a poll is due sooner anyway. */
  private schedulePoll(ms: number): void {
    if (this.closing) return;
    const at = Date.now() + ms;
    if (this.pollTimer && this.pollDueAt <= at) return;
    clearTimeout(this.pollTimer);
    this.pollDueAt = at;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.pollDueAt = Infinity;
      this.poll(true);
    }, ms);
    this.pollTimer.unref();
  }

  /**
   * Claims due rows nobody (alive) owns, in order; runs again at once while it finds full batches. Woken
   * polls wait for the backlog to run dry; the timer's poll also runs while the backlog has room, so
   * retries and other processes' rows are not starved by a steady stream of local jobs.
   */
  private poll(timer = false): void {
    if (this.closing) return;
    if (this.polling || (timer ? this.backlog.length >= this.deps.concurrency : this.backlog.length > 0)) {
      this.pollAgain = true;
      if (timer) this.schedulePoll(this.deps.pollMs);
      return;
    }
    this.pollAgain = false;
    const owner = this.owner;
    this.polling = (async () => {
      if (!owner) return;
      const r = await this.deps.pool.query<Claimed>({
        name: 'ingest-claim',
        text: `UPDATE ${this.deps.table} SET owner = $1, attempts = attempts + 1
                WHERE id IN (SELECT id FROM ${this.deps.table}
                              WHERE failed_at IS NULL AND run_at <= now() AND id <> ALL($3::text[])
                                AND (owner IS NULL OR owner = $1 OR NOT ${OWNER_ALIVE})
                              ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING id, seq, payload, attempts`,
        values: [owner, CLAIM_BATCH, this.heldIds()],
      });
      if (this.closing || this.owner !== owner) return; // released at close / re-owned after a reconnect
      // RETURNING keeps no order: FIFO by seq (a bigint, as a string).
      r.rows.sort((a, b) => Number(BigInt(a.seq!) - BigInt(b.seq!)));
      for (const row of r.rows) this.backlog.push(row);
      if (r.rows.length === CLAIM_BATCH) this.pollAgain = true;
    })()
      .catch((err: unknown) => this.deps.log.warn({ err: errorText(err) }, 'ingest queue poll failed'))
      .finally(() => {
        this.polling = undefined;
        this.schedulePoll(this.deps.pollMs);
        this.pump();
      });
    this.track(this.polling);
  }

  /** Stops taking jobs, waits for the running ones, and hands the rest back (unowned) for the next start. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    this.flush();
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    const owner = this.owner;
    if (owner) {
      // Not started here: give back the claim and the attempt it counted.
      await this.deps.pool
        .query(`UPDATE ${this.deps.table} SET owner = NULL, attempts = greatest(attempts - 1, 0) WHERE owner = $1`, [owner])
        .catch((err: unknown) =>
          this.deps.log.warn({ err: errorText(err) }, 'could not release claimed ingest jobs; they are taken over once this process ends'),
        );
    }
    this.backlog.length = 0;
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
  }
}
