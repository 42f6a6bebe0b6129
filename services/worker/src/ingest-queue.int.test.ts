/**
 * The ingest queue on BullMQ's PostgreSQL backend (standalone's queue): every enqueued job reaches the
 * handler, and the wake-up coalescing of shared/jobs is in force (it wraps a private BullMQ method, so a
 * BullMQ upgrade that renames it must fail here rather than silently cost CPU per instance), and so is
 * the muted event stream.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@portico/logging';
import { openJobQueues, type IngestInstancePayload, type JobQueues } from '@portico/jobs';
import { createTestDatabase, uniqueId } from '@portico/testing';
import { openDb, type Db } from '@portico/db';

describe('ingest queue on the PostgreSQL backend', () => {
  let drop: () => Promise<void>;
  let queues: JobQueues;
  let db: Db;
  let schema: string;
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

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    schema = uniqueId('q').replace(/-/g, '_');
    queues = await openJobQueues({ kind: 'postgres', url: t.url, schema }, log);
    db = openDb(t.url);
  });
  afterAll(async () => {
    await queues?.close();
    await db?.close();
    await drop?.();
  });

  it('hands every job to the handler, woken once for a burst', async () => {
    const seen: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const workers = await queues.startIngestWorker(
      async (p) => {
        seen.push(p.stagingKey);
        if (seen.length === 12) done();
      },
      { concurrency: 4, log },
    );
    try {
      const payloads: IngestInstancePayload[] = Array.from({ length: 12 }, (_, i) => ({
        stagingKey: `staging/${uniqueId('job')}-${i}.dcm`,
        sopInstanceUid: `1.2.3.${i}`,
        source: 'dimse',
        receivedAt: new Date().toISOString(),
      }));
      for (const p of payloads) await queues.enqueueIngest(p);
      await all;
      expect(seen.sort()).toEqual(payloads.map((p) => p.stagingKey).sort());
      expect(lines.filter((l) => l.includes('not coalesced'))).toEqual([]);
      // The event stream is off (nothing consumes it): no row per job state change.
      const events = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.event`);
      expect(events.rows[0]!.n).toBe('0');
    } finally {
      await workers.close();
    }
  });
});
