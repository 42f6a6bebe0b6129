/**
 * DICOMweb benchmark (issue 3), side by side with Orthanc (+ its DICOMweb plugin) in one run:
 * - QIDO-RS latency (p50/p95, one connection) for PatientName exact and wildcard, StudyDate range and
 *   `limit=25&offset=…` on /studies, and requests/s with 16 connections;
 * - `/studies/{uid}/metadata` of the big study (default 500 instances);
 * - whole-study WADO-RS retrieve in MB/s, with each server's peak RSS during it;
 * - frame latency (`…/frames/1`) over random instances of the big study;
 * - QIDO on 1,000,000 generated instance rows inserted directly into Portico's database (Portico only).
 * Both servers get the same generated set (one study of N CT instances, 512x512 16-bit, plus 50 small
 * studies with varied PatientName / StudyDate), sent with `TCP_NODELAY=1 dcmsend -nh +sd +r` before timing.
 *
 *   node bench/dicomweb.ts [--instances 500] [--rows 1000000] [--only qido,metadata,...] [--keep]
 *
 * Needs dcmtk, orthanc, orthanc-dicomweb and PostgreSQL on 127.0.0.1:5432 (user postgres, trust; or
 * PORTICO_TEST_DATABASE_URL): Portico standalone runs against a fresh database there, so that the 1M rows
 * can be inserted with plain SQL. Prints a Markdown report and writes it to bench/results/dicomweb-<time>.md;
 * progress goes to stderr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openDb } from '@portico/db';
import { createTestDatabase, freePort, porticoCommand, run, syntheticInstance, testUid } from '@portico/testing';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STEPS = ['qido', 'metadata', 'retrieve', 'frames', 'rows'] as const;
type Step = (typeof STEPS)[number];
const HELP = `node bench/dicomweb.ts [options]

  --instances N   instances in the big CT study (default 500)
  --size N        rows = columns of the big study's instances (default 512; 16-bit)
  --requests N    requests per QIDO latency measure (default 100)
  --conc-s S      seconds of the 16-connection QIDO load per server (default 5)
  --frames N      frame requests (random instances of the big study; default 100)
  --rows N        generated instance rows for the QIDO-at-scale step (default 1000000; 0 skips)
  --only LIST     steps, any of ${STEPS.join(',')} (default all)
  --no-vacuum     after inserting the rows, ANALYZE only (default VACUUM (ANALYZE): sets the visibility
                  map, as autovacuum would, so the per-study instance counts are index-only scans)
  --keep          keep the temp folder and the database
  -h, --help
`;
const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '500' },
    size: { type: 'string', default: '512' },
    requests: { type: 'string', default: '100' },
    'conc-s': { type: 'string', default: '5' },
    frames: { type: 'string', default: '100' },
    rows: { type: 'string', default: '1000000' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'no-vacuum': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const N = Number(values.instances);
const SIZE = Number(values.size);
const REQUESTS = Number(values.requests);
const CONC_S = Number(values['conc-s']);
const FRAMES = Number(values.frames);
const ROWS = Number(values.rows);
const only = new Set((values.only ?? STEPS.join(',')).split(',').map((s) => s.trim()));
for (const s of only) if (!(STEPS as readonly string[]).includes(s)) throw new Error(`--only: unknown step ${s} (known: ${STEPS.join(', ')})`);
const want = (s: Step): boolean => only.has(s);
const ORTHANC = ['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].find((p) => existsSync(p));
if (!ORTHANC) throw new Error('Orthanc not found (apt-get install orthanc)');
const PLUGIN = findDicomwebPlugin();
const CURL = ['/usr/bin/curl', '/usr/local/bin/curl'].find((p) => existsSync(p));
if (!PLUGIN) throw new Error('libOrthancDicomWeb.so not found (apt-get install orthanc-dicomweb)');

function findDicomwebPlugin(): string | undefined {
  const r = spawnSync('dpkg', ['-L', 'orthanc-dicomweb'], { encoding: 'utf8' });
  const fromDpkg = (r.stdout ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /libOrthancDicomWeb\.so$/.test(l));
  return [...fromDpkg, '/usr/share/orthanc/plugins/libOrthancDicomWeb.so', '/usr/lib/orthanc/libOrthancDicomWeb.so'].find((p) => existsSync(p));
}

const env = { TCP_NODELAY: '1' };
const work = mkdtempSync(join(tmpdir(), 'bench-web-'));
chmodSync(work, 0o711);
const log = (m: string): void => void process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const children: ChildProcess[] = [];
const start = (cmd: string, args: string[], extraEnv: Record<string, string>, logFile: string): ChildProcess => {
  const out = openSync(logFile, 'a');
  const c = spawn(cmd, args, { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', out, out] });
  children.push(c);
  return c;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function waitHttp(url: string, what: string, child: ChildProcess): Promise<void> {
  for (const until = Date.now() + 180_000; Date.now() < until;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) while starting`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not yet
    }
    await sleep(300);
  }
  throw new Error(`${what}: ${url} did not answer 200`);
}
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
};

// RSS from /proc (the node process for Portico; Orthanc is one process).
const statusKb = (pid: number, field: string): number | undefined => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
};
/** utime + stime of a process in seconds (clock ticks of 1/100 s). */
const cpuSeconds = (pid: number): number => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
};
const resetHwm = (pid: number): boolean => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
};
/** Samples RSS every 100 ms until stopped; returns the peak in MiB (max of samples and VmHWM when reset worked). */
function rssSampler(pid: number): { stop(): { peakMiB: number; startMiB: number } } {
  const hwmOk = resetHwm(pid);
  const startKb = statusKb(pid, 'VmRSS') ?? 0;
  let peak = startKb;
  const t = setInterval(() => (peak = Math.max(peak, statusKb(pid, 'VmRSS') ?? 0)), 100);
  return {
    stop() {
      clearInterval(t);
      if (hwmOk) peak = Math.max(peak, statusKb(pid, 'VmHWM') ?? 0);
      return { peakMiB: peak / 1024, startMiB: startKb / 1024 };
    },
  };
}

