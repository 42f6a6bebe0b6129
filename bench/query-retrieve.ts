/**
 * Query/retrieve benchmark (issue 4), side by side with Orthanc in one run:
 * - C-FIND latency per `findscu` invocation (a new association each) and per query inside one
 *   association (`findscu --repeat`), study level, exact PatientID and wildcard PatientName;
 * - C-MOVE of one 500-instance CT study to a dcmtk `storescp`, and C-GET of it with `getscu`,
 *   instances/s.
 * Both servers get the same generated set (one study of N CT instances, 512x512 16-bit, plus 50 small
 * studies of other patients so queries have something to skip), sent with dcmsend before timing.
 *
 *   node bench/query-retrieve.ts [--instances 500] [--finds 30] [--runs 3]
 *
 * Needs dcmtk and orthanc (apt-get install dcmtk orthanc). Prints a Markdown report and writes it to
 * bench/results/query-retrieve-<time>.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, porticoCommand, run, syntheticInstance, testUid } from '@portico/testing';
import { REPO } from './lib.ts';

const env = { TCP_NODELAY: '1' };
const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '500' },
    finds: { type: 'string', default: '30' },
    runs: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('node bench/query-retrieve.ts [--instances N] [--finds N] [--runs N]\n');
  process.exit(0);
}
const N = Number(values.instances);
const FINDS = Number(values.finds);
/** C-MOVE and C-GET runs per server; the median is reported (single runs vary by 2-3x on a shared machine). */
const RUNS = Number(values.runs);
const ORTHANC = ['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].find((p) => existsSync(p));
if (!ORTHANC) throw new Error('Orthanc not found (apt-get install orthanc)');

const work = mkdtempSync(join(tmpdir(), 'bench-qr-'));
// As root, embedded PostgreSQL runs as user postgres, which must be able to traverse to its data folder.
chmodSync(work, 0o711);
const log = (m: string): void => void process.stderr.write(`${m}\n`);
const children: ChildProcess[] = [];
const start = (cmd: string, args: string[], extraEnv: Record<string, string> = {}, logFile?: string): ChildProcess => {
  const out = logFile ? openSync(logFile, 'a') : 'ignore';
  const c = spawn(cmd, args, { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', out, out] });
  children.push(c);
  return c;
};
const waitPort = async (port: number): Promise<void> => {
  const net = await import('node:net');
  for (const until = Date.now() + 180_000; Date.now() < until;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`port ${port} did not open`);
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// The data set.
const setDir = join(work, 'set');
mkdirSync(setDir);
const bigStudy = testUid('bench-qr-study', 'big');
log(`generating ${N} CT instances + 50 small studies in ${setDir}`);
for (let i = 0; i < N; i++)
  writeFileSync(
    join(setDir, `big-${i}.dcm`),
    syntheticInstance({
      studyInstanceUid: bigStudy,
      seriesInstanceUid: testUid('bench-qr-series', 'big'),
      sopInstanceUid: testUid('bench-qr-sop', i),
      instanceNumber: i + 1,
      patientName: 'Bench^Retrieve',
      patientId: 'BENCHQR',
      seed: i + 1,
    }),
  );
for (let s = 0; s < 50; s++)
  writeFileSync(
    join(setDir, `small-${s}.dcm`),
    syntheticInstance({
      studyInstanceUid: testUid('bench-qr-study', s),
      seriesInstanceUid: testUid('bench-qr-series', s),
      sopInstanceUid: testUid('bench-qr-small', s),
      patientName: `Other^Patient${s}`,
      patientId: `OTHER${s}`,
      rows: 16,
      columns: 16,
    }),
  );

interface Target {
  name: string;
  port: number;
  ae: string;
}
const storescpPort = await freePort();
const results: Record<string, Record<string, number>> = {};

async function load(t: Target): Promise<void> {
  results[t.name] = {};
  log(`${t.name}: sending the set`);
  const sent = await run('dcmsend', ['-nh', '+sd', '127.0.0.1', String(t.port), setDir, '-aec', t.ae], { env, timeoutMs: 600_000 });
  if (sent.code !== 0) throw new Error(`${t.name}: dcmsend failed: ${sent.stderr.slice(0, 300)}`);
}

const findArgs = (t: Target, key: string, repeat?: number): string[] => [
  '-S',
  '-aet',
  'FINDSCU',
  ...(repeat ? ['--repeat', String(repeat)] : []),
  '-aec',
  t.ae,
  '127.0.0.1',
  String(t.port),
  '-k',
  'QueryRetrieveLevel=STUDY',
  '-k',
  key,
  '-k',
  'StudyInstanceUID',
];

/** One findscu run; its wall time in ms. */
async function find(t: Target, key: string, repeat?: number): Promise<number> {
  const s = performance.now();
  const f = await run('findscu', findArgs(t, key, repeat), { env, timeoutMs: 300_000 });
  if (f.code !== 0) throw new Error(`${t.name}: findscu failed: ${f.stderr.slice(0, 300)}`);
  return performance.now() - s;
}

/** One C-MOVE (to storescp) or C-GET of the big study; instances/s. */
async function retrieve(t: Target, op: 'C-MOVE' | 'C-GET', attempt: number): Promise<number> {
  const out = join(work, `${t.name}-${op}-${attempt}`);
  mkdirSync(out);
  let recv: ChildProcess | undefined;
  if (op === 'C-MOVE') {
    recv = start('storescp', ['-aet', 'STORESCP', '-od', out, String(storescpPort)]);
    await waitPort(storescpPort);
  }
  const common = ['-aec', t.ae, '127.0.0.1', String(t.port), '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${bigStudy}`];
  const [cmd, args] =
    op === 'C-MOVE' ? ['movescu', ['-S', '-aet', 'MOVESCU', '-aem', 'STORESCP', ...common]] : ['getscu', ['-S', '-aet', 'GETSCU', '-od', out, ...common]];
  const s = performance.now();
  const m = await run(cmd, args, { env, timeoutMs: 600_000 });
  const secs = (performance.now() - s) / 1000;
  if (recv) {
    recv.kill();
    await new Promise((r) => recv.once('exit', r));
  }
  const got = readdirSync(out).length;
  rmSync(out, { recursive: true, force: true });
  if (m.code !== 0 || got !== N) throw new Error(`${t.name}: ${op} got ${got} of ${N} (exit ${m.code}): ${m.stderr.slice(-300)}`);
  return N / secs;
}

/**
 * Every measurement alternates between the servers, run after run (who goes first alternates too), so
 * that a shared machine's drift in load lands on both alike; measuring one server after the other put
 * the second in a different minute of the machine's life.
 */
async function measure(targets: readonly Target[]): Promise<void> {
  const each = async <T>(i: number, f: (t: Target) => Promise<T>): Promise<Map<string, T>> => {
    const out = new Map<string, T>();
    for (const t of i % 2 === 0 ? targets : [...targets].reverse()) out.set(t.name, await f(t));
    return out;
  };
  const collect = async (label: string, runs: number, f: (t: Target, i: number) => Promise<number>): Promise<void> => {
    const per = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let i = 0; i < runs; i++) for (const [name, v] of await each(i, (t) => f(t, i))) per.get(name)!.push(v);
    for (const t of targets) results[t.name]![label] = median(per.get(t.name)!);
    log(
      `${label}: ${targets
        .map(
          (t) =>
            `${t.name} ${per
              .get(t.name)!
              .map((x) => x.toFixed(1))
              .join(', ')}`,
        )
        .join('; ')}`,
    );
  };
  for (const [label, key] of [
    ['exact PatientID', 'PatientID=BENCHQR'],
    ['wildcard PatientName', 'PatientName=Bench*'],
  ] as const) {
    await collect(`C-FIND ${label}, per findscu (ms, p50)`, FINDS, (t) => find(t, key));
    await collect(`C-FIND ${label}, in one association (ms/query, median of ${RUNS})`, RUNS, async (t) => (await find(t, key, FINDS * 5)) / (FINDS * 5));
  }
  for (const op of ['C-MOVE', 'C-GET'] as const) await collect(`${op} of ${N} instances (instances/s, median of ${RUNS})`, RUNS, (t, i) => retrieve(t, op, i));
}

try {
  // Orthanc, SyncStorageArea and everything else at their defaults.
  const [oDicom, oHttp] = [await freePort(), await freePort()];
  const oConf = join(work, 'orthanc.json');
  writeFileSync(
    oConf,
    JSON.stringify({
      StorageDirectory: join(work, 'orthanc-storage'),
      IndexDirectory: join(work, 'orthanc-index'),
      DicomAet: 'ORTHANC',
      DicomPort: oDicom,
      HttpPort: oHttp,
      DicomCheckCalledAet: false,
      DicomModalities: {
        findscu: ['FINDSCU', '127.0.0.1', 1],
        movescu: ['MOVESCU', '127.0.0.1', 1],
        getscu: ['GETSCU', '127.0.0.1', 1],
        storescp: ['STORESCP', '127.0.0.1', storescpPort],
      },
    }),
  );
  const orthanc = start(ORTHANC, [oConf]);
  await waitPort(oDicom);
  const orthancTarget: Target = { name: 'Orthanc', port: oDicom, ae: 'ORTHANC' };
  await load(orthancTarget);

  const [pDicom, pHttp, pPg] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(join(work, 'nodes.yml'), `nodes:\n  - { aeTitle: STORESCP, host: 127.0.0.1, port: ${storescpPort} }\n`);
  const launch = porticoCommand(['standalone']);
  const portico = start(
    launch.command,
    launch.args,
    {
      ...launch.env,
      PORTICO_DATA_DIR: join(work, 'portico'),
      PORTICO_DIMSE_PORT: String(pDicom),
      PORTICO_HTTP_PORT: String(pHttp),
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_EMBEDDED_PG_PORT: String(pPg),
      PORTICO_NODES_FILE: join(work, 'nodes.yml'),
      PORTICO_LOG_LEVEL: 'warn',
      PORTICO_VIEWER_ENABLED: 'false',
    },
    join(work, 'portico.log'),
  );
  portico.once('exit', (code) => log(`portico exited (${code}): ${readFileSync(join(work, 'portico.log'), 'utf8').slice(-2000)}`));
  await waitPort(pDicom);
  const porticoTarget: Target = { name: 'Portico', port: pDicom, ae: 'PORTICO' };
  await load(porticoTarget);
  await new Promise((res) => setTimeout(res, 3000)); // let Portico's worker index the tail
  // Both servers run from here on; each is idle while the other is measured.
  await measure([orthancTarget, porticoTarget]);
  portico.kill('SIGINT');
  await new Promise((r) => portico.once('exit', r));
  orthanc.kill();
  await new Promise((r) => orthanc.once('exit', r));

  const keys = Object.keys(results['Orthanc']!);
  const lines = [
    `# Query/retrieve benchmark, ${new Date().toISOString()}`,
    '',
    `${N} CT instances (512x512, 16-bit) in one study plus 50 small studies; findscu/movescu/getscu/storescp with TCP_NODELAY=1; ${FINDS} findscu runs per query (p50), ${FINDS * 5} queries on one association (median of ${RUNS}); C-MOVE and C-GET: median of ${RUNS} runs each; every measurement alternates between the two servers run by run.`,
    '',
    '| measure | Orthanc | Portico | Portico ÷ Orthanc |',
    '|---|--:|--:|--:|',
    ...keys.map((k) => {
      const o = results['Orthanc']![k]!;
      const p = results['Portico']![k]!;
      return `| ${k} | ${o.toFixed(1)} | ${p.toFixed(1)} | ${(p / o).toFixed(2)}x |`;
    }),
    '',
    'Targets (issue 4): C-FIND ≤ Orthanc (ratio ≤ 1 for the ms rows); C-MOVE and C-GET ≥ Orthanc instances/s (ratio ≥ 1).',
    '',
  ];
  const report = lines.join('\n');
  process.stdout.write(report);
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(join(REPO, `bench/results/query-retrieve-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), report);
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
