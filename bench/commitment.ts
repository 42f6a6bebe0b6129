/**
 * What storage commitment costs an export: the same study delivered to Orthanc with the destination's
 * `storageCommitment` off and on, alternating rounds in one run, in one node process (DIMSE SCP, worker,
 * export, as standalone composes them) on the local PostgreSQL.
 *
 * The study is received once (dcmsend, not timed); each round replays it to the destination
 * (`replayExports`, as `portico export replay` does) and measures, from the replay:
 * - "delivered": every delivery row delivered (what the export's throughput is);
 * - "committed" (on only): every row committed — Orthanc reports on a new association to our SCP;
 * - CPU ms per instance of this node process (process.cpuUsage: export, SCP receiving the reports,
 *   worker idle) and of Orthanc (/proc/<pid>/stat), from the replay up to "delivered" (off), or up to
 *   "committed" and the N-ACTION associations closed (on).
 * On a shared 2-CPU machine wall times are noisy: compare the CPU figures and the medians.
 *
 *   node bench/commitment.ts [--instances 200] [--rounds 3] [--batch 100] [--size 256]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues } from '@portico/jobs';
import { migrate, openDb, putDbNode, replayExports } from '@portico/db';
import { startWorker } from '@portico/worker';
import { startDimseServer } from '@portico/dimse';
import { startExport } from '@portico/export';
import { createTestDatabase, freePort, run, startOrthanc, syntheticInstance, testUid } from '@portico/testing';

const { values: args } = parseArgs({
  options: {
    instances: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '3' },
    batch: { type: 'string', default: '100' },
    size: { type: 'string', default: '256' },
  },
});
const N = Number(args.instances);
const ROUNDS = Number(args.rounds);
const BATCH = Number(args.batch);
const SIZE = Number(args.size);
const log = createLogger({ service: 'bench-commitment', level: 'warn' });

const ticks = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, clock ticks (1/100 s here)
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'bench-commitment-'));
  const t = await createTestDatabase();
  const db = openDb(t.url, { poolSize: 8 });
  await migrate(db);
  const store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
  const queues = await openJobQueues({ kind: 'postgres', url: t.url, schema: 'bullmq' }, log);
  const dimsePort = await freePort();
  const orthanc = await startOrthanc({ dir: path.join(work, 'orthanc'), modalities: { portico: ['PORTICO', '127.0.0.1', dimsePort] } });
  const nodesFile = path.join(work, 'nodes.yml');
  writeFileSync(nodesFile, 'nodes: []\n');
  const config = loadConfig({
    env: {},
    overrides: {
      'dimse.port': dimsePort,
      'dimse.host': '127.0.0.1',
      'dimse.nodesFile': nodesFile,
      'dimse.nodesReloadMs': 200,
      'export.reconcileIntervalMs': 3_600_000,
      'export.associationIdleMs': 2000,
    },
  });
  const workers = await startWorker({ db, store, queues, log, concurrency: 2, routing: { router: () => [], policy: { attempts: 10, backoffMs: 500 } } });
  const exporter = await startExport({ config, db, store, queues, log });
  const server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });

  const study = testUid('bench-commit-study', `${Date.now()}`);
  const dir = path.join(work, 'send');
  mkdirSync(dir);
  for (let i = 0; i < N; i++)
    writeFileSync(
      path.join(dir, `${i}.dcm`),
      syntheticInstance({
        studyInstanceUid: study,
        seriesInstanceUid: `${study}.1`,
        sopInstanceUid: `${study}.1.${i + 1}`,
        rows: SIZE,
        columns: SIZE,
        instanceNumber: i + 1,
      }),
    );
  const send = await run('dcmsend', ['-nh', '+sd', '-aec', 'PORTICO', '127.0.0.1', String(dimsePort), dir], { env: { TCP_NODELAY: '1' }, timeoutMs: 300_000 });
  if (send.code !== 0) throw new Error(`dcmsend: ${send.stderr}`);
  for (;;) {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM instance');
    if (rows[0]!.n >= N) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const rows = async (): Promise<{ delivered: number; committed: number }> =>
    (
      await db.query<{ delivered: number; committed: number }>(
        `SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered, count(*) FILTER (WHERE commitment_status = 'committed')::int AS committed
           FROM export_request WHERE destination = 'ORTHANC'`,
      )
    ).rows[0]!;
  const results: Record<'off' | 'on', Array<{ deliveredS: number; committedS: number | null; cpuMsPerInstance: number; orthancCpuMsPerInstance: number }>> = {
    off: [],
    on: [],
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['off', 'on'] as const) {
      await putDbNode(db, {
        aeTitle: 'ORTHANC',
        host: '127.0.0.1',
        port: orthanc.dicomPort,
        tls: false,
        services: ['echo', 'store', 'commitment'],
        options: { batchSize: BATCH, storageCommitment: mode === 'on' },
      });
      await exporter.destinations.reload();
      await new Promise((r) => setTimeout(r, 500));
      const cpu0 = process.cpuUsage();
      const o0 = ticks(orthanc.process.pid!);
      const t0 = performance.now();
      const refs = await replayExports(db, { studyInstanceUid: study }, 'ORTHANC');
      await queues.enqueueExports(refs, { attempts: 10, backoffMs: 500 });
      let deliveredS: number | undefined;
      let committedS: number | null = null;
      for (;;) {
        const r = await rows();
        if (deliveredS === undefined && r.delivered === N) deliveredS = (performance.now() - t0) / 1000;
        if (mode === 'off' && deliveredS !== undefined) break;
        if (mode === 'on' && r.committed === N) {
          committedS = (performance.now() - t0) / 1000;
          break;
        }
        await new Promise((res) => setTimeout(res, 20));
      }
      await exporter.commitment.settled();
      const cpu = process.cpuUsage(cpu0);
      const oTicks = ticks(orthanc.process.pid!) - o0;
      results[mode].push({
        deliveredS: deliveredS!,
        committedS,
        cpuMsPerInstance: (cpu.user + cpu.system) / 1000 / N,
        orthancCpuMsPerInstance: (oTicks * 10) / N,
      });
      console.error(`round ${round + 1} ${mode}: ${JSON.stringify(results[mode].at(-1))}`);
    }
  }
  const line = (mode: 'off' | 'on'): string => {
    const r = results[mode];
    const committed = r.map((x) => x.committedS).filter((x): x is number => x !== null);
    return `| ${mode} | ${median(r.map((x) => x.deliveredS)).toFixed(2)} | ${committed.length ? median(committed).toFixed(2) : '—'} | ${median(r.map((x) => x.cpuMsPerInstance)).toFixed(2)} | ${median(r.map((x) => x.orthancCpuMsPerInstance)).toFixed(2)} |`;
  };
  console.log(
    [
      `Storage commitment cost: ${N} CT instances ${SIZE}x${SIZE}, batchSize ${BATCH}, Orthanc destination, ${ROUNDS} rounds each (medians)`,
      '',
      '| storageCommitment | all delivered (s) | all committed (s) | Portico CPU ms/instance | Orthanc CPU ms/instance |',
      '|---|---|---|---|---|',
      line('off'),
      line('on'),
    ].join('\n'),
  );
  await server.close(1000);
  await exporter.close();
  await workers.close();
  await queues.close();
  orthanc.stop();
  await db.close();
  await t.drop();
  rmSync(work, { recursive: true, force: true });
}

await main();