// The data set.
const setDir = join(work, 'set');
mkdirSync(setDir);
const bigStudy = testUid('bench-web-study', 'big');
const bigSeries = testUid('bench-web-series', 'big');
const bigSop = (i: number): string => testUid('bench-web-sop', i);
const SMALL = 50;
const smallName = (s: number): string => (s % 5 === 0 ? `Doe^John${s}` : s % 5 === 1 ? `Doe^Jane${s}` : `Other^Patient${s}`);
const smallDate = (s: number): string => {
  const d = new Date(Date.UTC(2020, 0, 1) + s * 7 * 86_400_000);
  return d.toISOString().slice(0, 10).replace(/-/g, '');
};
log(`generating ${N} CT instances (${SIZE}x${SIZE}, 16-bit) + ${SMALL} small studies in ${setDir}`);
let setBytes = 0;
for (let i = 0; i < N; i++) {
  const b = syntheticInstance({
    studyInstanceUid: bigStudy,
    seriesInstanceUid: bigSeries,
    sopInstanceUid: bigSop(i),
    instanceNumber: i + 1,
    patientName: 'Bench^Web',
    patientId: 'BENCHWEB',
    studyDate: '20240115',
    rows: SIZE,
    columns: SIZE,
    seed: i + 1,
  });
  setBytes += b.length;
  writeFileSync(join(setDir, `big-${i}.dcm`), b);
}
for (let s = 0; s < SMALL; s++)
  writeFileSync(
    join(setDir, `small-${s}.dcm`),
    syntheticInstance({
      studyInstanceUid: testUid('bench-web-study', s),
      seriesInstanceUid: testUid('bench-web-series', s),
      sopInstanceUid: testUid('bench-web-small', s),
      patientName: smallName(s),
      patientId: `OTHER${s}`,
      studyDate: smallDate(s),
      rows: 16,
      columns: 16,
    }),
  );

