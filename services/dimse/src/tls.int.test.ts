/**
 * DIMSE over TLS (PS3.15 Annex B) with dcmtk peers, certificates made by openssl for the test:
 * Portico as TLS server (echoscu/storescu `+tls`, mutual TLS required) and as TLS client (C-MOVE to a
 * `storescp +tls` listed with `tls: true` in the nodes file).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { migrate, openDb, type Db } from '@portico/db';
import { startWorker } from '@portico/worker';
import { createTestDatabase, freePort, run, syntheticInstance, testUid } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';
import { waitForRows } from './test-support.ts';

const log = createLogger({ service: 'dimse-tls-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };

describe('DIMSE over TLS', () => {
  let server: DimseServer;
  let db: Db;
  let queues: JobQueues;
  let workers: JobWorkers;
  let storescp: ChildProcess;
  let drop: () => Promise<void>;
  const work = mkdtempSync(path.join(tmpdir(), 'dimse-tls-'));
  const f = (name: string): string => path.join(work, name);
  const received = f('received');
  const study = testUid('tls-study', 1);
  const instance = f('instance.dcm');

  async function openssl(args: string[]): Promise<void> {
    const r = await run('openssl', args, { cwd: work });
    expect(r.code, r.stderr).toBe(0);
  }

  beforeAll(async () => {
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Portico Test CA']);
    for (const n of ['portico', 'client', 'storescp']) {
      await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`]);
      await openssl(['x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${n}.crt`, '-days', '2']);
    }
    const storescpPort = await freePort();
    await import('node:fs/promises').then((fs) => fs.mkdir(received));
    storescp = spawn('storescp', ['-aet', 'TLSSCP', '-od', received, '+tls', f('storescp.key'), f('storescp.crt'), '+cf', f('ca.crt'), String(storescpPort)], {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    writeFileSync(f('nodes.yml'), `nodes:\n  - { aeTitle: TLSSCP, host: 127.0.0.1, port: ${storescpPort}, tls: true }\n`);

    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url);
    await migrate(db);
    const store = await openObjectStore({ kind: 'fs', root: f('objects') });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    workers = await startWorker({ db, store, queues, log, concurrency: 2 });
    const config = loadConfig({
      env: {},
      overrides: {
        'dimse.port': 0,
        'dimse.host': '127.0.0.1',
        'dimse.tlsPort': 0,
        'dimse.tlsCertFile': f('portico.crt'),
        'dimse.tlsKeyFile': f('portico.key'),
        'dimse.tlsCaFile': f('ca.crt'),
        'dimse.tlsRequireClientCert': true,
        'dimse.nodesFile': f('nodes.yml'),
      },
    });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });
    writeFileSync(
      instance,
      syntheticInstance({ studyInstanceUid: study, seriesInstanceUid: testUid('tls-series', 1), sopInstanceUid: testUid('tls-sop', 1), rows: 16, columns: 16 }),
    );
  });

  afterAll(async () => {
    storescp?.kill();
    await server?.close(1000);
    await workers?.close();
    await queues?.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  const tlsArgs = (): string[] => ['+tls', f('client.key'), f('client.crt'), '+cf', f('ca.crt')];

  it('accepts echo and store over TLS from a peer with a trusted certificate', async () => {
    const echo = await run('echoscu', [...tlsArgs(), '-aec', 'PORTICO', '127.0.0.1', String(server.tlsPort)], { env });
    expect(echo.code, echo.stderr).toBe(0);
    const store = await run('storescu', ['-v', ...tlsArgs(), '-aec', 'PORTICO', '127.0.0.1', String(server.tlsPort), instance], { env });
    expect(store.code, store.stderr).toBe(0);
    expect(`${store.stdout}${store.stderr}`).toMatch(/Received Store Response \(Success\)/);
  });

  it('refuses a TLS peer without a client certificate, and plain TCP on the TLS port', async () => {
    const anonymous = await run('echoscu', ['+tla', '-ic', '-aec', 'PORTICO', '127.0.0.1', String(server.tlsPort)], { env });
    expect(anonymous.code).not.toBe(0);
    const plain = await run('echoscu', ['-aec', 'PORTICO', '-to', '5', '-ta', '5', '127.0.0.1', String(server.tlsPort)], { env, timeoutMs: 30_000 });
    expect(plain.code).not.toBe(0);
  });

  it('moves to a destination listed with tls: true over TLS', async () => {
    await waitForRows(db, 'instance', 1, 30_000);
    const r = await run(
      'movescu',
      ['-v', '-S', '-aec', 'PORTICO', '-aem', 'TLSSCP', '127.0.0.1', String(server.port), '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`],
      {
        env,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/Final Move Response \(Success\)/);
    expect(readdirSync(received)).toHaveLength(1);
  });
});
