/**
 * Orthanc as a DICOM peer in both directions (Debian `orthanc`, driven through its REST API):
 * Orthanc queries Portico (C-FIND), retrieves from it (C-MOVE to Orthanc itself), and asks it for
 * storage commitment (N-ACTION; the report comes back on a new association, as Orthanc closes its own);
 * Portico moves a study to Orthanc. CI installs Orthanc (.ci/run); without it this file fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { migrate, openDb, type Db } from '@portico/db';
import { startWorker } from '@portico/worker';
import { createTestDatabase, freePort, run, startOrthanc, syntheticInstance, testUid, type TestOrthanc } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';
import { waitForRows } from './test-support.ts';

const log = createLogger({ service: 'orthanc-peer-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };
const N = 4;
const study = testUid('orthanc-peer-study', 1);
const series = testUid('orthanc-peer-series', 1);
const sop = (i: number): string => testUid('orthanc-peer-sop', i);

function datasetBytes(b: Buffer): Buffer {
  return b.subarray(144 + b.readUInt32LE(140));
}

describe('Orthanc as a peer', () => {
  let server: DimseServer;
  let db: Db;
  let queues: JobQueues;
  let workers: JobWorkers;
  let orthanc: TestOrthanc | undefined;
  let orthancUrl: string;
  let drop: () => Promise<void>;
  const work = mkdtempSync(path.join(tmpdir(), 'orthanc-peer-'));
  const sent = new Map<string, Buffer>();

  const api = async (method: string, route: string, body?: unknown): Promise<unknown> => {
    const r = await fetch(`${orthancUrl}${route}`, { method, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await r.text();
    if (!r.ok) throw new Error(`Orthanc ${method} ${route}: HTTP ${r.status} ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : undefined;
  };

  beforeAll(async () => {
    const dimsePort = await freePort();
    orthanc = await startOrthanc({ dir: path.join(work, 'orthanc'), modalities: { portico: ['PORTICO', '127.0.0.1', dimsePort] } });
    orthancUrl = orthanc.url;
    const orthancDicom = orthanc.dicomPort;

    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url, { poolSize: 6 });
    await migrate(db);
    const store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    workers = await startWorker({ db, store, queues, log, concurrency: 2 });
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(
      nodesFile,
      `nodes:\n  - { aeTitle: ORTHANC, host: 127.0.0.1, port: ${orthancDicom} }\n  - { aeTitle: DCMSEND, host: 127.0.0.1, port: 104, services: [store] }\n`,
    );
    const cfg = loadConfig({
      env: {},
      overrides: { 'dimse.port': dimsePort, 'dimse.host': '127.0.0.1', 'dimse.nodesFile': nodesFile, 'dimse.commitmentWaitMs': 500 },
    });
    server = await startDimseServer({ config: cfg, log, store, queues, db, allowUnknownAe: false });

    const files = path.join(work, 'send');
    await import('node:fs/promises').then((fs) => fs.mkdir(files));
    for (let i = 0; i < N; i++) {
      const data = syntheticInstance({
        studyInstanceUid: study,
        seriesInstanceUid: series,
        sopInstanceUid: sop(i),
        instanceNumber: i + 1,
        patientName: 'Peer^Test',
        patientId: 'PEER1',
        rows: 32,
        columns: 32,
      });
      writeFileSync(path.join(files, `${i}.dcm`), data);
      sent.set(sop(i), data);
    }
    const r = await run('dcmsend', ['-nh', '+sd', '127.0.0.1', String(dimsePort), files, '-aec', 'PORTICO'], { env });
    expect(r.code, r.stderr).toBe(0);
    await waitForRows(db, 'instance', N);
  });

  afterAll(async () => {
    orthanc?.stop();
    await server?.close(1000);
    await workers?.close();
    await queues?.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('Orthanc finds the study on Portico (C-FIND)', async () => {
    const q = (await api('POST', '/modalities/portico/query', {
      Level: 'Study',
      Query: { PatientName: 'peer*', StudyInstanceUID: '', NumberOfStudyRelatedInstances: '' },
    })) as { ID: string };
    const answers = (await api('GET', `/queries/${q.ID}/answers?expand&simplify`)) as Array<Record<string, string>>;
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ StudyInstanceUID: study, PatientName: 'Peer^Test', NumberOfStudyRelatedInstances: String(N) });
  });

  it('Orthanc retrieves the study from Portico (C-MOVE to itself), bytes as sent', async () => {
    const q = (await api('POST', '/modalities/portico/query', { Level: 'Study', Query: { StudyInstanceUID: study } })) as { ID: string };
    await api('POST', `/queries/${q.ID}/retrieve`, { TargetAet: 'ORTHANC', Synchronous: true });
    const instances = (await api('GET', '/instances')) as string[];
    expect(instances).toHaveLength(N);
    for (const id of instances) {
      const tags = (await api('GET', `/instances/${id}/simplified-tags`)) as { SOPInstanceUID: string };
      const file = Buffer.from(await (await fetch(`${orthancUrl}/instances/${id}/file`)).arrayBuffer());
      expect(datasetBytes(file).equals(datasetBytes(sent.get(tags.SOPInstanceUID)!))).toBe(true);
    }
  });

  it('Portico moves the study to Orthanc when movescu asks', async () => {
    for (const id of (await api('GET', '/instances')) as string[]) await api('DELETE', `/instances/${id}`);
    const r = await run(
      'movescu',
      [
        '-S',
        '-aet',
        'ORTHANC',
        '-aec',
        'PORTICO',
        '-aem',
        'ORTHANC',
        '127.0.0.1',
        String(server.port),
        '-k',
        'QueryRetrieveLevel=STUDY',
        '-k',
        `StudyInstanceUID=${study}`,
      ],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    expect((await api('GET', '/instances')) as string[]).toHaveLength(N);
  });

  it('Orthanc asks Portico for storage commitment and gets the report on a new association', async () => {
    const instances = [...sent.keys()].map((uid) => ['1.2.840.10008.5.1.4.1.1.2', uid]);
    const missing = ['1.2.840.10008.5.1.4.1.1.2', testUid('orthanc-peer-missing', 1)];
    const job = (await api('POST', '/modalities/portico/storage-commitment', { DicomInstances: [...instances, missing], Timeout: 30 })) as { ID: string };
    let report: { Status: string; Success?: unknown[]; Failures?: Array<{ SOPInstanceUID: string; FailureReason: number }> } | undefined;
    for (const until = Date.now() + 30_000; Date.now() < until;) {
      report = (await api('GET', `/storage-commitment/${job.ID}`)) as typeof report;
      if (report?.Status !== 'Pending') break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(report?.Status).toBe('Failure');
    expect(report?.Success).toHaveLength(N);
    expect(report?.Failures).toEqual([expect.objectContaining({ SOPInstanceUID: missing[1], FailureReason: 0x0112 })]);
  });
});