interface Server {
  name: 'Orthanc' | 'Portico';
  base: string; // DICOMweb root, no trailing slash
  pid: number;
  dicomPort: number;
  ae: string;
}
/** results[measure][server] */
const results = new Map<string, { Orthanc?: number; Portico?: number; unit: string; target?: (p: number, o?: number) => boolean; targetText?: string }>();
const put = (measure: string, server: string, v: number, unit: string, targetText?: string, target?: (p: number, o?: number) => boolean): void => {
  const row = results.get(measure) ?? { unit, targetText, target };
  (row as Record<string, unknown>)[server] = v;
  results.set(measure, row);
};
const notes: string[] = [];

async function getJson(url: string, accept = 'application/dicom+json'): Promise<unknown[]> {
  const r = await fetch(url, { headers: { accept }, signal: AbortSignal.timeout(120_000) });
  const text = await r.text();
  if (r.status === 204) return [];
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown[];
}

async function send(s: Server): Promise<void> {
  log(`${s.name}: dcmsend the set`);
  const t0 = performance.now();
  const sent = await run('dcmsend', ['-nh', '+sd', '+r', '127.0.0.1', String(s.dicomPort), setDir, '-aec', s.ae], { env, timeoutMs: 900_000 });
  if (sent.code !== 0) throw new Error(`${s.name}: dcmsend failed: ${sent.stderr.slice(0, 300)}`);
  log(`${s.name}: sent in ${((performance.now() - t0) / 1000).toFixed(1)} s; waiting until QIDO sees everything`);
  for (const until = Date.now() + 300_000; ;) {
    const studies = await getJson(`${s.base}/studies?limit=1000`);
    const big = await getJson(`${s.base}/studies?StudyInstanceUID=${bigStudy}&includefield=00201208`);
    const count = Number(((big[0] as Record<string, { Value?: unknown[] }> | undefined)?.['00201208']?.Value ?? [0])[0]);
    if (studies.length >= SMALL + 1 && count === N) return;
    if (Date.now() > until) throw new Error(`${s.name}: after 300 s QIDO shows ${studies.length} studies and ${count} of ${N} instances in the big study`);
    await sleep(500);
  }
}

const QIDO: Array<[string, string, number]> = [
  // label, query on /studies, expected number of results
  ['QIDO PatientName exact', 'PatientName=Doe^John10', 1],
  ['QIDO PatientName wildcard Doe*', 'PatientName=Doe*', 20],
  ['QIDO StudyDate range', 'StudyDate=20200101-20200331', 13],
  ['QIDO limit=25&offset=…', 'limit=25&offset=', 25],
];
const qidoUrl = (s: Server, q: string, i: number): string => `${s.base}/studies?${q.endsWith('offset=') ? q + String((i * 7) % (SMALL + 1 - 25)) : q}`;

async function qido(s: Server): Promise<void> {
  for (const [label, q, expected] of QIDO) {
    const got = await getJson(qidoUrl(s, q, 0));
    if (got.length !== expected) notes.push(`${s.name}: ${label} (${q}) returned ${got.length} studies, expected ${expected}.`);
    for (let i = 0; i < 5; i++) await getJson(qidoUrl(s, q, i)); // warm-up
    const per: number[] = [];
    const cpu0 = cpuSeconds(s.pid);
    for (let i = 0; i < REQUESTS; i++) {
      const t = performance.now();
      await getJson(qidoUrl(s, q, i));
      per.push(performance.now() - t);
    }
    const cpuMs = ((cpuSeconds(s.pid) - cpu0) * 1000) / REQUESTS;
    const target = q.startsWith('limit') ? { text: '≤ 0.2x Orthanc (p50)', f: (p: number, o?: number) => o !== undefined && p <= 0.2 * o } : undefined;
    put(`${label}, p50`, s.name, pct(per, 50), 'ms', target?.text, target?.f);
    put(`${label}, p95`, s.name, pct(per, 95), 'ms');
    // CPU time of the server per request: steadier than latency on a shared machine (clock ticks of 10 ms, summed over the requests).
    put(`${label}, server CPU per request`, s.name, cpuMs, 'ms');
  }
  // 16 connections, the four queries in turn, for CONC_S seconds.
  let done = 0;
  let failed = 0;
  const until = performance.now() + CONC_S * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = w; performance.now() < until; i += 16) {
        const [, q] = QIDO[i % QIDO.length]!;
        try {
          await getJson(qidoUrl(s, q, i));
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  put('QIDO mix, 16 connections', s.name, done / ((performance.now() - t0) / 1000), 'req/s', '≥ 2x Orthanc', (p, o) => o !== undefined && p >= 2 * o);
  if (failed) notes.push(`${s.name}: ${failed} QIDO requests failed under 16 connections.`);
}

async function metadata(s: Server): Promise<void> {
  const url = `${s.base}/studies/${bigStudy}/metadata`;
  const first = await getJson(url);
  if (first.length !== N) notes.push(`${s.name}: /metadata returned ${first.length} instances, expected ${N}.`);
  const per: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await getJson(url);
    per.push(performance.now() - t);
  }
  put(`/metadata of the ${N}-instance study, p50 of 5`, s.name, pct(per, 50), 'ms', '≤ 0.25x Orthanc', (p, o) => o !== undefined && p <= 0.25 * o);
}

