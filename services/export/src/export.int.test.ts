/**
 * Store-and-forward with real parts: dcmsend → Portico's DIMSE SCP → the real worker indexes and routes
 * → export consumers deliver over C-STORE to dcmtk storescp destinations. Checks what arrived (byte for
 * byte, as the sender sent it), the per-delivery rows in PostgreSQL, one association per study, retries
 * and dead letters against a destination that is down, the operator's retry / cancel / replay, and the
 * reconciler rebuilding a queue that lost its jobs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type PorticoConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { cancelExports, listExports, migrate, openDb, replayExports, retryExports, type Db, type ExportPlan, type ExportStatus } from '@portico/db';
import { startWorker, type IndexedInstance } from '@portico/worker';
import { startDimseServer, type DimseServer } from '@portico/dimse';
import {
  corpusDir,
  corpusManifest,
  createTestDatabase,
  freePort,
  holdPort,
  run,
  startOrthanc,
  syntheticInstance,
  testUid,
  type TestOrthanc,
} from '@portico/testing';
import { startExport, type ExportService } from './main.ts';

const log = createLogger({ service: 'export-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };

/** Uncompressed and losslessly compressed images, one per transfer syntax of the corpus's ts/ folder. */
const CORPUS = corpusManifest().filter((r) => r['file']!.startsWith('ts/') && r['SOP instance UID']);

async function transferSyntaxOf(file: string): Promise<string> {
  const r = await run('dcmdump', ['-q', '-M', '-Un', '+P', '0002,0010', file]);
  return /\[(.*?)\]/.exec(r.stdout)?.[1]?.replace(/\0/g, '').trim() ?? '';
}

