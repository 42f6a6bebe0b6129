/**
 * Storage commitment after an export batch, with real peers (PS3.4 Annex J): dcmsend → Portico's DIMSE
 * SCP → the worker indexes and routes → the export role delivers, then asks the destination to commit.
 *
 * - Orthanc answers on a NEW association to Portico's DIMSE SCP (it looks the requester up in its
 *   DicomModalities): committed; after an instance is deleted from Orthanc, failed, sent again, committed.
 * - A second Portico answers on the SAME association: committed.
 * - A third Portico that never indexes what it receives (no worker) reports failure 0x0112 on the same
 *   association: sent again once (export.commitmentMaxResends = 1), then dead.
 * - storescp has no Storage Commitment SCP, and Orthanc leaves the N-ACTION of an AE it does not know
 *   unanswered: refused, deliveries stay delivered.
 * - Orthanc told to report to an AE whose port nobody listens on: no report, timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type PorticoConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { destinationStats, instanceJourney, listExports, migrate, openDb, type Db, type ExportPlan, type ExportRow } from '@portico/db';
import { startWorker, type IndexedInstance } from '@portico/worker';
import { recordReport, startDimseServer, type DimseServer } from '@portico/dimse';
import { createTestDatabase, freePort, holdPort, run, startOrthanc, syntheticInstance, testUid, type TestOrthanc } from '@portico/testing';
import { startExport, type ExportService } from './main.ts';

const log = createLogger({ service: 'commitment-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };
const CT = '1.2.840.10008.5.1.4.1.1.2';

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  for (const until = Date.now() + timeoutMs; ;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Another Portico (own database, queues, objects) as a destination; `indexes: false` runs no worker. */
interface PorticoPeer {
  readonly server: DimseServer;
  close(): Promise<void>;
}

async function startPorticoPeer(aeTitle: string, work: string, indexes: boolean): Promise<PorticoPeer> {
  const t = await createTestDatabase();
  const db = openDb(t.url, { poolSize: 4 });
  await migrate(db);
  const store = await openObjectStore({ kind: 'fs', root: path.join(work, `peer-${aeTitle}`) });
  const queues = await openJobQueues({ kind: 'postgres', url: t.url, schema: 'bullmq' }, log);
  const workers = indexes ? await startWorker({ db, store, queues, log, concurrency: 2 }) : undefined;
  const config = loadConfig({
    env: {},
    overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'dimse.aeTitle': aeTitle, 'dimse.commitmentWaitMs': indexes ? 10_000 : 300 },
  });
  const server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });
  return {
    server,
    async close() {
      await server.close(1000);
      await workers?.close();
      await queues.close();
      await db.close();
      await t.drop();
    },
  };
}