async function retrieve(s: Server): Promise<void> {
  const url = `${s.base}/studies/${bigStudy}`;
  const accept = 'multipart/related; type="application/dicom"; transfer-syntax=*';
  let best = 0;
  let peak = 0;
  let start = 0;
  let growth = 0;
  let ttfb = Infinity;
  let cpuShare = 0;
  for (let k = 0; k < 3; k++) {
    const rss = rssSampler(s.pid);
    const cpu0 = cpuSeconds(s.pid);
    let bytes = 0;
    let secs = 0;
    if (CURL) {
      // curl as the client: node's fetch would share the 2 CPUs with the server far more than curl does.
      const c = await run(
        CURL,
        ['-sS', '-o', '/dev/null', '-H', `accept: ${accept}`, '-w', '%{http_code} %{size_download} %{time_total} %{time_starttransfer}', url],
        {
          timeoutMs: 600_000,
        },
      );
      const [code, size, total, first] = c.stdout.trim().split(' ');
      ttfb = Math.min(ttfb, Number(first) * 1000);
      if (c.code !== 0 || code !== '200') throw new Error(`${s.name}: study retrieve: curl exit ${c.code}, HTTP ${code}: ${c.stderr.slice(0, 300)}`);
      bytes = Number(size);
      secs = Number(total);
    } else {
      const t = performance.now();
      const r = await fetch(url, { headers: { accept }, signal: AbortSignal.timeout(600_000) });
      if (r.status !== 200) throw new Error(`${s.name}: study retrieve HTTP ${r.status}: ${(await r.text()).slice(0, 300)}`);
      for await (const chunk of r.body!) bytes += (chunk as Uint8Array).length;
      secs = (performance.now() - t) / 1000;
    }
    const m = rss.stop();
    if (k === 0 && bytes < setBytes * 0.95) notes.push(`${s.name}: study retrieve gave ${bytes} bytes for ${setBytes} bytes of files.`);
    if (bytes / 1e6 / secs > best) cpuShare = (cpuSeconds(s.pid) - cpu0) / secs;
    best = Math.max(best, bytes / 1e6 / secs);
    peak = Math.max(peak, m.peakMiB);
    start = m.startMiB;
    growth = Math.max(growth, m.peakMiB - m.startMiB);
  }
  put(
    `study retrieve (WADO-RS, ${N} instances, ${CURL ? 'curl' : 'fetch'}), best of 3`,
    s.name,
    best,
    'MB/s',
    '≥ 0.8x Orthanc',
    (p, o) => o !== undefined && p >= 0.8 * o,
  );
  put('study retrieve, server CPU (fastest run; 100% = one core)', s.name, cpuShare * 100, '%');
  // The same as CPU time per MB of body: what the streaming path costs, whatever the client's speed.
  put('study retrieve, server CPU per MB (fastest run)', s.name, (cpuShare * 1000) / best, 'ms');
  if (ttfb !== Infinity) put('study retrieve, time to first byte (best of 3)', s.name, ttfb, 'ms');
  put('peak RSS during study retrieve', s.name, peak, 'MiB');
  put('RSS before study retrieve', s.name, start, 'MiB');
  put('RSS growth during study retrieve (peak − before)', s.name, growth, 'MiB', 'flat (≤ 50 MiB)', (p) => p <= 50);
}

