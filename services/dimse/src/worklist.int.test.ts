/**
 * Modality Worklist through Portico with dcmtk: `wlmscpfs` is the upstream worklist (items written with
 * dump2dcm), `findscu -W` the modality. While the upstream runs, answers come from it; once it is
 * stopped, from the cache — including for a query no modality made before (the periodic refresh).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues } from '@portico/jobs';
import { migrate, openDb, type Db } from '@portico/db';
import { createTestDatabase, freePort, run } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';
import { waitForRows } from './test-support.ts';

const log = createLogger({ service: 'worklist-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };

const ITEMS = [
  { acc: 'ACC0001', name: 'Worklist^Anna', pid: 'WL1', modality: 'CT', station: 'SCANNER1' },
  { acc: 'ACC0002', name: 'Worklist^Bernd', pid: 'WL2', modality: 'MR', station: 'SCANNER2' },
  { acc: 'ACC0003', name: 'Worklist^Chloe', pid: 'WL3', modality: 'MR', station: 'SCANNER3' },
];

function dump(item: (typeof ITEMS)[number], i: number): string {
  return [
    '(0008,0005) CS [ISO_IR 100]',
    `(0008,0050) SH [${item.acc}]`,
    `(0010,0010) PN [${item.name}]`,
    `(0010,0020) LO [${item.pid}]`,
    `(0020,000d) UI [1.2.826.0.1.3680043.10.1482.56.${i}]`,
    `(0032,1060) LO [Requested procedure ${i}]`,
    // wlmscpfs skips items that lack any of the attributes it treats as required.
    '(0040,0100) SQ (Sequence with undefined length #=1)',
    '  (fffe,e000) na (Item with undefined length #=6)',
    `    (0008,0060) CS [${item.modality}]`,
    `    (0040,0001) AE [${item.station}]`,
    '    (0040,0002) DA [20261202]',
    `    (0040,0003) TM [09${String(i).padStart(2, '0')}00]`,
    `    (0040,0007) LO [Step ${i}]`,
    `    (0040,0009) SH [SPS${i}]`,
    '  (fffe,e00d) na (ItemDelimitationItem)',
    '(fffe,e0dd) na (SequenceDelimitationItem)',
    `(0040,1001) SH [RP${i}]`,
    '',
  ].join('\n');
}

describe('Modality Worklist SCP with an upstream and a cache', () => {
  let server: DimseServer;
  let db: Db;
  let queues: JobQueues;
  let upstream: ChildProcess;
  let drop: () => Promise<void>;
  const work = mkdtempSync(path.join(tmpdir(), 'worklist-'));

  async function worklist(keys: string[]): Promise<{ names: string[]; output: string }> {
    const args = ['-v', '-W', '-aec', 'PORTICO', '127.0.0.1', String(server.port), '-k', 'PatientName', '-k', 'AccessionNumber'];
    for (const k of keys) args.push('-k', k);
    const r = await run('findscu', args, { env });
    expect(r.code, r.stderr).toBe(0);
    const out = `${r.stdout}${r.stderr}`;
    const names = [...out.matchAll(/\(0010,0010\) PN \[(.*?)\s*\]/g)].map((m) => m[1]!).filter((n) => !n.includes('*'));
    return { names, output: out };
  }

  beforeAll(async () => {
    const wlDir = path.join(work, 'wl');
    mkdirSync(path.join(wlDir, 'WLMSCP'), { recursive: true });
    writeFileSync(path.join(wlDir, 'WLMSCP', 'lockfile'), '');
    for (const [i, item] of ITEMS.entries()) {
      const dumpFile = path.join(work, `item${i}.dump`);
      writeFileSync(dumpFile, dump(item, i), 'latin1');
      const r = await run('dump2dcm', [dumpFile, path.join(wlDir, 'WLMSCP', `item${i}.wl`)], { env });
      expect(r.code, r.stderr).toBe(0);
    }
    const upstreamPort = await freePort();
    upstream = spawn('wlmscpfs', ['-dfp', wlDir, String(upstreamPort)], { env: { ...process.env, ...env }, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));

    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url);
    await migrate(db);
    const store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    const config = loadConfig({
      env: {},
      overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'worklist.upstream': `WLMSCP@127.0.0.1:${upstreamPort}`, 'dimse.scuTimeoutMs': 3000 },
    });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });
    // The refresh at start fills the cache.
    await waitForRows(db, 'worklist_item', ITEMS.length, 20_000);
  });

  afterAll(async () => {
    upstream?.kill();
    await server?.close(1000);
    await queues?.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('answers from the upstream while it runs, matching inside the Scheduled Procedure Step Sequence', async () => {
    const mr = await worklist(['ScheduledProcedureStepSequence[0].Modality=MR', 'ScheduledProcedureStepSequence[0].ScheduledStationAETitle']);
    expect(mr.names.sort()).toEqual(['Worklist^Bernd', 'Worklist^Chloe']);
    expect(mr.output).toMatch(/SCANNER2/);
  });

  it('keeps answering from the cache once the upstream is down, for old and new queries', async () => {
    upstream.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const again = await worklist(['ScheduledProcedureStepSequence[0].Modality=MR']);
    expect(again.names.sort()).toEqual(['Worklist^Bernd', 'Worklist^Chloe']);
    const never = await worklist(['ScheduledProcedureStepSequence[0].ScheduledStationAETitle=SCANNER1']);
    expect(never.names).toEqual(['Worklist^Anna']);
    const wildcard = await worklist(['PatientName=worklist^c*']);
    expect(wildcard.names).toEqual(['Worklist^Chloe']);
  });
});
