/**
 * CPU cost of DIMSE ingest: milliseconds of CPU (utime + stime from /proc/<pid>/stat) that the Portico
 * standalone node process spends per instance, for a set sent with dcmsend. On a shared 2-CPU machine
 * throughput moves with whatever else runs; CPU time per instance moves much less, so this is the figure
 * to compare changes of the receive path with (bench/ingest.ts gives the ratios against Orthanc).
 *
 * Each round sends a fresh set (distinct UIDs) and reports CPU ms/instance up to the last C-STORE-RSP
 * ("ack") and up to the set being queryable ("indexed": receive + worker), wall time and VmHWM.
 *
 *   node bench/ingest-cpu.ts [--instances 500] [--rounds 3] [--associations 1] [--pdu 131072]
 *                            [--node-flag --cpu-prof ...] [--log-level debug] [--keep]
 *                            [--database-url postgres://…]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile, stat, chmod } from 'node:fs/promises';
import { openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, porticoCommand, syntheticInstance, testUid } from '@portico/testing';

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '3' },
    associations: { type: 'string', default: '1' },
    pdu: { type: 'string', default: '131072' },
    'node-flag': { type: 'string', multiple: true, default: [] },
    'sets-dir': { type: 'string', default: join(tmpdir(), 'portico-ingest-cpu-sets') },
    keep: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'warn' },
    'worker-concurrency': { type: 'string' },
    // An external index database instead of the embedded one (e.g. with log_statement or
    // pg_stat_statements turned on, to see what SQL an instance costs).
    'database-url': { type: 'string' },
  },
});
const N = Number(values.instances);
const ROUNDS = Number(values.rounds);
const ASSOCS = Number(values.associations);

function cpuMs(pid: number, stat: string): number {
  // Fields after the command name (which may contain spaces): utime is field 14, stime 15 (1-based).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100; // USER_HZ = 100 on Linux
}
async function cpuOf(pid: number): Promise<number> {
  return cpuMs(pid, await readFile(`/proc/${pid}/stat`, 'utf8'));
}
/** CPU of the descendants (embedded PostgreSQL), summed. */
async function childrenCpu(pid: number): Promise<number> {
  const { readdir } = await import('node:fs/promises');
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    if (!s) continue;
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    parents.set(Number(name), Number(rest[1]));
    cpu.set(Number(name), cpuMs(Number(name), s));
  }
  let total = 0;
  for (const [p] of parents) {
    for (let q = parents.get(p); q !== undefined && q > 1; q = parents.get(q)) {
      if (q === pid) {
        total += cpu.get(p) ?? 0;
        break;
      }
    }
  }
  return total;
}
/** utime and stime per thread name (main thread, libuv pool, V8 workers), in ms. */
async function threadCpu(pid: number): Promise<Map<string, [number, number]>> {
  const { readdir } = await import('node:fs/promises');
  const out = new Map<string, [number, number]>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [])) {
    const s = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    if (!s) continue;
    const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')).replace(/\d+$/, '');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const [u, k] = out.get(name) ?? [0, 0];
    out.set(name, [u + Number(rest[11]) * 10, k + Number(rest[12]) * 10]);
  }
  return out;
}
async function hwmMb(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024;
}

async function makeSet(round: number): Promise<{ dirs: string[]; studyUid: string }> {
  const dir = join(values['sets-dir'], `n${N}-r${round}`);
  const parts = [0, 1, 2, 3].map((i) => join(dir, `part-${i}`));
  const studyUid = testUid(`ingest-cpu-${round}-study`, 1);
  const done = join(dir, '.complete');
  if (!(await stat(done).catch(() => undefined))) {
    for (const p of parts) await mkdir(p, { recursive: true });
    const seriesUid = testUid(`ingest-cpu-${round}-series`, 1);
    for (let i = 0; i < N; i++) {
      const data = syntheticInstance({
        studyInstanceUid: studyUid,
        seriesInstanceUid: seriesUid,
        sopInstanceUid: testUid(`ingest-cpu-${round}-sop`, i),
        instanceNumber: i + 1,
        patientName: 'Cpu^Ingest',
        patientId: 'CPU-INGEST',
        seed: i + 1,
      });
      await writeFile(join(parts[i % 4]!, `${String(i).padStart(5, '0')}.dcm`), data);
    }
    await writeFile(done, '');
  }
  return { dirs: ASSOCS === 1 ? [dir] : parts.slice(0, ASSOCS), studyUid };
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const child = spawn(cmd, args, { env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => res({ code, out }));
  });
}