async function frames(s: Server): Promise<void> {
  const accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
  const per: number[] = [];
  let bad = 0;
  for (let i = 0; i < FRAMES + 5; i++) {
    const k = Math.floor(rnd() * N);
    const url = `${s.base}/studies/${bigStudy}/series/${bigSeries}/instances/${bigSop(k)}/frames/1`;
    const t = performance.now();
    const r = await fetch(url, { headers: { accept }, signal: AbortSignal.timeout(60_000) });
    const body = await r.arrayBuffer();
    const ms = performance.now() - t;
    if (r.status !== 200 || body.byteLength < SIZE * SIZE * 2) {
      bad++;
      if (bad === 1) notes.push(`${s.name}: frame answered HTTP ${r.status}, ${body.byteLength} bytes (${r.headers.get('content-type')}).`);
    }
    if (i >= 5) per.push(ms);
  }
  put(`frame latency (${FRAMES} random instances), p50`, s.name, pct(per, 50), 'ms', '≤ Orthanc', (p, o) => o !== undefined && p <= o);
  put(`frame latency (${FRAMES} random instances), p95`, s.name, pct(per, 95), 'ms');
}

async function startOrthanc(): Promise<Server> {
  const [dicomPort, httpPort] = [await freePort(), await freePort()];
  const dir = join(work, 'orthanc');
  mkdirSync(dir);
  const conf = join(dir, 'orthanc.json');
  writeFileSync(
    conf,
    JSON.stringify({
      Name: 'portico-bench',
      StorageDirectory: join(dir, 'storage'),
      IndexDirectory: join(dir, 'index'),
      DicomAet: 'ORTHANC',
      DicomPort: dicomPort,
      HttpPort: httpPort,
      RemoteAccessAllowed: true,
      AuthenticationEnabled: false,
      DicomCheckCalledAet: false,
      Plugins: [PLUGIN],
      DicomWeb: { Enable: true, Root: '/dicom-web/' },
    }),
  );
  const c = start(ORTHANC!, [conf], {}, join(dir, 'orthanc.log'));
  await waitHttp(`http://127.0.0.1:${httpPort}/system`, 'Orthanc', c);
  return { name: 'Orthanc', base: `http://127.0.0.1:${httpPort}/dicom-web`, pid: c.pid!, dicomPort, ae: 'ORTHANC' };
}

async function startPortico(dbUrl: string): Promise<Server & { child: ChildProcess }> {
  const [dicomPort, httpPort] = [await freePort(), await freePort()];
  const dir = join(work, 'portico');
  mkdirSync(dir);
  const penv: Record<string, string> = {
    PORTICO_DATA_DIR: join(dir, 'data'),
    PORTICO_DIMSE_PORT: String(dicomPort),
    PORTICO_HTTP_PORT: String(httpPort),
    PORTICO_DIMSE_HOST: '127.0.0.1',
    PORTICO_HTTP_HOST: '127.0.0.1',
    PORTICO_DATABASE_URL: dbUrl,
    PORTICO_LOG_LEVEL: 'warn',
    PORTICO_VIEWER_ENABLED: 'false',
  };
  const launch = porticoCommand(['standalone']);
  const c = start(launch.command, launch.args, { ...launch.env, ...penv }, join(dir, 'portico.log'));
  await waitHttp(`http://127.0.0.1:${httpPort}/readyz`, 'Portico', c);
  return { name: 'Portico', base: `http://127.0.0.1:${httpPort}/dicom-web`, pid: c.pid!, dicomPort, ae: 'PORTICO', child: c };
}

