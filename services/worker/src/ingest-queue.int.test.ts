/**
 * The ingest queue of the PostgreSQL backend (standalone's queue, shared/jobs/src/pg-ingest.ts), against a
 * real PostgreSQL: jobs enqueued in this process are handed over in order and their rows deleted once done;
 * jobs of another process arrive by NOTIFY; rows of a dead process are taken over; failures are retried
 * with backoff or kept as failed; a graceful stop gives back what it had claimed but not started.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@portico/logging';
import { openJobQueues, UnrecoverableError, type IngestHandler, type IngestInstancePayload, type JobQueues } from '@portico/jobs';
import { createTestDatabase, uniqueId } from '@portico/testing';
import { openDb, type Db } from '@portico/db';

describe('ingest queue on the PostgreSQL backend', () => {
  let drop: () => Promise<void>;
  let url: string;
  let db: Db;
  const lines: string[] = [];
  const log = createLogger({
    service: 'ingest-queue-test',
    level: 'warn',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  });
  const open: JobQueues[] = [];
  /** A queue set on a schema of its own (or a given one, to share it between two "processes"). */
  const queuesOn = async (schema: string, ingestPollMs?: number, as = url): Promise<JobQueues> => {
    const q = await openJobQueues({ kind: 'postgres', url: as, schema, ...(ingestPollMs ? { ingestPollMs } : {}) }, log);
    open.push(q);
    return q;
  };
  const newSchema = (): string => uniqueId('q').replace(/[^a-z0-9_]/g, '_');
  const payload = (i: number): IngestInstancePayload => ({
    stagingKey: `staging/${uniqueId('job')}-${i}.dcm`,
    sopInstanceUid: `1.2.3.${i}`,
    source: 'dimse',
    receivedAt: new Date().toISOString(),
  });
  /** A handler that records staging keys and resolves `all` once n were seen. */
  const collector = (n: number): { seen: string[]; all: Promise<void>; handler: IngestHandler } => {
    const seen: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    return {
      seen,
      all,
      handler: async (p) => {
        seen.push(p.stagingKey);
        if (seen.length === n) done();
      },
    };
  };
  const rows = async (schema: string): Promise<Array<{ id: string; owner: string | null; attempts: number; failed: boolean }>> =>
    (
      await db.query<{ id: string; owner: string | null; attempts: number; failed: boolean }>(
        `SELECT id, owner, attempts, failed_at IS NOT NULL AS failed FROM ${schema}.portico_ingest_job ORDER BY seq`,
      )
    ).rows;
  const until = async (what: string, ok: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!(await ok())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const within = async <T>(ms: number, p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
    } finally {
      clearTimeout(timer);
    }
  };

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    url = t.url;
    db = openDb(t.url);
  });
  afterAll(async () => {
    for (const q of open) await q.close().catch(() => undefined);
    await db?.close();
    await drop?.();
  });

  it('hands jobs enqueued in this process over in order, once each, and deletes them when done', async () => {
    const schema = newSchema();
    const queues = await queuesOn(schema);
    const c = collector(12);
    const workers = await queues.startIngestWorker(c.handler, { concurrency: 1, log });
    try {
      const payloads = Array.from({ length: 12 }, (_, i) => payload(i));
      for (const p of payloads) await queues.enqueueIngest(p);
      // the same job again (a reconciler pass over a queued object) is not a second job
      await queues.enqueueIngest(payloads[11]!);
      await c.all;
      expect(c.seen).toEqual(payloads.map((p) => p.stagingKey));
      await until('completed rows deleted', async () => (await rows(schema)).length === 0);
      expect(await queues.counts()).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0 });
      // BullMQ's tables (export queues) exist and their event stream is off: nothing consumes it
      const events = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.event`);
      expect(events.rows[0]!.n).toBe('0');
    } finally {
      await workers.close();
    }
    expect(c.seen).toHaveLength(12);
  });

  it('runs jobs another process enqueued (woken by NOTIFY, not the poll) and takes over a dead process’s rows', async () => {
    const schema = newSchema();
    // Polls a minute apart: only a NOTIFY can bring the jobs in within the 10 s allowed below.
    const producer = await queuesOn(schema, 60_000);
    const consumer = await queuesOn(schema, 60_000);
    const c = collector(3);
    const workers = await consumer.startIngestWorker(c.handler, { concurrency: 2, log });
    try {
      // a row claimed by a session that no longer exists: the process died while it held it
      const orphan = payload(0);
      await producer.enqueueIngest(payload(1));
      await db.query(`INSERT INTO ${schema}.portico_ingest_job (id, payload, owner, attempts) VALUES ($1, $2, '999999:0', 1)`, [
        'ingest-instance.orphan',
        JSON.stringify(orphan),
      ]);
      await producer.enqueueIngest(payload(2));
      await within(10_000, c.all, 'jobs of another process not woken by NOTIFY');
      expect(c.seen).toContain(orphan.stagingKey);
      await until('rows deleted', async () => (await rows(schema)).length === 0);
    } finally {
      await workers.close();
    }
  });

  it('leaves a live process’s claimed jobs alone, and takes them over once its session is gone', async () => {
    const schema = newSchema();
    const a = await queuesOn(schema);
    // B polls often, so it finds A's rows orphaned well before A's listener reconnects (after 1 s)
    const b = await queuesOn(schema, 100);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const ranInA: string[] = [];
    const workersA = await a.startIngestWorker(
      async (p) => {
        ranInA.push(p.stagingKey);
        await gate;
      },
      { concurrency: 1, log },
    );
    const c = collector(3);
    let workersB: { close(): Promise<void> } | undefined;
    try {
      const payloads = [payload(1), payload(2), payload(3)];
      for (const p of payloads) await a.enqueueIngest(p);
      workersB = await b.startIngestWorker(c.handler, { concurrency: 3, log });
      // B polls at its start and then every second: A's rows stay A's while A's session lives
      await new Promise((r) => setTimeout(r, 1500));
      expect(c.seen).toEqual([]);
      const owners = new Set((await rows(schema)).map((r) => r.owner));
      expect(owners.size).toBe(1);
      // A's process "dies": its session ends (the LISTEN connection whose identity its rows carry)
      const [pid] = [...owners][0]!.split(':');
      await db.query('SELECT pg_terminate_backend($1)', [Number(pid)]);
      await c.all;
      expect(c.seen.sort()).toEqual(payloads.map((p) => p.stagingKey).sort());
      // A lives on: its listener reconnects, finds B owns what A held, and drops the two jobs it had not
      // started (the one it was running runs twice: idempotence covers that)
      await until('A reconnected', async () => lines.some((l) => l.includes('taken over by another worker while reconnecting')));
      release();
      await workersA.close();
      expect(ranInA).toEqual([payloads[0]!.stagingKey]);
    } finally {
      release();
      await workersB?.close();
      await workersA.close();
    }
  });

  it('works for a role that cannot see other sessions’ details, and outlives a lost listener while logins are refused', async () => {
    const role = uniqueId('qrole').replace(/[^a-z0-9_]/g, '_');
    const dbName = new URL(url).pathname.slice(1);
    await db.query(`CREATE ROLE ${role} LOGIN`);
    await db.query(`GRANT CREATE ON DATABASE ${dbName} TO ${role}`);
    const asRole = new URL(url);
    asRole.username = role;
    asRole.password = '';
    const schema = newSchema();
    const queues = await openJobQueues({ kind: 'postgres', url: asRole.toString(), schema, ingestPollMs: 100 }, log);
    const producer = await queuesOn(schema);
    const c = collector(2);
    const workers = await queues.startIngestWorker(c.handler, { concurrency: 2, log });
    try {
      // pg_stat_activity hides backend_start of other roles' sessions from this role: a dead owner must
      // still be recognised as dead
      const orphan = payload(1);
      await db.query(`INSERT INTO ${schema}.portico_ingest_job (id, payload, owner, attempts) VALUES ($1, $2, '999999:0', 1)`, [
        'ingest-instance.orphan',
        JSON.stringify(orphan),
      ]);
      await until('the orphan taken over', async () => c.seen.includes(orphan.stagingKey));
      // the listener's session ends while the database refuses this role's logins for a while
      await db.query(`ALTER ROLE ${role} NOLOGIN`);
      await db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'LISTEN%'`, [role]);
      await new Promise((r) => setTimeout(r, 2500));
      await db.query(`ALTER ROLE ${role} LOGIN`);
      const later = payload(2);
      await producer.enqueueIngest(later);
      await within(20_000, c.all, 'the worker did not come back after its listener was lost');
      expect(c.seen).toContain(later.stagingKey);
      expect(lines.some((l) => l.includes('cannot reconnect yet'))).toBe(true);
    } finally {
      await workers.close();
      await queues.close();
      await db.query(`DROP OWNED BY ${role}`);
      await db.query(`DROP ROLE ${role}`);
    }
  });

  it('adopts the ingest jobs an earlier Portico left in BullMQ’s tables', async () => {
    const schema = newSchema();
    await (await queuesOn(schema)).close(); // BullMQ's tables exist from here on
    const old = payload(1);
    const failedBefore = payload(2);
    await db.query(
      `INSERT INTO ${schema}.job (queue, id, seq, name, state, data, attempts_made, failed_reason, added_at_ms)
       VALUES ('ingest', $1, 1, 'ingest-instance', 'waiting', $2, 0, NULL, 0), ('ingest', $3, 2, 'ingest-instance', 'failed', $4, 12, 'gave up', 0),
              ('export.PACS', 'export-1-1', 3, 'export-instance', 'waiting', '{}', 0, NULL, 0)`,
      ['ingest-instance.old', JSON.stringify(old), 'ingest-instance.failed', JSON.stringify(failedBefore)],
    );
    const queues = await queuesOn(schema);
    const c = collector(1);
    const workers = await queues.startIngestWorker(c.handler, { concurrency: 1, log });
    try {
      await within(10_000, c.all, 'the adopted job did not run');
      expect(c.seen).toEqual([old.stagingKey]);
      await until('the adopted job done', async () => (await rows(schema)).length === 1);
      expect(await rows(schema)).toEqual([expect.objectContaining({ id: 'ingest-instance.failed', failed: true, attempts: 12 })]);
      const left = await db.query<{ queue: string }>(`SELECT queue FROM ${schema}.job ORDER BY seq`);
      expect(left.rows.map((r) => r.queue)).toEqual(['export.PACS']);
      expect(lines.some((l) => l.includes('moved from the BullMQ queue'))).toBe(true);
    } finally {
      await workers.close();
    }
  });

  it('retries a failing job with backoff, and keeps a job that cannot succeed as failed', async () => {
    const schema = newSchema();
    const queues = await queuesOn(schema);
    const attempts: Record<string, number[]> = {};
    const flaky = payload(1);
    const broken = payload(2);
    const odd = payload(3);
    const workers = await queues.startIngestWorker(
      async (p, ctx) => {
        (attempts[p.stagingKey] ??= []).push(ctx.attempt);
        if (p.stagingKey === broken.stagingKey) throw new UnrecoverableError('not DICOM');
        // a library that throws something other than an Error must not bring the process down
        if (p.stagingKey === odd.stagingKey && ctx.attempt === 1) throw 'odd failure';
        if (ctx.attempt === 1) throw new Error('database down');
      },
      { concurrency: 2, log },
    );
    try {
      await queues.enqueueIngest(flaky);
      await queues.enqueueIngest(broken);
      await queues.enqueueIngest(odd);
      await until('the flaky jobs done', async () => (await rows(schema)).every((r) => r.failed));
      expect(attempts[flaky.stagingKey]).toEqual([1, 2]);
      expect(attempts[odd.stagingKey]).toEqual([1, 2]);
      expect(attempts[broken.stagingKey]).toEqual([1]);
      expect(await rows(schema)).toEqual([expect.objectContaining({ failed: true, owner: null })]);
      expect(await queues.counts()).toMatchObject({ waiting: 0, active: 0, failed: 1 });
      expect(lines.some((l) => l.includes('database down'))).toBe(true);
      expect(lines.some((l) => l.includes('odd failure'))).toBe(true);
    } finally {
      await workers.close();
    }
  });

  it('gives back at a graceful stop the jobs it had claimed but not started; the next worker runs them', async () => {
    const schema = newSchema();
    const queues = await queuesOn(schema);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const running = new Promise<void>((resolve) => (entered = resolve));
    const first: string[] = [];
    const workers = await queues.startIngestWorker(
      async (p) => {
        first.push(p.stagingKey);
        entered();
        await gate;
      },
      { concurrency: 1, log },
    );
    const payloads = [payload(1), payload(2), payload(3)];
    for (const p of payloads) await queues.enqueueIngest(p);
    await running;
    const closing = workers.close();
    release();
    await closing;
    expect(first).toEqual([payloads[0]!.stagingKey]);
    expect((await rows(schema)).map((r) => ({ owner: r.owner, attempts: r.attempts }))).toEqual([
      { owner: null, attempts: 0 },
      { owner: null, attempts: 0 },
    ]);
    expect(await queues.counts()).toMatchObject({ waiting: 2, active: 0 });
    const c = collector(2);
    const again = await queues.startIngestWorker(c.handler, { concurrency: 1, log });
    try {
      await c.all;
      expect(c.seen).toEqual([payloads[1]!.stagingKey, payloads[2]!.stagingKey]);
    } finally {
      await again.close();
    }
  });
});