async function waitFor(check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out');
}

async function main(): Promise<void> {
  const sets = [];
  for (let r = 0; r < ROUNDS; r++) sets.push(await makeSet(r));
  const dir = await mkdtemp(join(tmpdir(), 'portico-ingest-cpu-'));
  await chmod(dir, 0o755);
  const [http, dimse, pg] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTICO_')) env[k] = v;
  Object.assign(env, {
    PORTICO_LOG_LEVEL: values['log-level'],
    PORTICO_HTTP_HOST: '127.0.0.1',
    PORTICO_DIMSE_HOST: '127.0.0.1',
    PORTICO_DATA_DIR: join(dir, 'data'),
    PORTICO_HTTP_PORT: String(http),
    PORTICO_DIMSE_PORT: String(dimse),
    PORTICO_EMBEDDED_PG_PORT: String(pg),
    ...(values['worker-concurrency'] ? { PORTICO_WORKER_CONCURRENCY: values['worker-concurrency'] } : {}),
    ...(values['database-url'] ? { PORTICO_DATABASE_URL: values['database-url'] } : {}),
  });
  const log = openSync(join(dir, 'portico.log'), 'w');
  const launch = porticoCommand(['standalone'], values['node-flag'] ?? []);
  Object.assign(env, launch.env);
  const child: ChildProcess = spawn(launch.command, launch.args, { env, cwd: dir, stdio: ['ignore', log, log], detached: true });
  const pid = child.pid!;
  const base = `http://127.0.0.1:${http}`;
  try {
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 120_000);
    process.stderr.write(`ready (pid ${pid}, data ${dir})\n`);
    const rows: string[] = [];
    for (const [r, set] of sets.entries()) {
      await writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => undefined);
      const c0 = await cpuOf(pid);
      const k0 = await childrenCpu(pid);
      const th0 = await threadCpu(pid);
      const t0 = performance.now();
      const results = await Promise.all(
        set.dirs.map((d) => run('dcmsend', ['-nh', '+sd', '+r', '-aec', 'PORTICO', '--max-pdu', values.pdu, '127.0.0.1', String(dimse), d])),
      );
      const ackMs = performance.now() - t0;
      const c1 = await cpuOf(pid);
      for (const res of results) if (res.code !== 0) throw new Error(`dcmsend failed: ${res.out.slice(-500)}`);
      await waitFor(async () => {
        const res = await fetch(`${base}/dicom-web/studies/${set.studyUid}/instances?offset=${N - 1}&limit=1&includefield=00080018`);
        // 200 with an empty array (or 204) until the N-th instance is indexed.
        const body = await res.text();
        return res.status === 200 && (JSON.parse(body) as unknown[]).length === 1;
      }, 300_000);
      const allMs = performance.now() - t0;
      const c2 = await cpuOf(pid);
      const k2 = await childrenCpu(pid);
      const th2 = await threadCpu(pid);
      const threads = [...th2]
        .map(([name, [u, k]]) => {
          const [u0, k0] = th0.get(name) ?? [0, 0];
          return `${name} ${((u - u0) / N).toFixed(2)}u+${((k - k0) / N).toFixed(2)}s`;
        })
        .join(', ');
      const row = `round ${r}: ack ${(ackMs / 1000).toFixed(1)} s (${((N * 1000) / ackMs).toFixed(0)}/s), indexed ${(allMs / 1000).toFixed(1)} s; CPU ms/instance to ack ${((c1 - c0) / N).toFixed(2)}, to indexed ${((c2 - c0) / N).toFixed(2)} (+ children ${((k2 - k0) / N).toFixed(2)}); VmHWM ${(await hwmMb(pid)).toFixed(0)} MB`;
      process.stderr.write(`${row}\n  per thread (ms/instance): ${threads}\n`);
      rows.push(row);
    }
    process.stdout.write(`${rows.join('\n')}\n`);
  } finally {
    process.kill(-pid, 'SIGTERM');
    await new Promise((r) => child.once('exit', r));
    if (!values.keep) await rm(dir, { recursive: true, force: true });
    else process.stderr.write(`kept ${dir}\n`);
  }
}

await main();