/** Inserts `rows` instance rows (rows/100 studies × 2 series × 50 instances) directly; returns a note. */
async function insertRows(dbUrl: string, rows: number): Promise<string> {
  const studies = Math.max(1, Math.round(rows / 100));
  const db = openDb(dbUrl, { poolSize: 1 });
  try {
    const t0 = performance.now();
    await db.query(
      `INSERT INTO study (study_instance_uid, patient_name, patient_name_norm, patient_id, study_date, study_time, accession_number, json)
       SELECT '1.2.826.0.1.3680043.10.1.' || g, 'Gen' || (g % 5000) || '^Given' || (g % 7), 'GEN' || (g % 5000) || '^GIVEN' || (g % 7),
              'GPID' || (g % 20000), to_char(date '2000-01-01' + (g % 9000), 'YYYYMMDD'), lpad(((g * 37) % 240000)::text, 6, '0'), 'GACC' || g,
              jsonb_build_object(
                '0020000D', jsonb_build_object('vr', 'UI', 'Value', jsonb_build_array('1.2.826.0.1.3680043.10.1.' || g)),
                '00100010', jsonb_build_object('vr', 'PN', 'Value', jsonb_build_array(jsonb_build_object('Alphabetic', 'Gen' || (g % 5000) || '^Given' || (g % 7)))),
                '00100020', jsonb_build_object('vr', 'LO', 'Value', jsonb_build_array('GPID' || (g % 20000))),
                '00080020', jsonb_build_object('vr', 'DA', 'Value', jsonb_build_array(to_char(date '2000-01-01' + (g % 9000), 'YYYYMMDD'))))
         FROM generate_series(1, $1::int) g`,
      [studies],
    );
    log(`rows: ${studies} studies in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await db.query(`INSERT INTO series (series_instance_uid, study_pk, modality, series_number, json)
       SELECT s.study_instance_uid || '.' || k, s.study_pk, (ARRAY['CT','MR'])[k], k::text, '{}'::jsonb
         FROM study s, generate_series(1, 2) k WHERE s.study_instance_uid LIKE '1.2.826.0.1.3680043.10.1.%'`);
    log(`rows: series in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await db.query(`INSERT INTO instance (sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number, rows, columns, transfer_syntax_uid,
                                          object_key, object_size, json, source, received_at)
       SELECT se.series_instance_uid || '.' || n, se.series_pk, se.study_pk, '1.2.840.10008.5.1.4.1.1.2', n::text, 512, 512, '1.2.840.10008.1.2.1',
              'generated', 1,
              jsonb_build_object('00080018', jsonb_build_object('vr', 'UI', 'Value', jsonb_build_array(se.series_instance_uid || '.' || n)),
                                 '00280010', '{"vr":"US","Value":[512]}'::jsonb),
              'import', now()
         FROM series se, generate_series(1, 50) n WHERE se.series_instance_uid LIKE '1.2.826.0.1.3680043.10.1.%'`);
    const vacuum = values['no-vacuum'] ? 'ANALYZE' : 'VACUUM (ANALYZE)';
    log(`rows: instances in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${vacuum}`);
    await db.query(vacuum);
    const secs = (performance.now() - t0) / 1000;
    return `${studies} studies, ${studies * 2} series, ${studies * 100} instances inserted with generate_series, then ${vacuum}, in ${secs.toFixed(0)} s.`;
  } finally {
    await db.close();
  }
}

async function qidoAtScale(s: Server, rows: number): Promise<void> {
  const studies = Math.max(1, Math.round(rows / 100));
  const mid = Math.floor(studies / 2);
  const cases: Array<[string, string]> = [
    ['PatientName exact', `PatientName=Gen${mid % 5000}^Given${mid % 7}`],
    ['PatientName wildcard prefix', `PatientName=Gen123*`],
    ['StudyDate range (1 month)', 'StudyDate=20100101-20100131'],
    ['StudyInstanceUID', `StudyInstanceUID=1.2.826.0.1.3680043.10.1.${mid}`],
    ['limit=25', 'limit=25'],
    ['limit=25&offset=5000', 'limit=25&offset=5000'],
  ];
  for (const [label, q] of cases) {
    const url = `${s.base}/studies?${q}`;
    const got = await getJson(url);
    for (let i = 0; i < 3; i++) await getJson(url);
    const per: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const t = performance.now();
      await getJson(url);
      per.push(performance.now() - t);
    }
    const key = `${rows.toLocaleString('en')} rows: QIDO ${label} (${got.length} results)`;
    put(`${key}, p50`, s.name, pct(per, 50), 'ms');
    put(`${key}, p95`, s.name, pct(per, 95), 'ms', '≤ 20 ms', (p) => p <= 20);
  }
}