describe('storage commitment after an export batch', () => {
  let db: Db;
  let store: ObjectStore;
  let queues: JobQueues;
  let workers: JobWorkers;
  let server: DimseServer;
  let exporter: ExportService;
  let config: PorticoConfig;
  let drop: () => Promise<void>;
  let orthanc: TestOrthanc | undefined;
  let storescp: ChildProcess | undefined;
  let ghostHold: Awaited<ReturnType<typeof holdPort>> | undefined;
  const peers: PorticoPeer[] = [];
  const work = mkdtempSync(path.join(tmpdir(), 'commitment-'));
  const routeTable = new Map<string, ExportPlan[]>();

  const rows = (studyUid: string): Promise<ExportRow[]> => listExports(db, { studyInstanceUid: studyUid }, { limit: 10_000 });
  const api = async (method: string, route: string, body?: string): Promise<unknown> => {
    const r = await fetch(`${orthanc!.url}${route}`, { method, ...(body !== undefined ? { body } : {}) });
    const text = await r.text();
    if (!r.ok) throw new Error(`Orthanc ${method} ${route}: HTTP ${r.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : undefined;
  };
  /** Waits until every row of the study satisfies `ok`; the rows on failure are in the error. */
  const waitRows = (studyUid: string, n: number, what: string, ok: (r: ExportRow) => boolean, timeoutMs = 60_000): Promise<ExportRow[]> =>
    waitFor(
      what,
      async () => {
        const r = await rows(studyUid);
        return r.length === n && r.every(ok) ? r : undefined;
      },
      timeoutMs,
    ).catch(async (err: unknown) => {
      const r = await rows(studyUid);
      throw new Error(`${(err as Error).message}: ${JSON.stringify(r.map((x) => [x.status, x.commitmentStatus, x.commitmentError, x.lastError]))}`);
    });

  async function sendStudy(name: string, count: number, destination: string): Promise<{ studyUid: string; sops: string[] }> {
    const dir = path.join(work, 'send', name);
    mkdirSync(dir, { recursive: true });
    const studyUid = testUid('commit-study', name);
    const sops: string[] = [];
    for (let i = 0; i < count; i++) {
      const sop = testUid('commit-sop', `${name}.${i}`);
      sops.push(sop);
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({
          studyInstanceUid: studyUid,
          seriesInstanceUid: testUid('commit-series', name),
          sopInstanceUid: sop,
          rows: 16,
          columns: 16,
          instanceNumber: i + 1,
        }),
      );
    }
    routeTable.set(studyUid, [{ destination, rule: 'test', mutations: [] }]);
    const r = await run('dcmsend', ['-nh', '+sd', '-aet', 'MODALITY', '-aec', 'PORTICO', '127.0.0.1', String(server.port), dir], { env, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    return { studyUid, sops };
  }

  beforeAll(async () => {
    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url, { poolSize: 8 });
    await migrate(db);
    store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    const dimsePort = await freePort();
    const ghostPort = await freePort();
    ghostHold = await holdPort(ghostPort);
    // Orthanc sends its N-EVENT-REPORT to the requester's entry in DicomModalities: PORTICO is us; GHOST
    // is an AE whose port is held by nobody answering DICOM, so that report never arrives.
    orthanc = await startOrthanc({
      dir: path.join(work, 'orthanc'),
      modalities: { portico: ['PORTICO', '127.0.0.1', dimsePort], ghost: ['GHOST', '127.0.0.1', ghostPort] },
    });
    const storescpPort = await freePort();
    mkdirSync(path.join(work, 'storescp'));
    storescp = spawn('storescp', ['-aet', 'STORESCP', '-od', path.join(work, 'storescp'), String(storescpPort)], {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    peers.push(await startPorticoPeer('PORTICOB', work, true), await startPorticoPeer('PORTICOC', work, false));
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(
      nodesFile,
      [
        'nodes:',
        `  - { aeTitle: ORTHANC, host: 127.0.0.1, port: ${orthanc.dicomPort}, storageCommitment: true }`,
        `  - { aeTitle: ORTHANCGHOST, host: 127.0.0.1, port: ${orthanc.dicomPort}, callingAeTitle: GHOST, storageCommitment: true }`,
        `  - { aeTitle: ORTHANCNOBODY, host: 127.0.0.1, port: ${orthanc.dicomPort}, callingAeTitle: NOBODY, storageCommitment: true }`,
        `  - { aeTitle: PORTICOB, host: 127.0.0.1, port: ${peers[0]!.server.port}, storageCommitment: true }`,
        `  - { aeTitle: PORTICOC, host: 127.0.0.1, port: ${peers[1]!.server.port}, storageCommitment: true }`,
        `  - { aeTitle: STORESCP, host: 127.0.0.1, port: ${storescpPort}, storageCommitment: true }`,
        `  - { aeTitle: MODALITY, host: 127.0.0.1, port: 104, services: [store] }`,
        '',
      ].join('\n'),
    );
    config = loadConfig({
      env: {},
      overrides: {
        'dimse.port': dimsePort,
        'dimse.host': '127.0.0.1',
        'dimse.nodesFile': nodesFile,
        'dimse.scuTimeoutMs': 10_000,
        'export.backoffMs': 200,
        'export.reconcileIntervalMs': 3_600_000,
        'export.associationIdleMs': 500,
        'export.commitmentAssociationWaitMs': 5000,
        'export.commitmentMaxResends': 1,
        'export.commitmentTimeoutMs': 2000,
      },
    });
    const router = (i: IndexedInstance): ExportPlan[] => routeTable.get(i.studyInstanceUid) ?? [];
    workers = await startWorker({ db, store, queues, log, concurrency: 2, routing: { router, policy: { attempts: 10, backoffMs: 200 } } });
    exporter = await startExport({ config, db, store, queues, log });
    // The dimse role: only listed AEs may associate, as in a cluster (Orthanc reports as ORTHANC).
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: false });
  });

  afterAll(async () => {
    await server?.close(1000);
    await exporter?.close();
    await workers?.close();
    await queues?.close();
    orthanc?.stop();
    storescp?.kill('SIGKILL');
    await ghostHold?.release();
    for (const p of peers) await p.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('Orthanc commits on a new association to our DIMSE SCP: recorded per instance, in the journey and the stats', async () => {
    const study = await sendStudy('orthanc', 4, 'ORTHANC');
    const done = await waitRows(study.studyUid, 4, 'committed by Orthanc', (r) => r.status === 'delivered' && r.commitmentStatus === 'committed');
    // One N-ACTION per batch (the study arrives instance by instance, so it may take a few batches).
    expect(done.every((r) => /^2\.25\.\d+$/.test(r.commitmentTransactionUid ?? '') && r.commitmentAnsweredAt !== null && r.commitmentError === null)).toBe(
      true,
    );
    const journey = await instanceJourney(db, study.sops[0]!);
    expect(journey[0]!.exports[0]).toMatchObject({ destination: 'ORTHANC', commitmentStatus: 'committed' });
    const stats = (await destinationStats(db)).find((s) => s.destination === 'ORTHANC');
    expect(stats?.commitments.committed).toBeGreaterThanOrEqual(4);
  });

  it('Orthanc reports an instance it no longer has as failed: it is sent again and then committed', async () => {
    const study = await sendStudy('orthanc-lost', 3, 'ORTHANC');
    const first = await waitRows(study.studyUid, 3, 'committed by Orthanc', (r) => r.commitmentStatus === 'committed');
    const lost = study.sops[1]!;
    const lookup = async (): Promise<string[]> =>
      ((await api('POST', '/tools/lookup', lost)) as Array<{ ID: string; Type: string }>).filter((x) => x.Type === 'Instance').map((x) => x.ID);
    const [instanceId] = await lookup();
    await api('DELETE', `/instances/${instanceId}`);
    expect(await lookup()).toEqual([]);
    // Ask again for what was delivered (as after a batch): Orthanc now lacks one instance.
    const destination = exporter.destinations.get('ORTHANC');
    if (destination?.kind !== 'dimse') throw new Error('ORTHANC is a DIMSE destination');
    const transactionUid = await exporter.commitment.run(
      destination.node,
      first.map((r) => ({ exportPk: r.exportPk, generation: r.generation, sopClassUid: CT, sopInstanceUid: r.sopInstanceUid })),
    );
    expect(transactionUid).toMatch(/^2\.25\.\d+$/);
    // The failure is recorded on its row and the instance goes out again (a new generation), is committed.
    const after = await waitRows(study.studyUid, 3, 'sent again and committed', (r) => r.status === 'delivered' && r.commitmentStatus === 'committed');
    const resent = after.find((r) => r.sopInstanceUid === lost)!;
    expect(resent.generation).toBe(first.find((r) => r.sopInstanceUid === lost)!.generation + 1);
    expect(resent.commitmentResends).toBe(1);
    expect(resent.commitmentTransactionUid).not.toBe(transactionUid);
    expect(after.filter((r) => r.sopInstanceUid !== lost).every((r) => r.commitmentTransactionUid === transactionUid && r.commitmentResends === 0)).toBe(true);
    expect(await lookup()).toHaveLength(1);
  });

  it('a second Portico commits on the same association', async () => {
    // PORTICOB has no nodes file: it could not open an association back to us, so a report on record
    // can only have come on the requesting association.
    const study = await sendStudy('portico', 3, 'PORTICOB');
    await waitRows(study.studyUid, 3, 'committed by PORTICOB', (r) => r.status === 'delivered' && r.commitmentStatus === 'committed');
  });

  it('a peer that reports failure (0x0112): sent again up to the limit, then dead', async () => {
    const study = await sendStudy('never-indexed', 2, 'PORTICOC');
    const dead = await waitRows(study.studyUid, 2, 'dead after the resend', (r) => r.status === 'dead' && r.commitmentStatus === 'failed');
    for (const r of dead) {
      expect(r.commitmentError).toBe('storage commitment failed: Failure Reason 0x0112');
      expect(r.lastError).toBe('storage commitment failed: Failure Reason 0x0112');
      expect(r.commitmentResends).toBe(1);
      expect(r.generation).toBe(2);
    }
  });

  it('a destination without a Storage Commitment SCP refuses: recorded, deliveries stay delivered', async () => {
    const study = await sendStudy('storescp', 2, 'STORESCP');
    const done = await waitRows(study.studyUid, 2, 'refused by storescp', (r) => r.status === 'delivered' && r.commitmentStatus === 'refused');
    expect(done[0]!.commitmentError).toMatch(/accepted no Storage Commitment Push Model presentation context/);
    // Refused requests do not hold deliveries back: the next study goes out as well.
    const next = await sendStudy('storescp-2', 1, 'STORESCP');
    await waitRows(next.studyUid, 1, 'next study delivered', (r) => r.status === 'delivered' && r.commitmentStatus === 'refused');
  });

  it('Orthanc does not answer an N-ACTION from an AE it could not report to: refused, deliveries stay delivered', async () => {
    // NOBODY is not in Orthanc's DicomModalities: Orthanc 1.10 leaves the N-ACTION unanswered.
    const study = await sendStudy('nobody', 2, 'ORTHANCNOBODY');
    const done = await waitRows(study.studyUid, 2, 'refused by Orthanc', (r) => r.status === 'delivered' && r.commitmentStatus === 'refused');
    expect(done[0]!.commitmentError).toBe(`ORTHANCNOBODY did not answer within ${config.dimse.scuTimeoutMs} ms`);
  });

  it('no report within the timeout: recorded as timeout by the reconciler', async () => {
    const study = await sendStudy('ghost', 2, 'ORTHANCGHOST');
    await waitRows(study.studyUid, 2, 'requested', (r) => r.status === 'delivered' && r.commitmentStatus === 'requested');
    await exporter.commitment.settled();
    await new Promise((r) => setTimeout(r, config.export.commitmentTimeoutMs + 200));
    await exporter.reconcile();
    const done = await rows(study.studyUid);
    expect(done.map((r) => r.commitmentStatus)).toEqual(['timeout', 'timeout']);
    expect(done.every((r) => r.status === 'delivered' && r.commitmentError === `no N-EVENT-REPORT within ${config.export.commitmentTimeoutMs} ms`)).toBe(true);
  });

  it('a report counts only from the AE the request went to, and a late one still replaces a timeout', async () => {
    const [row] = await rows(testUid('commit-study', 'ghost'));
    const report = {
      transactionUid: row!.commitmentTransactionUid!,
      committed: [{ sopClassUid: CT, sopInstanceUid: row!.sopInstanceUid }],
      failed: [],
    };
    const deps = { db, queues, log, maxResends: 1, retry: { attempts: 10, backoffMs: 200 } };
    // Another known AE naming our transaction: answered (0x0000) but not recorded.
    expect(await recordReport(deps, report, 'PORTICOB')).toBe(0x0000);
    expect((await listExports(db, { sopInstanceUid: row!.sopInstanceUid }, { limit: 1 }))[0]!.commitmentStatus).toBe('timeout');
    expect(await recordReport(deps, report, 'ORTHANCGHOST')).toBe(0x0000);
    expect((await listExports(db, { sopInstanceUid: row!.sopInstanceUid }, { limit: 1 }))[0]).toMatchObject({
      commitmentStatus: 'committed',
      commitmentError: null,
      status: 'delivered',
    });
  });
});
