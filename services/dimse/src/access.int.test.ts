/**
 * Access control with dcmtk peers: calling AE titles from the nodes file, the services each may use,
 * and the per-AE association limit (PS3.8 §9.3.4 reject reasons).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues } from '@portico/jobs';
import { migrate, openDb, type Db } from '@portico/db';
import { createTestDatabase, run } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';

const log = createLogger({ service: 'dimse-access-test', level: 'silent' });
const env = { TCP_NODELAY: '1' };

describe('DIMSE access control', () => {
  let server: DimseServer;
  let db: Db;
  let queues: JobQueues;
  let drop: () => Promise<void>;
  const port = (): string => String(server.port);

  beforeAll(async () => {
    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url);
    await migrate(db);
    const work = mkdtempSync(path.join(tmpdir(), 'dimse-access-'));
    const store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(
      nodesFile,
      [
        'nodes:',
        '  - { aeTitle: MODALITY, host: 127.0.0.1, port: 104, services: [echo, store] }',
        '  - { aeTitle: VIEWER, host: 127.0.0.1, port: 104, services: [echo, find] }',
        '',
      ].join('\n'),
    );
    const config = loadConfig({
      env: {},
      overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'dimse.nodesFile': nodesFile, 'dimse.maxAssociationsPerAe': 1 },
    });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: false });
  });

  afterAll(async () => {
    await server?.close(1000);
    await queues?.close();
    await db?.close();
    await drop?.();
  });

  it('refuses a calling AE title that is not in the nodes file (reason 3)', async () => {
    const r = await run('echoscu', ['-aet', 'STRANGER', '-aec', 'PORTICO', '127.0.0.1', port()], { env });
    expect(r.code).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/Calling AE Title Not Recognized/i);
    const ok = await run('echoscu', ['-aet', 'MODALITY', '-aec', 'PORTICO', '127.0.0.1', port()], { env });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('gives a known AE only the services it is listed for', async () => {
    const findByModality = await run('findscu', ['-S', '-aet', 'MODALITY', '-aec', 'PORTICO', '127.0.0.1', port(), '-k', 'QueryRetrieveLevel=STUDY'], { env });
    expect(findByModality.code).not.toBe(0);
    expect(`${findByModality.stdout}${findByModality.stderr}`).toMatch(/No Acceptable Presentation Contexts|no presentation context/i);
    const findByViewer = await run('findscu', ['-S', '-aet', 'VIEWER', '-aec', 'PORTICO', '127.0.0.1', port(), '-k', 'QueryRetrieveLevel=STUDY'], { env });
    expect(findByViewer.code, findByViewer.stderr).toBe(0);
  });

  it('limits concurrent associations per calling AE (reason 2, local limit exceeded)', async () => {
    // One long-lived association: many echoes on it.
    const held = spawn('echoscu', ['-aet', 'VIEWER', '-aec', 'PORTICO', '--repeat', '200000', '127.0.0.1', port()], {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    try {
      await new Promise((r) => setTimeout(r, 500));
      const second = await run('echoscu', ['-aet', 'VIEWER', '-aec', 'PORTICO', '127.0.0.1', port()], { env });
      expect(second.code).not.toBe(0);
      expect(`${second.stdout}${second.stderr}`).toMatch(/Local Limit Exceeded/i);
      const other = await run('echoscu', ['-aet', 'MODALITY', '-aec', 'PORTICO', '127.0.0.1', port()], { env });
      expect(other.code, other.stderr).toBe(0);
    } finally {
      held.kill('SIGKILL');
    }
  });
});