let tdb: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
let exitCode = 0;
try {
  tdb = await createTestDatabase();
  log(`Portico database ${tdb.name}; starting Orthanc and Portico`);
  const orthanc = await startOrthanc();
  const portico = await startPortico(tdb.url);
  const servers = [orthanc, portico];
  for (const s of servers) await send(s);
  const steps: Array<[Step, (s: Server) => Promise<void>]> = [
    ['qido', qido],
    ['metadata', metadata],
    ['retrieve', retrieve],
    ['frames', frames],
  ];
  for (const [step, fn] of steps) {
    if (!want(step)) continue;
    for (const s of servers) {
      log(`${s.name}: ${step}`);
      try {
        await fn(s);
      } catch (err) {
        exitCode = 1;
        notes.push(`${s.name}: step ${step} failed: ${(err as Error).message}`);
        log(`${s.name}: step ${step} failed: ${(err as Error).message}`);
      }
    }
  }
  if (want('rows') && ROWS > 0) {
    log(`inserting ${ROWS} instance rows into Portico's database`);
    try {
      notes.push(await insertRows(tdb.url, ROWS));
      await qidoAtScale(portico, ROWS);
    } catch (err) {
      exitCode = 1;
      notes.push(`1M rows step failed: ${(err as Error).message}`);
      log(`rows step failed: ${(err as Error).message}`);
    }
  }
  const porticoLog = readFileSync(join(work, 'portico/portico.log'), 'utf8');
  const errs = porticoLog.split('\n').filter((l) => /"level":(50|60)|error/i.test(l));
  if (errs.length) notes.push(`Portico log has ${errs.length} error lines, first: ${errs[0]!.slice(0, 300)}`);

  const fmt = (v: number | undefined): string => (v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const lines = [
    `# DICOMweb benchmark, ${new Date().toISOString()}`,
    '',
    `Command: \`node bench/dicomweb.ts ${process.argv.slice(2).join(' ')}\``.replace(/ `$/, '`'),
    '',
    `Set: ${N} CT instances (${SIZE}x${SIZE}, 16-bit, ${(setBytes / 1e6).toFixed(0)} MB) in one study plus ${SMALL} one-instance studies ` +
      `(PatientName Doe^John*/Doe^Jane*/Other^*, StudyDate weekly from 20200101), sent with TCP_NODELAY=1 dcmsend -nh +sd +r. ` +
      `QIDO latency: ${REQUESTS} sequential requests (1 keep-alive connection) after 5 warm-up; 16 connections: ${CONC_S} s of the four queries in turn. ` +
      `Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average at start ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}.`,
    '',
    `Orthanc ${ORTHANC} with ${PLUGIN} (defaults otherwise, SQLite index). Portico standalone (bin/portico) against a fresh database on the system PostgreSQL (not the embedded one), so the generated rows could be inserted with SQL.`,
    '',
    '| measure | unit | Orthanc | Portico | Portico ÷ Orthanc | target | met |',
    '|---|---|--:|--:|--:|---|---|',
    ...[...results].map(([k, r]) => {
      const ratio = r.Orthanc !== undefined && r.Portico !== undefined ? `${(r.Portico / r.Orthanc).toFixed(2)}x` : '–';
      const met = r.target && r.Portico !== undefined ? (r.target(r.Portico, r.Orthanc) ? 'yes' : 'no') : '';
      return `| ${k} | ${r.unit} | ${fmt(r.Orthanc)} | ${fmt(r.Portico)} | ${ratio} | ${r.targetText ?? ''} | ${met} |`;
    }),
    '',
    ...(notes.length ? ['Notes:', '', ...notes.map((n) => `- ${n}`), ''] : []),
  ];
  const report = lines.join('\n');
  process.stdout.write(report);
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(join(REPO, `bench/results/dicomweb-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), report);
} finally {
  for (const c of children) {
    if (c.exitCode === null) c.kill('SIGINT');
  }
  await sleep(3000);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (values.keep) log(`kept ${work}${tdb ? ` and database ${tdb.name}` : ''}`);
  else {
    rmSync(work, { recursive: true, force: true });
    await tdb?.drop().catch((err: unknown) => log(`drop database: ${(err as Error).message}`));
  }
}
process.exit(exitCode);