function datasetBytes(file: string): Buffer {
  const b = readFileSync(file);
  return b.subarray(144 + b.readUInt32LE(140));
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  for (const until = Date.now() + timeoutMs; ;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Peer {
  readonly port: number;
  readonly dir: string;
  proc?: ChildProcess;
  log: string;
}

function startStorescp(peer: Peer, aeTitle: string, extra: string[] = []): void {
  mkdirSync(peer.dir, { recursive: true });
  peer.log = '';
  const proc = spawn('storescp', ['-v', '-aet', aeTitle, '-od', peer.dir, '+B', ...extra, String(peer.port)], { env: { ...process.env, ...env } });
  proc.stdout!.on('data', (c: Buffer) => (peer.log += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (peer.log += c.toString()));
  peer.proc = proc;
}

async function stopStorescp(peer: Peer): Promise<void> {
  const p = peer.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

describe('store-and-forward to DIMSE destinations', () => {
  let db: Db;
  let store: ObjectStore;
  let queues: JobQueues;
  let workers: JobWorkers;
  let server: DimseServer;
  let exporter: ExportService;
  let config: PorticoConfig;
  let drop: () => Promise<void>;
  const work = mkdtempSync(path.join(tmpdir(), 'export-'));
  const peers: Record<string, Peer> = {};
  let downHold: Awaited<ReturnType<typeof holdPort>> | undefined;
  /** DOWN comes up: the port is let go and storescp takes it. */
  const downComesUp = async (): Promise<void> => {
    await downHold?.release();
    downHold = undefined;
    startStorescp(peers['DOWN']!, 'DOWN');
  };
  /** DOWN goes down again, its port held. */
  const downGoesDown = async (): Promise<void> => {
    await stopStorescp(peers['DOWN']!);
    downHold = await holdPort(peers['DOWN']!.port);
  };
  let orthanc: TestOrthanc | undefined;
  let orthancUrl = '';
  /** The test's routes: where each instance goes, decided on its study or SOP Instance UID. */
  const routeTable = new Map<string, ExportPlan[]>();

  const rows = async (
    studyUid: string,
  ): Promise<Array<{ sopInstanceUid: string; destination: string; status: ExportStatus; attempts: number; lastError: string | null }>> =>
    listExports(db, { studyInstanceUid: studyUid }, { limit: 10_000 });

  const waitStatus = (studyUid: string, n: number, status: ExportStatus, timeoutMs?: number): Promise<unknown> =>
    waitFor(
      `${n} ${status} deliveries of ${studyUid}`,
      async () => {
        const r = await rows(studyUid);
        return r.length === n && r.every((x) => x.status === status) ? r : undefined;
      },
      timeoutMs,
    ).catch(async (err: unknown) => {
      const r = await rows(studyUid);
      throw new Error(`${(err as Error).message}: ${JSON.stringify(r.map((x) => [x.destination, x.status, x.attempts, x.lastError]))}`);
    });

  async function send(files: string[], callingAe = 'MODALITY'): Promise<void> {
    const r = await run('dcmsend', ['-nh', '+sd', '+r', '-aet', callingAe, '-aec', 'PORTICO', '127.0.0.1', String(server.port), ...files], {
      env,
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(0);
  }

  function writeStudy(name: string, count: number): { studyUid: string; dir: string; sops: string[] } {
    const dir = path.join(work, 'send', name);
    mkdirSync(dir, { recursive: true });
    const studyUid = testUid('export-study', name);
    const sops: string[] = [];
    for (let i = 0; i < count; i++) {
      const sop = testUid('export-sop', `${name}.${i}`);
      sops.push(sop);
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({
          studyInstanceUid: studyUid,
          seriesInstanceUid: testUid('export-series', name),
          sopInstanceUid: sop,
          rows: 64,
          columns: 64,
          instanceNumber: i + 1,
        }),
      );
    }
    return { studyUid, dir, sops };
  }

  beforeAll(async () => {
    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url, { poolSize: 8 });
    await migrate(db);
    store = await openObjectStore({ kind: 'fs', root: mkdtempSync(path.join(tmpdir(), 'export-objects-')) });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    for (const name of ['PACS', 'DOWN', 'NOJPEG', 'AS_SENDER']) peers[name] = { port: await freePort(), dir: path.join(work, 'received', name), log: '' };
    // -d: the log shows the Calling Application Name of each association.
    startStorescp(peers['AS_SENDER']!, 'AS_SENDER', ['-d']);
    startStorescp(peers['PACS']!, 'PACS', ['+xa']);
    downHold = await holdPort(peers['DOWN']!.port);
    // Accepts uncompressed syntaxes only: compressed instances must go out decompressed.
    startStorescp(peers['NOJPEG']!, 'NOJPEG');
    // Orthanc as a DIMSE destination (CI installs it; without it this file fails).
    orthanc = await startOrthanc({ dir: path.join(work, 'orthanc') });
    orthancUrl = orthanc.url;
    const orthancDicom = orthanc.dicomPort;
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(
      nodesFile,
      [
        'nodes:',
        `  - { aeTitle: ORTHANC, host: 127.0.0.1, port: ${orthancDicom} }`,
        `  - { aeTitle: PACS, host: 127.0.0.1, port: ${peers['PACS']!.port}, batchSize: 50 }`,
        `  - { aeTitle: DOWN, host: 127.0.0.1, port: ${peers['DOWN']!.port} }`,
        `  - { aeTitle: AS_SENDER, host: 127.0.0.1, port: ${peers['AS_SENDER']!.port}, impersonate: true }`,
        `  - { aeTitle: NOJPEG, host: 127.0.0.1, port: ${peers['NOJPEG']!.port}, transferSyntaxes: [1.2.840.10008.1.2.1, 1.2.840.10008.1.2] }`,
        '',
      ].join('\n'),
    );
    config = loadConfig({
      env: {},
      overrides: {
        'dimse.port': 0,
        'dimse.host': '127.0.0.1',
        'dimse.nodesFile': nodesFile,
        'dimse.nodesReloadMs': 500,
        'dimse.scuTimeoutMs': 5000,
        'export.maxAttempts': 6,
        'export.backoffMs': 200,
        'export.leaseMs': 3000,
        'export.reconcileAfterMs': 1000,
        'export.reconcileIntervalMs': 3_600_000,
        'export.associationIdleMs': 1000,
      },
    });
    const router = (i: IndexedInstance): ExportPlan[] => routeTable.get(i.sopInstanceUid) ?? routeTable.get(i.studyInstanceUid) ?? [];
    workers = await startWorker({ db, store, queues, log, concurrency: 4, routing: { router, policy: { attempts: 6, backoffMs: 200 } } });
    exporter = await startExport({ config, db, store, queues, log });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });
  });

  afterAll(async () => {
    await downHold?.release();
    orthanc?.stop();
    await server?.close(1000);
    await exporter?.close();
    await workers?.close();
    await queues?.close();
    for (const p of Object.values(peers)) await stopStorescp(p);
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('delivers a study over one association, byte for byte as received', async () => {
    const study = writeStudy('one', 30);
    routeTable.set(study.studyUid, [{ destination: 'PACS', rule: 'test', mutations: [] }]);
    const before = (peers['PACS']!.log.match(/Association Received/g) ?? []).length;
    await send([study.dir]);
    await waitStatus(study.studyUid, 30, 'delivered');
    const got = readdirSync(peers['PACS']!.dir).filter((f) => study.sops.some((s) => f.endsWith(`.${s}`)));
    expect(got).toHaveLength(30);
    for (const [i, sop] of study.sops.entries()) {
      const file = readdirSync(peers['PACS']!.dir).find((f) => f.endsWith(`.${sop}`))!;
      expect(datasetBytes(path.join(peers['PACS']!.dir, file)).equals(datasetBytes(path.join(study.dir, `${i}.dcm`)))).toBe(true);
    }
    const associations = (peers['PACS']!.log.match(/Association Received/g) ?? []).length - before;
    // The study arrives instance by instance; batches and the idle association carry it on one or a few.
    expect(associations).toBeGreaterThanOrEqual(1);
    expect(associations).toBeLessThanOrEqual(3);
    const r = await rows(study.studyUid);
    expect(r.every((x) => x.attempts === 1 && x.lastError === null)).toBe(true);
  });

  it('sends every corpus transfer syntax as stored, and decompresses for a destination that accepts only uncompressed', async () => {
    const files = CORPUS.map((r) => path.join(corpusDir(), r['file']!));
    for (const r of CORPUS)
      routeTable.set(r['SOP instance UID']!, [
        { destination: 'PACS', rule: 'test', mutations: [] },
        { destination: 'NOJPEG', rule: 'test', mutations: [] },
      ]);
    await send(files);
    // What Portico stored (dcmsend skips a file it cannot send; the receive tests cover that): indexing
    // runs after the acknowledgements, so wait until the count has stopped growing (slow on a loaded machine).
    const indexed = (): Promise<{ rows: Array<{ sop_instance_uid: string }> }> =>
      db.query<{ sop_instance_uid: string }>('SELECT sop_instance_uid FROM instance WHERE sop_instance_uid = ANY($1)', [
        CORPUS.map((r) => r['SOP instance UID']!),
      ]);
    let stored = await indexed();
    for (let steady = 0, t0 = Date.now(); steady < 4 && Date.now() - t0 < 60_000;) {
      await new Promise((r) => setTimeout(r, 500));
      const now = await indexed();
      steady = now.rows.length === stored.rows.length && now.rows.length > 0 ? steady + 1 : 0;
      stored = now;
    }
    const expected = new Set(stored.rows.map((r) => r.sop_instance_uid));
    expect(expected.size).toBeGreaterThan(CORPUS.length * 0.8);
    let last: Awaited<ReturnType<typeof rows>> = [];
    const all = await waitFor('corpus deliveries to finish', async () => {
      const r = (last = (await Promise.all([...expected].map((sop) => listExports(db, { sopInstanceUid: sop }, { limit: 10 })))).flat());
      return r.length >= expected.size * 2 && r.every((x) => x.status === 'delivered' || x.status === 'dead') ? r : undefined;
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${expected.size} instances, rows ${JSON.stringify(last.map((x) => [x.destination, x.status, x.lastError]))}`);
    });
    // Everything reaches the PACS as stored.
    const toPacs = all.filter((x) => x.destination === 'PACS');
    expect(toPacs.filter((x) => x.status !== 'delivered').map((x) => `${x.sopInstanceUid}: ${x.lastError}`)).toEqual([]);
    let converted = 0;
    for (const row of CORPUS.filter((r) => expected.has(r['SOP instance UID']!))) {
      const file = readdirSync(peers['PACS']!.dir).find((f) => f.endsWith(`.${row['SOP instance UID']!}`));
      expect(file, row['file']).toBeDefined();
      // The reference is what Portico stored: dcmsend may re-encode a file while sending it.
      const key = (await db.query<{ object_key: string }>('SELECT object_key FROM instance WHERE sop_instance_uid = $1', [row['SOP instance UID']])).rows[0]!
        .object_key;
      const chunks: Buffer[] = [];
      for await (const c of (await store.get(key)) as AsyncIterable<Buffer>) chunks.push(c);
      const storedBytes = Buffer.concat(chunks);
      const got = path.join(peers['PACS']!.dir, file!);
      if ((await transferSyntaxOf(got)) === row['transfer syntax UID']) {
        expect(datasetBytes(got).equals(storedBytes.subarray(144 + storedBytes.readUInt32LE(140))), row['file']).toBe(true);
      } else {
        // storescp +xa does not take every syntax (JPEG lossless process 14, for one): converted, then.
        expect(await transferSyntaxOf(got), row['file']).toBe('1.2.840.10008.1.2.1');
        converted++;
      }
    }
    expect(converted).toBeLessThan(expected.size / 4);
    // The uncompressed-only destination gets uncompressed copies, or a dead letter saying why not.
    for (const x of all.filter((r) => r.destination === 'NOJPEG')) {
      if (x.status === 'dead') {
        expect(x.lastError, x.sopInstanceUid).toMatch(/copy|accept/);
        continue;
      }
      const file = readdirSync(peers['NOJPEG']!.dir).find((f) => f.endsWith(`.${x.sopInstanceUid}`))!;
      expect(['1.2.840.10008.1.2.1', '1.2.840.10008.1.2']).toContain(await transferSyntaxOf(path.join(peers['NOJPEG']!.dir, file)));
    }
    expect(all.filter((x) => x.destination === 'NOJPEG' && x.status === 'delivered').length).toBeGreaterThan(expected.size / 2);
  });

  it('retries a destination that is down, goes dead after the last attempt, and an operator retry delivers', async () => {
    const study = writeStudy('down', 3);
    routeTable.set(study.studyUid, [{ destination: 'DOWN', rule: 'test', mutations: [] }]);
    await send([study.dir]);
    await waitStatus(study.studyUid, 3, 'dead', 60_000);
    const dead = await rows(study.studyUid);
    expect(dead.every((x) => x.attempts === 6)).toBe(true);
    expect(dead[0]!.lastError).toMatch(/association with DOWN/);
    await downComesUp();
    await new Promise((r) => setTimeout(r, 300));
    const refs = await retryExports(db, { studyInstanceUid: study.studyUid, destination: 'DOWN' });
    expect(refs).toHaveLength(3);
    await queues.enqueueExports(refs, { attempts: 6, backoffMs: 200 });
    await waitStatus(study.studyUid, 3, 'delivered');
    expect(readdirSync(peers['DOWN']!.dir).filter((f) => study.sops.some((s) => f.endsWith(`.${s}`)))).toHaveLength(3);
    await downGoesDown();
  });

  it('delivers once the destination comes back within the retries', async () => {
    const study = writeStudy('later', 2);
    routeTable.set(study.studyUid, [{ destination: 'DOWN', rule: 'test', mutations: [] }]);
    await send([study.dir]);
    await waitFor('a failed attempt', async () => ((await rows(study.studyUid)).some((x) => x.status === 'failed') ? true : undefined));
    await downComesUp();
    await waitStatus(study.studyUid, 2, 'delivered');
    await downGoesDown();
  });

  it('cancel stops deliveries; replay sends a study again', async () => {
    const study = writeStudy('cancel', 2);
    routeTable.set(study.studyUid, [{ destination: 'DOWN', rule: 'test', mutations: [] }]);
    await send([study.dir]);
    await waitFor('routing', async () => ((await rows(study.studyUid)).length === 2 ? true : undefined));
    const cancelled = await cancelExports(db, { studyInstanceUid: study.studyUid });
    await queues.removeExports(cancelled);
    await waitStatus(study.studyUid, 2, 'cancelled');
    const replay = await replayExports(db, { studyInstanceUid: study.studyUid }, 'PACS');
    expect(replay).toHaveLength(2);
    await queues.enqueueExports(replay, { attempts: 6, backoffMs: 200 });
    await waitFor('replay delivered', async () => {
      const r = (await rows(study.studyUid)).filter((x) => x.destination === 'PACS');
      return r.length === 2 && r.every((x) => x.status === 'delivered') ? true : undefined;
    });
    expect((await rows(study.studyUid)).filter((x) => x.destination === 'DOWN').every((x) => x.status === 'cancelled')).toBe(true);
  });

  it("delivers to Orthanc transcoded to JPEG 2000 lossless, with the route's attribute changes", async () => {
    await waitFor('Orthanc', async () =>
      (await fetch(`${orthancUrl}/system`).then(
        (r) => r.ok,
        () => false,
      ))
        ? true
        : undefined,
    );
    const study = writeStudy('orthanc', 3);
    routeTable.set(study.studyUid, [
      {
        destination: 'ORTHANC',
        rule: 'test',
        transferSyntaxUid: '1.2.840.10008.1.2.4.90',
        mutations: [{ op: 'set', path: ['00080080'], vr: 'LO', value: ['Forwarded By Portico'] }],
      },
    ]);
    await send([study.dir]);
    await waitStatus(study.studyUid, 3, 'delivered');
    for (const [i, sop] of study.sops.entries()) {
      const found = (await (await fetch(`${orthancUrl}/tools/lookup`, { method: 'POST', body: sop })).json()) as Array<{ ID: string; Type: string }>;
      const id = found.find((f) => f.Type === 'Instance')!.ID;
      expect(await (await fetch(`${orthancUrl}/instances/${id}/metadata/TransferSyntax`)).text()).toBe('1.2.840.10008.1.2.4.90');
      const tags = (await (await fetch(`${orthancUrl}/instances/${id}/simplified-tags`)).json()) as Record<string, string>;
      expect(tags['InstitutionName']).toBe('Forwarded By Portico');
      // Lossless: GDCM decodes the copy Orthanc stored back to the pixels that were sent (Orthanc 1.10
      // without its GDCM plugin cannot decode JPEG 2000 itself).
      const file = path.join(work, `orthanc-${i}.dcm`);
      writeFileSync(file, Buffer.from(await (await fetch(`${orthancUrl}/instances/${id}/file`)).arrayBuffer()));
      const conv = await run('gdcmconv', ['--raw', file, `${file}.raw`]);
      expect(conv.code, conv.stderr).toBe(0);
      const decoded = readFileSync(`${file}.raw`);
      const sent = readFileSync(path.join(study.dir, `${i}.dcm`));
      expect(decoded.subarray(decoded.length - 64 * 64 * 2).equals(sent.subarray(sent.length - 64 * 64 * 2))).toBe(true);
    }
  });

  it("calls a destination that impersonates with the sender's AE title, not ours", async () => {
    const study = writeStudy('impersonate', 2);
    routeTable.set(study.studyUid, [{ destination: 'AS_SENDER', rule: 'test', mutations: [] }]);
    await send([study.dir], 'CT_SCANNER_7');
    await waitStatus(study.studyUid, 2, 'delivered');
    expect(peers['AS_SENDER']!.log).toMatch(/Calling Application Name: +CT_SCANNER_7/);
    expect(peers['AS_SENDER']!.log).not.toMatch(/Calling Application Name: +PORTICO/);
  });

  it('the reconciler re-enqueues deliveries whose jobs the queue lost', async () => {
    const study = writeStudy('lost', 4);
    routeTable.set(study.studyUid, [{ destination: 'PACS', rule: 'test', mutations: [] }]);
    // Stop the PACS consumer's supply: deliveries queue up while the destination's consumer cannot run…
    await exporter.close();
    await send([study.dir]);
    await waitFor('routing', async () => ((await rows(study.studyUid)).length === 4 ? true : undefined));
    // …then the queue loses every job (a Redis restart without persistence).
    const refs = (await listExports(db, { studyInstanceUid: study.studyUid }, { limit: 100 })).map((x) => ({
      exportPk: x.exportPk,
      generation: 1,
      destination: x.destination,
    }));
    await queues.removeExports(refs);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await rows(study.studyUid)).every((x) => x.status === 'queued')).toBe(true);
    exporter = await startExport({ config, db, store, queues, log });
    // The start runs a reconciler pass; another one now is harmless (job ids are stable).
    await exporter.reconcile();
    await waitStatus(study.studyUid, 4, 'delivered');
  });
});
