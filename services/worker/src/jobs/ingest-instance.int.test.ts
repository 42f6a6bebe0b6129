/**
 * The ingest job against a real PostgreSQL and a real folder store: idempotency, re-send replacement,
 * stale copies, recovery after a crash between the move and the commit, and unparseable objects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '@portico/logging';
import { openDb, migrate, findInstance, upsertInstance, type Db, type InstanceRecord } from '@portico/db';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { UnrecoverableError, openJobQueues, type IngestInstancePayload } from '@portico/jobs';
import { createTestDatabase, syntheticInstance, testUid, uniqueId } from '@portico/testing';
import { ingestInstance, instanceKey, derivedUid } from './ingest-instance.ts';
import { reconcileStaging } from '../reconcile.ts';

const log = createLogger({ service: 'worker-test', level: 'silent' });

describe('ingest-instance', () => {
  let db: Db;
  let store: ObjectStore;
  let drop: () => Promise<void>;
  let dbUrl: string;
  let root: string;
  const study = testUid('study', 1);
  const series = testUid('series', 1);

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    dbUrl = t.url;
    db = openDb(t.url);
    await migrate(db);
    root = mkdtempSync(path.join(tmpdir(), 'worker-int-'));
    store = await openObjectStore({ kind: 'fs', root });
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  async function stage(sop: string, opts: Partial<Parameters<typeof syntheticInstance>[0]> = {}, when = new Date()): Promise<IngestInstancePayload> {
    const key = `staging/${sop}-${when.getTime()}.dcm`;
    await store.put(key, syntheticInstance({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: sop, rows: 8, columns: 8, ...opts }));
    return {
      stagingKey: key,
      sopInstanceUid: sop,
      studyInstanceUid: opts.studyInstanceUid ?? study,
      seriesInstanceUid: opts.seriesInstanceUid ?? series,
      source: 'dimse',
      receivedAt: when.toISOString(),
    };
  }

  const count = async (table: string): Promise<number> => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);

  it('indexes an instance, moves it to its final key, and is idempotent on retry', async () => {
    const sop = testUid('sop', 1);
    const payload = await stage(sop);
    expect(await ingestInstance({ db, store, log }, payload)).toBe('inserted');
    expect(await store.stat(payload.stagingKey)).toBeNull();
    expect(await store.stat(instanceKey(study, series, sop))).not.toBeNull();
    const row = await findInstance(db, sop);
    expect(row?.objectKey).toBe(instanceKey(study, series, sop));
    expect(row?.frames).toHaveLength(1);
    // BullMQ re-runs the job after a crash that came after the commit: nothing changes
    expect(await ingestInstance({ db, store, log }, payload)).toBe('replaced');
    expect(await count('instance')).toBe(1);
  });

  it('replaces an instance on re-send and ignores an older copy that arrives late', async () => {
    const sop = testUid('sop', 2);
    const first = await stage(sop, { patientName: 'First^Copy' }, new Date(Date.now() - 60_000));
    const second = await stage(sop, { patientName: 'Second^Copy' }, new Date());
    expect(await ingestInstance({ db, store, log }, second)).toBe('inserted');
    expect(await ingestInstance({ db, store, log }, first)).toBe('stale');
    expect(await store.stat(first.stagingKey)).toBeNull();
    const name = await db.query<{ patient_name: string }>('SELECT patient_name FROM study WHERE study_instance_uid = $1', [study]);
    expect(name.rows[0]!.patient_name).toBe('Second^Copy');
    // The audit trail: one 'stored' event for the indexed copy, none for the stale one; a third copy,
    // received last, is recorded as a replacement.
    const third = await stage(sop, { patientName: 'Third^Copy' }, new Date(Date.now() + 1000));
    expect(await ingestInstance({ db, store, log }, third)).toBe('replaced');
    const events = await db.query<{ detail: { source: string; replaced: boolean } }>(
      "SELECT detail FROM event WHERE kind = 'stored' AND sop_instance_uid = $1 ORDER BY event_pk",
      [sop],
    );
    expect(events.rows.map((r) => [r.detail.source, r.detail.replaced])).toEqual([
      ['dimse', false],
      ['dimse', true],
    ]);
  });

  it('rewrites study and series rows only when a value changed; a re-sent instance may move series', async () => {
    const [st, seA, seB] = [testUid('keep-study', 1), testUid('keep-series', 1), testUid('keep-series', 2)];
    const version = async (table: 'study' | 'series', uid: string): Promise<string | undefined> =>
      (await db.query<{ v: string }>(`SELECT xmin::text AS v FROM ${table} WHERE ${table}_instance_uid = $1`, [uid])).rows[0]?.v;
    const ingest = async (sop: string, opts: Partial<Parameters<typeof syntheticInstance>[0]>, when = new Date()): Promise<string> =>
      ingestInstance({ db, store, log }, await stage(sop, { studyInstanceUid: st, seriesInstanceUid: seA, patientName: 'Keep^Rows', ...opts }, when));
    expect(await ingest(testUid('keep-sop', 1), {})).toBe('inserted');
    const [study0, series0] = [await version('study', st), await version('series', seA)];
    expect(await ingest(testUid('keep-sop', 2), {})).toBe('inserted');
    // same study and series attributes: both rows untouched
    expect([await version('study', st), await version('series', seA)]).toEqual([study0, series0]);
    // a changed study attribute rewrites the study row, not the series row
    expect(await ingest(testUid('keep-sop', 3), { patientName: 'Renamed^Patient' })).toBe('inserted');
    expect(await version('study', st)).not.toBe(study0);
    expect(await version('series', seA)).toBe(series0);
    const name = await db.query<{ patient_name: string }>('SELECT patient_name FROM study WHERE study_instance_uid = $1', [st]);
    expect(name.rows[0]!.patient_name).toBe('Renamed^Patient');
    // a re-send into another series moves the instance; a modality change rewrites that series row
    expect(await ingest(testUid('keep-sop', 1), { seriesInstanceUid: seB, modality: 'MR' }, new Date(Date.now() + 1000))).toBe('replaced');
    expect((await findInstance(db, testUid('keep-sop', 1)))?.seriesInstanceUid).toBe(seB);
    const modality = await db.query<{ modality: string }>('SELECT modality FROM series WHERE series_instance_uid = $1', [seB]);
    expect(modality.rows[0]!.modality).toBe('MR');
  });

  it('indexes the instances of a new study arriving all at once (concurrent transactions)', async () => {
    const [st, se] = [testUid('burst-study', 1), testUid('burst-series', 1)];
    const payloads = await Promise.all(
      Array.from({ length: 16 }, (_, i) => stage(testUid('burst-sop', i), { studyInstanceUid: st, seriesInstanceUid: se, patientName: 'Burst^Arrival' })),
    );
    const outcomes = await Promise.all(payloads.map((p) => ingestInstance({ db, store, log }, p)));
    expect(outcomes).toEqual(payloads.map(() => 'inserted'));
    const rows = await db.query<{ studies: string; series: string; instances: string }>(
      `SELECT (SELECT count(*) FROM study WHERE study_instance_uid = $1) AS studies,
              (SELECT count(*) FROM series WHERE series_instance_uid = $2) AS series,
              (SELECT count(*) FROM instance i JOIN series s ON s.series_pk = i.series_pk WHERE s.series_instance_uid = $2) AS instances`,
      [st, se],
    );
    expect(rows.rows[0]).toEqual({ studies: '1', series: '1', instances: '16' });
  });

  it('an unchanged study row inserted by a transaction that commits mid-statement is found (retry with a new snapshot)', async () => {
    const st = testUid('race-study', 1);
    const record = (n: number): InstanceRecord => ({
      studyInstanceUid: st,
      seriesInstanceUid: testUid('race-series', 1),
      sopInstanceUid: testUid('race-sop', n),
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      attrs: { PatientName: 'Race^Condition', Modality: 'CT' },
      studyJson: {},
      seriesJson: {},
      json: {},
      frames: [],
      bulkData: {},
      pixelDataEncapsulated: false,
      objectKey: `race/${n}.dcm`,
      objectSize: 1,
      source: 'dimse',
      receivedAt: new Date(),
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let inserted!: () => void;
    const firstInserted = new Promise<void>((resolve) => (inserted = resolve));
    // The first transaction inserts the new study and series, then holds its commit.
    const first = upsertInstance(db, record(1), undefined, async () => {
      inserted();
      await gate;
    });
    await firstInserted;
    // The second statement starts now (its snapshot cannot see the first rows) and waits on their lock.
    const second = upsertInstance(db, record(2));
    await new Promise((r) => setTimeout(r, 200));
    release();
    expect((await first).outcome).toBe('inserted');
    expect((await second).outcome).toBe('inserted');
    expect((await findInstance(db, testUid('race-sop', 2)))?.studyInstanceUid).toBe(st);
  });

  it('recovers when a crash came between the move and the commit', async () => {
    const sop = testUid('sop', 3);
    const payload = await stage(sop);
    // the move happened, the transaction did not commit
    await store.move(payload.stagingKey, instanceKey(study, series, sop));
    expect(await findInstance(db, sop)).toBeNull();
    expect(await ingestInstance({ db, store, log }, payload)).toBe('inserted');
    expect((await findInstance(db, sop))?.objectKey).toBe(instanceKey(study, series, sop));
  });

  it('indexes an instance without Study/Series UID under stable derived UIDs', async () => {
    const sop = testUid('sop', 4);
    const payload = await stage(sop, { studyInstanceUid: '', seriesInstanceUid: '', omit: ['0020000D', '0020000E'] });
    expect(await ingestInstance({ db, store, log }, payload)).toBe('inserted');
    const row = await findInstance(db, sop);
    expect(row?.studyInstanceUid).toBe(derivedUid(sop, 'study'));
    expect(row?.seriesInstanceUid).toBe(derivedUid(sop, 'series'));
  });

  it('does not retry an unparseable object and records why', async () => {
    const key = 'staging/not-dicom.dcm';
    await store.put(key, Buffer.from('\x89PNG\r\n\x1a\n not a dicom file at all'));
    await expect(
      ingestInstance({ db, store, log }, { stagingKey: key, sopInstanceUid: '1.2.3.999', source: 'stow-rs', receivedAt: new Date().toISOString() }),
    ).rejects.toBeInstanceOf(UnrecoverableError);
    // moved out of staging/ (the reconciler scans it) and kept for inspection
    expect(await store.stat(key)).toBeNull();
    expect(await store.stat('failed/not-dicom.dcm')).not.toBeNull();
    const ev = await db.query<{ kind: string }>(`SELECT kind FROM event WHERE sop_instance_uid = '1.2.3.999'`);
    expect(ev.rows.map((r) => r.kind)).toEqual(['ingest-failed']);
  });

  it('re-enqueues a staged object whose job was lost, and the job indexes it', async () => {
    const queues = await openJobQueues({ kind: 'postgres', url: dbUrl, schema: uniqueId('rq').replace(/[^a-z0-9_]/g, '_') }, log);
    try {
      const sop = testUid('sop', 5);
      const staged = await stage(sop, {}, new Date(Date.now() - 3_600_000));
      // an object received a moment ago is not touched: its job may simply be queued
      await store.put(
        'staging/fresh.dcm',
        syntheticInstance({ studyInstanceUid: study, seriesInstanceUid: series, sopInstanceUid: testUid('sop', 6), rows: 8, columns: 8 }),
      );
      const old = new Date(Date.now() - 3_600_000);
      utimesSync(path.join(root, staged.stagingKey), old, old);
      expect(await reconcileStaging({ store, queues, log }, 600_000)).toBe(1);
      // a second pass re-adds the same job id: BullMQ ignores it
      expect(await reconcileStaging({ store, queues, log }, 600_000)).toBe(1);
      expect((await queues.counts())['waiting']).toBe(1);
      let done!: () => void;
      const finished = new Promise<void>((r) => (done = r));
      const w = await queues.startIngestWorker(
        async (payload) => {
          await ingestInstance({ db, store, log }, payload);
          done();
        },
        { concurrency: 1, log },
      );
      await finished;
      await w.close();
      expect((await findInstance(db, sop))?.objectKey).toBe(instanceKey(study, series, sop));
      expect(await store.stat('staging/fresh.dcm')).not.toBeNull();
    } finally {
      await queues.close();
    }
  });
});
