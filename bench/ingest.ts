#!/usr/bin/env node
/**
 * Ingest benchmark (`make bench`): C-STORE over 1 and 4 associations and STOW-RS of a generated set of CT
 * instances, side by side in one run, against Portico (standalone and cluster shape), Orthanc with its
 * DICOMweb plugin, and dcmtk `storescp` as the yardstick. See bench/README.md.
 *
 * Design decisions:
 * - Every target is a real server started fresh by this script as a child process (own process group,
 *   own temp data folder, free loopback ports) and stopped afterwards, so nothing depends on what runs on
 *   the machine except PostgreSQL and Redis for the cluster shape, which get a fresh database / key prefix.
 * - One target start serves all three scenarios; each scenario sends its own instance set (its own study,
 *   series and SOP Instance UIDs), so no scenario sees another's data as duplicates.
 * - The load comes from separate processes where possible (dcmsend; s3rver in bench/s3-server.ts), so the
 *   benchmark's own event loop only drives STOW-RS requests and QIDO polling.
 * - Portico acknowledges once bytes are durable and the ingest job is enqueued (DESIGN.md), and indexes
 *   afterwards in the worker. Both times are measured: "acknowledged" (client done) and "all queryable"
 *   (QIDO-RS returns every instance of the set), both from the first byte sent. Orthanc indexes before it
 *   acknowledges, so for Orthanc the two are the same.
 * - Peak RSS per scenario: VmHWM is reset through /proc/<pid>/clear_refs ("5") before each scenario and
 *   read after it; where the reset is refused, the numbers are cumulative (noted in the report).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { accessSync, constants as fsConstants, createReadStream, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import os from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PORTICO_LAUNCHER, freePort, porticoCommand, syntheticInstance, testUid } from '@portico/testing';
import {
  BENCH_DIR,
  REPO,
  START_TIMEOUT_MS,
  MB,
  CLUSTER_DB_URL,
  CLUSTER_REDIS_URL,
  cleanups,
  installExitCleanup,
  startChild,
  isRunning,
  stopProc,
  crashSummary,
  runTool,
  which,
  toolText,
  httpStatus,
  tcpOpen,
  waitReady,
  statusKb,
  descendants,
  samplePeak,
  pgQuery,
  withRedis,
  createLog,
  type Proc,
  type RssSample,
} from './lib.ts';

const PORTICO_CLI = join(REPO, 'services/portico/src/cli.ts');
const S3_HELPER = join(BENCH_DIR, 's3-server.ts');

const STOW_BATCH = 50; // instances per STOW-RS request (the issue)
const STOW_IN_FLIGHT = 4; // STOW-RS requests in flight at a time (the issue)
const POLL_MS = 100; // QIDO probe interval for the "all queryable" time
const STALL_MS = 30_000; // give up on "all queryable" when the count stops growing this long after the ack
/** Sub-folders of a target's temp folder that hold stored data (not logs). */
const TARGET_DATA_DIRS = ['data', 'out', 'storage', 'index', 's3-tmp'];

const TARGETS = ['storescp', 'orthanc', 'portico-standalone', 'portico-cluster'] as const;
type TargetName = (typeof TARGETS)[number];
const SCENARIOS = ['dimse1', 'dimse4', 'stow'] as const;
type ScenarioId = (typeof SCENARIOS)[number];
const SCENARIO_LABEL: Record<ScenarioId, string> = {
  dimse1: 'DIMSE C-STORE, 1 association',
  dimse4: 'DIMSE C-STORE, 4 associations',
  stow: `STOW-RS, ${STOW_BATCH}/request, ${STOW_IN_FLIGHT} in flight`,
};
const SCENARIO_SHORT: Record<ScenarioId, string> = { dimse1: 'DIMSE 1 assoc', dimse4: 'DIMSE 4 assoc', stow: 'STOW-RS' };

const HELP = `node bench/ingest.ts [options]   (make bench)

C-STORE ingest (dcmsend, 1 and 4 associations) and STOW-RS of generated CT instances
(512x512, 16-bit, ~512 KB each) against Portico standalone, Portico cluster, Orthanc
(+ DICOMweb plugin) and dcmtk storescp, started fresh on loopback ports. Prints a Markdown
report and writes it to bench/results/ingest-<date>.md.

Options:
  --instances N      instances per scenario (default 500)
  --only LIST        comma-separated subset of: ${TARGETS.join(', ')}
  --timeout-s S      per-scenario limit; a target that hangs longer is reported failed (default 300)
  --storescp-fork    run storescp with --fork (one process per association); by default it serves
                     associations one after the other, as the issue's command line does
  --keep             keep the temp folder (instances, target data, logs) and print its path
  -h, --help         this help

Needs: dcmtk (dcmsend, storescp), orthanc and orthanc-dicomweb (apt-get install dcmtk orthanc
orthanc-dicomweb); for portico-cluster PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and
Redis on 127.0.0.1:6379 (override: PORTICO_BENCH_DATABASE_URL, PORTICO_BENCH_REDIS_URL). The S3
server is s3rver in a child process unless PORTICO_TEST_S3_ENDPOINT (+ _ACCESS_KEY/_SECRET_KEY) names one.
`;

let tmpRoot: string | undefined;
let keepTmp = false;
installExitCleanup({
  stopping: 'every target',
  waitForExit: true,
  onExit: () => {
    if (tmpRoot && !keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
  },
});
const log = createLog('bench', { quietWhenInterrupted: true });

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? ''
  );
}

// ---------------------------------------------------------------------------------------------------
// Peak RSS from /proc.

/** utime + stime of a process in ms (USER_HZ = 100), 0 when it is gone. */
function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** Resets VmHWM to the current RSS (Linux clear_refs "5"); false when the kernel refuses. */
function resetPeak(pid: number): boolean {
  let ok = true;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      writeFileSync(`/proc/${p}/clear_refs`, '5');
    } catch {
      if (p === pid) ok = false;
    }
  }
  return ok;
}

// ---------------------------------------------------------------------------------------------------
// Instance sets.

interface InstanceSet {
  readonly id: ScenarioId;
  readonly dir: string;
  /** Four sub-folders of dir (for the 4-association run; the other sets have them too). */
  readonly parts: string[];
  readonly files: string[];
  readonly sopUids: ReadonlySet<string>;
  readonly studyUid: string;
  readonly seriesUid: string;
  readonly count: number;
  readonly bytes: number;
}

async function generateSet(root: string, id: ScenarioId, n: number): Promise<InstanceSet> {
  const dir = join(root, 'instances', id);
  const parts = [0, 1, 2, 3].map((i) => join(dir, `part-${i}`));
  for (const p of parts) await mkdir(p, { recursive: true });
  const studyUid = testUid(`bench-ingest-${id}-study`, 1);
  const seriesUid = testUid(`bench-ingest-${id}-series`, 1);
  const files: string[] = [];
  const sopUids = new Set<string>();
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const sopInstanceUid = testUid(`bench-ingest-${id}-sop`, i);
    const data = syntheticInstance({
      studyInstanceUid: studyUid,
      seriesInstanceUid: seriesUid,
      sopInstanceUid,
      instanceNumber: i + 1,
      patientName: 'Bench^Ingest',
      patientId: 'BENCH-INGEST',
      seed: i + 1,
    });
    const file = join(parts[i % 4]!, `${String(i).padStart(5, '0')}.dcm`);
    await writeFile(file, data);
    files.push(file);
    sopUids.add(sopInstanceUid);
    bytes += data.length;
  }
  return { id, dir, parts, files, sopUids, studyUid, seriesUid, count: n, bytes };
}

// ---------------------------------------------------------------------------------------------------
// Targets.

interface Running {
  readonly procs: Proc[];
  /** Processes whose peak RSS is reported (role, pid); `portico` marks those the 250 MB target applies to. */
  readonly measured: Array<{ role: string; pid: number; portico: boolean }>;
  readonly dimse?: { port: number; aet: string };
  readonly stowUrl?: string;
  /** How many instances of the set the target holds (Portico: queryable through QIDO-RS). */
  count(set: InstanceSet): Promise<number>;
  /** Portico only: a cheap probe, true once every instance of the set is queryable. */
  allQueryable?(set: InstanceSet): Promise<boolean>;
  stop(): Promise<string[]>;
}

interface TargetDef {
  readonly name: TargetName;
  readonly label: string;
  readonly scenarios: readonly ScenarioId[];
  /** What is missing on this machine to run the target (empty: ready to go). */
  missing(): Promise<string[]>;
  start(dir: string, notes: string[]): Promise<Running>;
}

interface Options {
  readonly storescpFork: boolean;
}

function porticoEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTICO_')) env[k] = v;
  return { ...env, ...porticoCommand([]).env, PORTICO_LOG_LEVEL: 'warn', PORTICO_HTTP_HOST: '127.0.0.1', PORTICO_DIMSE_HOST: '127.0.0.1', ...extra };
}

async function porticoCliMissing(): Promise<string[]> {
  const r = await runTool(process.execPath, [PORTICO_CLI, '--help'], { signal: AbortSignal.timeout(60_000) });
  if (r.code === 0) return [];
  const lines = r.output.trim().split('\n');
  const error = lines.find((l) => /Error|error:/.test(l)) ?? lines[0] ?? '';
  return [`a working Portico CLI: \`node services/portico/src/cli.ts --help\` exited with code ${r.code}: ${error.trim()}`];
}

function porticoCount(base: string): (set: InstanceSet) => Promise<number> {
  return async (set) => {
    const r = await fetch(`${base}/dicom-web/studies/${set.studyUid}/instances?limit=${set.count + 100}`, {
      headers: { accept: 'application/dicom+json' },
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    if (r.status === 204 || r.status === 404) return 0;
    if (r.status !== 200) throw new Error(`QIDO-RS answered HTTP ${r.status}: ${text.slice(0, 300)}`);
    const body = JSON.parse(text) as unknown;
    if (!Array.isArray(body)) throw new Error(`QIDO-RS answered a non-array: ${text.slice(0, 300)}`);
    return body.length;
  };
}

/** One instance at offset N-1 of the study exists ⇔ all N are indexed (the set has exactly N). */
function porticoProbe(base: string): (set: InstanceSet) => Promise<boolean> {
  return async (set) => {
    const r = await fetch(`${base}/dicom-web/studies/${set.studyUid}/instances?offset=${set.count - 1}&limit=1&includefield=00080018`, {
      headers: { accept: 'application/dicom+json' },
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    if (r.status !== 200) return false;
    const body = JSON.parse(text) as unknown;
    return Array.isArray(body) && body.length > 0;
  };
}

function storescpTarget(opts: Options): TargetDef {
  return {
    name: 'storescp',
    label: 'storescp',
    scenarios: ['dimse1', 'dimse4'],
    missing: async () => (which('storescp') ? [] : ['storescp (apt-get install dcmtk)']),
    async start(dir, notes) {
      const out = join(dir, 'out');
      await mkdir(out, { recursive: true });
      const port = await freePort();
      const args = ['+xa', '-od', out, '-aet', 'STORESCP', ...(opts.storescpFork ? ['--fork'] : []), String(port)];
      const p = startChild('storescp', 'storescp', args, { env: { ...process.env, TCP_NODELAY: '1' }, logFile: join(dir, 'storescp.log') });
      await waitReady([p], () => tcpOpen(port), 'storescp', 30_000, { logPaths: true });
      notes.push(
        opts.storescpFork
          ? 'storescp ran with --fork (a process per association); its peak RSS covers the listening parent only.'
          : 'storescp serves one association at a time (no --fork, as in the issue), so its 4-association figure is sequential.',
      );
      return {
        procs: [p],
        measured: [{ role: 'storescp', pid: p.child.pid!, portico: false }],
        dimse: { port, aet: 'STORESCP' },
        async count(set) {
          const names = await readdir(out);
          return names.filter((n) => set.sopUids.has(n.slice(n.indexOf('.') + 1))).length;
        },
        async stop() {
          const note = await stopProc(p, { withLogError: true });
          return note ? [note] : [];
        },
      };
    },
  };
}

function findDicomwebPlugin(): string | undefined {
  const candidates: string[] = [];
  try {
    // `dpkg -L` is the source of truth on Debian; the fallbacks cover other layouts.
    const out = toolText('dpkg', ['-L', 'orthanc-dicomweb'], { requireSuccess: true });
    candidates.push(
      ...out
        .split('\n')
        .filter((l) => /libOrthancDicomWeb\.so/.test(l))
        .sort((a, b) => Number(b.includes('/plugins/')) - Number(a.includes('/plugins/'))),
    );
  } catch {
    // no dpkg
  }
  candidates.push(
    '/usr/share/orthanc/plugins/libOrthancDicomWeb.so',
    '/usr/lib/orthanc/libOrthancDicomWeb.so',
    '/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so',
  );
  for (const c of candidates) {
    try {
      accessSync(c.trim(), fsConstants.R_OK);
      return c.trim();
    } catch {
      // next
    }
  }
  return undefined;
}

function orthancTarget(): TargetDef {
  return {
    name: 'orthanc',
    label: 'Orthanc',
    scenarios: SCENARIOS,
    async missing() {
      const m: string[] = [];
      if (!which('Orthanc')) m.push('Orthanc (apt-get install orthanc)');
      if (!findDicomwebPlugin()) m.push('the Orthanc DICOMweb plugin libOrthancDicomWeb.so (apt-get install orthanc-dicomweb)');
      return m;
    },
    async start(dir, notes) {
      const [dicomPort, httpPort] = [await freePort(), await freePort()];
      const plugin = findDicomwebPlugin()!;
      await mkdir(join(dir, 'storage'), { recursive: true });
      await mkdir(join(dir, 'index'), { recursive: true });
      // SyncStorageArea (default true: fsync per instance), ConcurrentJobs, thread counts and
      // MaximumPduLength are left at their defaults on purpose. The plugin is named by file rather than
      // by folder so that the worklist and serve-folders plugins of the same folder are not loaded.
      const config = {
        Name: 'portico-bench',
        StorageDirectory: join(dir, 'storage'),
        IndexDirectory: join(dir, 'index'),
        DicomAet: 'ORTHANC',
        DicomPort: dicomPort,
        HttpPort: httpPort,
        RemoteAccessAllowed: true,
        AuthenticationEnabled: false,
        DicomCheckCalledAet: false,
        Plugins: [plugin],
        DicomWeb: { Enable: true, Root: '/dicom-web/' },
      };
      const configFile = join(dir, 'orthanc.json');
      await writeFile(configFile, JSON.stringify(config, null, 2));
      // Orthanc's DICOM server is DCMTK's dcmnet, which reads TCP_NODELAY like the dcmtk tools; without it
      // Nagle's algorithm and delayed ACKs cost Orthanc ~50 ms per instance here (40 instances over one
      // association: 2.2-2.4 s without, 0.35-0.74 s with), which would flatter every ratio against it.
      const env = { ...process.env, TCP_NODELAY: '1' };
      const p = startChild('Orthanc', which('Orthanc')!, [configFile], { env, logFile: join(dir, 'orthanc.log') });
      const base = `http://127.0.0.1:${httpPort}`;
      await waitReady([p], async () => (await httpStatus(`${base}/system`)) === 200 && (await tcpOpen(dicomPort)), 'Orthanc', 60_000, { logPaths: true });
      notes.push(
        `Orthanc ran with TCP_NODELAY=1 (its DICOM server is DCMTK, which reads it); plugin ${plugin}; ` +
          'Orthanc has no bind-address setting, so it listened on all interfaces (the load went to 127.0.0.1).',
      );
      return {
        procs: [p],
        measured: [{ role: 'Orthanc', pid: p.child.pid!, portico: false }],
        dimse: { port: dicomPort, aet: 'ORTHANC' },
        stowUrl: `${base}/dicom-web/studies`,
        async count(set) {
          const r = await fetch(`${base}/tools/find`, {
            method: 'POST',
            body: JSON.stringify({ Level: 'Instance', Query: { StudyInstanceUID: set.studyUid } }),
            signal: AbortSignal.timeout(30_000),
          });
          const text = await r.text();
          if (r.status !== 200) throw new Error(`Orthanc /tools/find answered HTTP ${r.status}: ${text.slice(0, 300)}`);
          return (JSON.parse(text) as unknown[]).length;
        },
        async stop() {
          const note = await stopProc(p, { withLogError: true });
          return note ? [note] : [];
        },
      };
    },
  };
}

function porticoStandaloneTarget(): TargetDef {
  return {
    name: 'portico-standalone',
    label: 'Portico standalone',
    scenarios: SCENARIOS,
    missing: porticoCliMissing,
    async start(dir, notes) {
      const [httpPort, dimsePort, pgPort] = [await freePort(), await freePort(), await freePort()];
      const env = porticoEnv({
        PORTICO_DATA_DIR: join(dir, 'data'),
        PORTICO_HTTP_PORT: String(httpPort),
        PORTICO_DIMSE_PORT: String(dimsePort),
        PORTICO_EMBEDDED_PG_PORT: String(pgPort),
      });
      const p = startChild('portico standalone', PORTICO_LAUNCHER, ['standalone'], {
        env,
        logFile: join(dir, 'portico.log'),
      });
      const base = `http://127.0.0.1:${httpPort}`;
      await waitReady([p], async () => (await httpStatus(`${base}/readyz`)) === 200 && (await tcpOpen(dimsePort)), 'Portico standalone', START_TIMEOUT_MS, {
        logPaths: true,
      });
      notes.push('Portico standalone: the node process is measured; embedded PostgreSQL runs as separate child processes (column "child processes").');
      return {
        procs: [p],
        measured: [{ role: 'portico standalone (node)', pid: p.child.pid!, portico: true }],
        dimse: { port: dimsePort, aet: 'PORTICO' },
        stowUrl: `${base}/dicom-web/studies`,
        count: porticoCount(base),
        allQueryable: porticoProbe(base),
        async stop() {
          const note = await stopProc(p, { withLogError: true });
          return note ? [note] : [];
        },
      };
    },
  };
}

function redactUrl(u: string): string {
  const url = new URL(u);
  if (url.password) url.password = '***';
  return url.toString();
}

function porticoClusterTarget(): TargetDef {
  return {
    name: 'portico-cluster',
    label: 'Portico cluster',
    scenarios: SCENARIOS,
    async missing() {
      const m = await porticoCliMissing();
      try {
        await pgQuery(CLUSTER_DB_URL, 'SELECT 1');
      } catch (err) {
        m.push(
          `PostgreSQL at ${redactUrl(CLUSTER_DB_URL)} (${(err as Error).message}); the cluster shape needs a superuser that may CREATE DATABASE (apt-get install postgresql, trust auth for postgres on 127.0.0.1, or set PORTICO_BENCH_DATABASE_URL)`,
        );
      }
      try {
        await withRedis(CLUSTER_REDIS_URL, (r) => r.ping());
      } catch (err) {
        m.push(`Redis at ${CLUSTER_REDIS_URL} (${(err as Error).message}); apt-get install redis-server, or set PORTICO_BENCH_REDIS_URL`);
      }
      return m;
    },
    async start(dir, notes) {
      const id = `bench_${randomBytes(5).toString('hex')}`;
      const bucket = id.replace(/_/g, '-');
      const dbUrl = new URL(CLUSTER_DB_URL);
      dbUrl.pathname = `/${id}`;
      const procs: Proc[] = [];
      let dbCreated = false;
      const cleanup = async (): Promise<void> => {
        if (dbCreated) await pgQuery(CLUSTER_DB_URL, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(id)} WITH (FORCE)`).catch(() => undefined);
        dbCreated = false;
        await withRedis(CLUSTER_REDIS_URL, async (r) => {
          let cursor = '0';
          do {
            const [next, keys] = await r.scan(cursor, 'MATCH', `${id}:*`, 'COUNT', 1000);
            cursor = next;
            if (keys.length) await r.del(...keys);
          } while (cursor !== '0');
        }).catch(() => undefined);
      };
      cleanups.push(cleanup);
      const stopAll = async (): Promise<string[]> => {
        const out: string[] = [];
        for (const p of [...procs].reverse()) {
          const note = await stopProc(p, { withLogError: true });
          if (note) out.push(note);
        }
        await cleanup();
        return out;
      };
      try {
        await pgQuery(CLUSTER_DB_URL, `CREATE DATABASE ${pg.escapeIdentifier(id)}`);
        dbCreated = true;
        const [pgVersion] = await pgQuery<{ v: string }>(CLUSTER_DB_URL, "SELECT current_setting('server_version') AS v");
        const redisInfo = await withRedis(CLUSTER_REDIS_URL, (r) => r.info('server'));
        const redisVersion = /redis_version:(\S+)/.exec(redisInfo)?.[1] ?? '?';

        const infoFile = join(dir, 's3.json');
        // s3rver keeps its objects under os.tmpdir(); point that into our temp folder so that nothing is left
        // behind even when s3rver is killed before it can remove its folder.
        const s3tmp = join(dir, 's3-tmp');
        await mkdir(s3tmp, { recursive: true });
        const s3 = startChild('s3 server', process.execPath, [S3_HELPER, infoFile, bucket], {
          env: { ...process.env, TMPDIR: s3tmp },
          logFile: join(dir, 's3.log'),
        });
        procs.push(s3);
        await waitReady(
          [s3],
          async () => {
            try {
              await readFile(infoFile);
              return true;
            } catch {
              return false;
            }
          },
          'the S3 server',
          30_000,
          { logPaths: true },
        );
        const s3info = JSON.parse(await readFile(infoFile, 'utf8')) as {
          endPoint: string;
          port: number;
          useSSL: boolean;
          accessKey: string;
          secretKey: string;
        };
        const s3Endpoint = `${s3info.useSSL ? 'https' : 'http'}://${s3info.endPoint}:${s3info.port}`;
        const isS3rver = !process.env['PORTICO_TEST_S3_ENDPOINT'];

        const common = {
          PORTICO_DATABASE_URL: dbUrl.toString(),
          PORTICO_REDIS_URL: CLUSTER_REDIS_URL,
          PORTICO_QUEUE_PREFIX: id,
          PORTICO_S3_ENDPOINT: s3Endpoint,
          PORTICO_S3_ACCESS_KEY: s3info.accessKey,
          PORTICO_S3_SECRET_KEY: s3info.secretKey,
          PORTICO_S3_BUCKET: bucket,
          PORTICO_DATA_DIR: join(dir, 'data'),
        };
        const migrate = await runTool(process.execPath, [PORTICO_CLI, 'migrate'], { env: porticoEnv(common), signal: AbortSignal.timeout(120_000) });
        await writeFile(join(dir, 'migrate.log'), migrate.output);
        if (migrate.code !== 0)
          throw new Error(`portico migrate exited with code ${migrate.code}:\n${migrate.output.trim().split('\n').slice(-30).join('\n')}`);

        // Consumers first, edges last (as the CLI does inside one process). Every role gets its own
        // ports so that a role that opens a listener it does not need cannot collide with another.
        const roles: Array<{ role: 'worker' | 'dicomweb' | 'dimse'; http: number; dimse: number }> = [];
        for (const role of ['worker', 'dicomweb', 'dimse'] as const) roles.push({ role, http: await freePort(), dimse: await freePort() });
        for (const r of roles) {
          // The dimse role refuses unknown calling AEs by default; the bench's dcmsend is not in a nodes file.
          const env = porticoEnv({ ...common, PORTICO_HTTP_PORT: String(r.http), PORTICO_DIMSE_PORT: String(r.dimse), PORTICO_DIMSE_ALLOW_UNKNOWN_AE: 'true' });
          procs.push(startChild(`portico ${r.role}`, PORTICO_LAUNCHER, [r.role], { env, logFile: join(dir, `${r.role}.log`) }));
        }
        const web = roles.find((r) => r.role === 'dicomweb')!;
        const dimse = roles.find((r) => r.role === 'dimse')!;
        const base = `http://127.0.0.1:${web.http}`;
        await waitReady(
          procs,
          async () => (await httpStatus(`${base}/readyz`)) === 200 && (await tcpOpen(dimse.dimse)),
          'Portico cluster (worker, dicomweb, dimse)',
          START_TIMEOUT_MS,
          { logPaths: true },
        );
        // The worker has no port to probe: give it a moment and require that it is still running.
        await sleep(1000);
        await waitReady(procs, async () => true, 'Portico worker', 1000, { logPaths: true });

        notes.push(
          `Portico cluster: PostgreSQL ${pgVersion?.v ?? '?'} at ${redactUrl(CLUSTER_DB_URL)} (database ${id}), Redis ${redisVersion} (prefix ${id}), ` +
            (isS3rver
              ? `S3 = s3rver on ${s3Endpoint} (bucket ${bucket}) — a slow JavaScript S3 server in its own process, not MinIO; cluster figures are bounded by it. ` +
                'A sentinel object keeps staging/ non-empty to dodge an s3rver crash under concurrent PUT/DELETE (see bench/s3-server.ts).'
              : `S3 = ${s3Endpoint} from PORTICO_TEST_S3_ENDPOINT (bucket ${bucket}).`),
          'Portico cluster: PostgreSQL, Redis and the S3 server are not included in the peak-RSS figures of the roles (s3rver is listed for information).',
        );
        const measured = procs.map((p) => ({
          role: p.role === 's3 server' ? (isS3rver ? 's3rver (not Portico)' : 's3 helper') : p.role,
          pid: p.child.pid!,
          portico: p.role !== 's3 server',
        }));
        return {
          procs,
          measured,
          dimse: { port: dimse.dimse, aet: 'PORTICO' },
          stowUrl: `${base}/dicom-web/studies`,
          count: porticoCount(base),
          allQueryable: porticoProbe(base),
          stop: stopAll,
        };
      } catch (err) {
        await stopAll();
        throw err;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Scenarios.

interface ScenarioResult {
  /** Seconds from the first byte sent to the last acknowledgement; set only when every instance was acknowledged. */
  ackSeconds?: number;
  /** Seconds until every instance was queryable (Portico); Orthanc: = ackSeconds. */
  queryableSeconds?: number;
  /** Instances the target holds afterwards (Portico: queryable), or undefined when not checked. */
  stored?: number;
  errors: string[];
  notes: string[];
  skipped?: string;
}

interface QueryableWatch {
  seconds?: number;
  error?: string;
}

/**
 * Polls the cheap probe every POLL_MS from the start of the send; after the acknowledgement it also counts
 * every 2 s and gives up when the count has not grown for STALL_MS.
 */
async function watchQueryable(t: Running, set: InstanceSet, t0: number, acked: Promise<void>, signal: AbortSignal): Promise<QueryableWatch> {
  let ackAt: number | undefined;
  void acked.then(() => {
    ackAt = performance.now();
  });
  let lastCount = -1;
  let lastProgress = 0;
  let lastCountAt = 0;
  let lastError = '';
  while (!signal.aborted) {
    let ok = false;
    try {
      ok = await t.allQueryable!(set);
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (ok) return { seconds: (performance.now() - t0) / 1000 };
    const dead = t.procs.find((p) => !isRunning(p));
    if (dead) return { error: `not all queryable: ${crashSummary(dead)}` };
    const now = performance.now();
    if (ackAt !== undefined && now - lastCountAt >= 2000) {
      lastCountAt = now;
      try {
        const c = await t.count(set);
        if (c > lastCount) {
          lastCount = c;
          lastProgress = now;
        }
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (now - Math.max(lastProgress, ackAt) > STALL_MS) {
        return {
          error: `not all queryable: ${Math.max(lastCount, 0)} of ${set.count} after no progress for ${STALL_MS / 1000} s${lastError ? ` (last error: ${lastError})` : ''}`,
        };
      }
    }
    await sleep(POLL_MS);
  }
  return {
    error: `not all queryable within the time limit${lastCount >= 0 ? ` (${lastCount} of ${set.count} at the last count)` : ''}${lastError ? `; last error: ${lastError}` : ''}`,
  };
}

async function runDimse(t: Running, set: InstanceSet, associations: 1 | 4, reportDir: string, signal: AbortSignal): Promise<ScenarioResult> {
  const res: ScenarioResult = { errors: [], notes: [] };
  const dimse = t.dimse!;
  const dirs = associations === 1 ? [set.dir] : set.parts;
  const env = { ...process.env, TCP_NODELAY: '1' };
  let markAcked = (): void => undefined;
  const acked = new Promise<void>((r) => (markAcked = r));
  const t0 = performance.now();
  const watch = t.allQueryable ? watchQueryable(t, set, t0, acked, signal) : undefined;
  const runs = await Promise.all(
    dirs.map((dir, i) =>
      runTool('dcmsend', ['-nh', '+sd', '+r', '127.0.0.1', String(dimse.port), dir, '-aec', dimse.aet, '+crf', join(reportDir, `dcmsend-${set.id}-${i}.txt`)], {
        env,
        signal,
      }),
    ),
  );
  const ackSeconds = (performance.now() - t0) / 1000;
  markAcked();
  let succeeded = 0;
  for (const [i, r] of runs.entries()) {
    const report = await readFile(join(reportDir, `dcmsend-${set.id}-${i}.txt`), 'utf8').catch(() => '');
    succeeded += Number(/with status SUCCESS\s*:\s*(\d+)/.exec(report)?.[1] ?? 0);
    await writeFile(join(reportDir, `dcmsend-${set.id}-${i}.log`), r.output);
    const last = r.output.trim().split('\n').slice(-2).join(' | ');
    if (r.aborted) res.errors.push(`dcmsend #${i} killed at the time limit`);
    // dcmsend -nh exits 0 even when nothing was stored; the report file's summary is what counts.
    else if (r.code !== 0 || (!report.includes('with status SUCCESS') && last)) res.errors.push(`dcmsend #${i} exited with code ${r.code}: ${last}`);
  }
  if (succeeded !== set.count) res.errors.push(`${succeeded} of ${set.count} C-STORE responses were Success`);
  const q = watch ? await watch : undefined;
  try {
    res.stored = await t.count(set);
  } catch (err) {
    res.errors.push(`count: ${(err as Error).message}`);
  }
  const ackOk = runs.every((r) => r.code === 0) && succeeded === set.count && (t.allQueryable !== undefined || res.stored === set.count);
  if (ackOk) res.ackSeconds = ackSeconds;
  if (q?.error) res.errors.push(q.error);
  if (t.allQueryable) {
    if (q?.seconds !== undefined && res.stored === set.count) res.queryableSeconds = q.seconds;
    else if (res.stored !== set.count) res.errors.push(`QIDO-RS shows ${res.stored ?? '?'} of ${set.count} instances`);
  } else if (ackOk) {
    res.queryableSeconds = ackSeconds;
  }
  return res;
}

function stowBody(files: string[], sizes: number[], boundary: string): { body: Readable; length: number } {
  const head = Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
  const crlf = Buffer.from('\r\n');
  const tail = Buffer.from(`--${boundary}--\r\n`);
  const length = sizes.reduce((a, s) => a + head.length + s + crlf.length, tail.length);
  async function* parts(): AsyncGenerator<Buffer> {
    for (const f of files) {
      yield head;
      for await (const chunk of createReadStream(f, { highWaterMark: 256 * 1024 })) yield chunk as Buffer;
      yield crlf;
    }
    yield tail;
  }
  return { body: Readable.from(parts(), { objectMode: false }), length };
}

/** One STOW-RS request, body streamed from the files with an exact Content-Length. */
function stowRequest(url: string, files: string[], sizes: number[], agent: Agent, signal: AbortSignal): Promise<{ status: number; body: string }> {
  const boundary = `portico-bench-${randomUUID()}`;
  const { body, length } = stowBody(files, sizes, boundary);
  return new Promise((res, rej) => {
    const req = httpRequest(url, {
      method: 'POST',
      agent,
      signal,
      headers: {
        'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        'content-length': String(length),
        accept: 'application/dicom+json',
      },
    });
    req.once('error', rej);
    req.once('response', (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.once('end', () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      r.once('error', rej);
    });
    pipeline(body, req).catch(rej);
  });
}

function seqLength(json: unknown, tag: string): number {
  const v = (json as Record<string, { Value?: unknown[] } | undefined> | null)?.[tag]?.Value;
  return Array.isArray(v) ? v.length : 0;
}

async function runStow(t: Running, set: InstanceSet, signal: AbortSignal): Promise<ScenarioResult> {
  const res: ScenarioResult = { errors: [], notes: [] };
  // Content-Length must be exact (a wrong one makes the server wait or cut the body): stat every file.
  const sizes = new Map<string, number>();
  for (const f of set.files) sizes.set(f, (await stat(f)).size);
  const batches: string[][] = [];
  for (let i = 0; i < set.files.length; i += STOW_BATCH) batches.push(set.files.slice(i, i + STOW_BATCH));
  const agent = new Agent({ keepAlive: true, maxSockets: STOW_IN_FLIGHT });
  let next = 0;
  let referenced = 0;
  let markAcked = (): void => undefined;
  const acked = new Promise<void>((r) => (markAcked = r));
  const t0 = performance.now();
  const watch = t.allQueryable ? watchQueryable(t, set, t0, acked, signal) : undefined;
  const lane = async (): Promise<void> => {
    while (next < batches.length && !signal.aborted) {
      const batch = batches[next++]!;
      try {
        const r = await stowRequest(
          t.stowUrl!,
          batch,
          batch.map((f) => sizes.get(f)!),
          agent,
          signal,
        );
        let json: unknown;
        try {
          json = JSON.parse(r.body);
        } catch {
          json = undefined;
        }
        const ok = seqLength(json, '00081199');
        const failed = seqLength(json, '00081198');
        referenced += ok;
        if (r.status !== 200) res.errors.push(`HTTP ${r.status} (${ok} referenced, ${failed} failed): ${r.body.slice(0, 200)}`);
        else if (ok !== batch.length) res.errors.push(`HTTP 200 but ${ok} of ${batch.length} in ReferencedSOPSequence, ${failed} in FailedSOPSequence`);
      } catch (err) {
        res.errors.push(`request failed: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: STOW_IN_FLIGHT }, lane));
  const ackSeconds = (performance.now() - t0) / 1000;
  markAcked();
  agent.destroy();
  const q = watch ? await watch : undefined;
  try {
    res.stored = await t.count(set);
  } catch (err) {
    res.errors.push(`count: ${(err as Error).message}`);
  }
  const ackOk = referenced === set.count && res.errors.length === 0 && (t.allQueryable !== undefined || res.stored === set.count);
  if (ackOk) res.ackSeconds = ackSeconds;
  if (q?.error) res.errors.push(q.error);
  if (t.allQueryable) {
    if (q?.seconds !== undefined && res.stored === set.count) res.queryableSeconds = q.seconds;
    else if (res.stored !== set.count) res.errors.push(`QIDO-RS shows ${res.stored ?? '?'} of ${set.count} instances`);
  } else if (ackOk) {
    res.queryableSeconds = ackSeconds;
  }
  if (res.errors.length > 5) res.errors.splice(5, res.errors.length - 5, `… ${res.errors.length - 5} more errors`);
  return res;
}

// ---------------------------------------------------------------------------------------------------
// The run.

interface TargetRecord {
  readonly def: TargetDef;
  startError?: string;
  startSeconds?: number;
  readonly notes: string[];
  readonly scenarios: Map<ScenarioId, ScenarioResult>;
  /** role → phase ('start-up' | scenario) → sample */
  readonly rss: Map<string, Map<string, RssSample>>;
  readonly porticoRoles: Set<string>;
  peakResetRefused?: boolean;
  /** role → scenario → CPU ms per instance (utime + stime), own and of descendants */
  readonly cpu: Map<string, Map<ScenarioId, { own: number; children: number }>>;
}

async function benchTarget(def: TargetDef, sets: Map<ScenarioId, InstanceSet>, root: string, timeoutMs: number): Promise<TargetRecord> {
  const rec: TargetRecord = { def, notes: [], scenarios: new Map(), rss: new Map(), porticoRoles: new Set(), cpu: new Map() };
  const dir = join(root, 'targets', def.name);
  await mkdir(dir, { recursive: true });
  log(`${def.label}: starting`);
  // Other work on the machine skews every figure; record how busy it was.
  const load = (): string =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' / ');
  const loadBefore = load();
  const t0 = performance.now();
  let running: Running;
  try {
    running = await def.start(dir, rec.notes);
  } catch (err) {
    rec.startError = (err as Error).message;
    log(`${def.label}: failed to start:\n${rec.startError}`);
    return rec;
  }
  rec.startSeconds = (performance.now() - t0) / 1000;
  log(`${def.label}: ready in ${rec.startSeconds.toFixed(1)} s`);
  const sample = (phase: string): void => {
    for (const m of running.measured) {
      if (m.portico) rec.porticoRoles.add(m.role);
      const byPhase = rec.rss.get(m.role) ?? new Map<string, RssSample>();
      byPhase.set(phase, samplePeak(m.pid));
      rec.rss.set(m.role, byPhase);
    }
  };
  sample('start-up');
  let hung: string | undefined;
  for (const id of SCENARIOS) {
    if (!def.scenarios.includes(id)) continue;
    if (hung) {
      rec.scenarios.set(id, { errors: [], notes: [], skipped: hung });
      continue;
    }
    const dead = running.procs.find((p) => !isRunning(p));
    if (dead) {
      rec.scenarios.set(id, { errors: [`not run: ${crashSummary(dead)}`], notes: [] });
      continue;
    }
    for (const m of running.measured) if (!resetPeak(m.pid)) rec.peakResetRefused = true;
    const cpuBefore = running.measured.map((m) => ({ own: cpuMsOf(m.pid), children: descendants(m.pid).reduce((n, c) => n + cpuMsOf(c), 0) }));
    const set = sets.get(id)!;
    log(`${def.label}: ${SCENARIO_LABEL[id]} (${set.count} instances)`);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs);
    const work = id === 'stow' ? runStow(running, set, ctl.signal) : runDimse(running, set, id === 'dimse1' ? 1 : 4, dir, ctl.signal);
    // Everything inside honours the signal; this outer bound only guards against a wait that does not.
    const hardLimit = sleep(timeoutMs + 30_000).then((): ScenarioResult => ({ errors: ['did not finish within the time limit'], notes: [] }));
    let result: ScenarioResult;
    try {
      result = await Promise.race([work, hardLimit]);
    } catch (err) {
      result = { errors: [(err as Error).message], notes: [] };
    }
    clearTimeout(timer);
    if (ctl.signal.aborted) {
      result.errors.unshift(`exceeded the ${timeoutMs / 1000} s limit`);
      hung = `${def.label} exceeded the time limit in "${SCENARIO_SHORT[id]}"`;
      ctl.abort();
    }
    for (const p of running.procs) {
      if (isRunning(p)) continue;
      const summary = crashSummary(p);
      if (!result.errors.some((e) => e.includes(summary))) result.errors.push(summary);
    }
    rec.scenarios.set(id, result);
    sample(id);
    for (const [i, m] of running.measured.entries()) {
      const own = cpuMsOf(m.pid) - cpuBefore[i]!.own;
      const children = descendants(m.pid).reduce((n, c) => n + cpuMsOf(c), 0) - cpuBefore[i]!.children;
      const byScenario = rec.cpu.get(m.role) ?? new Map<ScenarioId, { own: number; children: number }>();
      byScenario.set(id, { own: own / set.count, children: Math.max(0, children) / set.count });
      rec.cpu.set(m.role, byScenario);
    }
    const fmt = (s?: number): string => (s === undefined ? '—' : `${s.toFixed(2)} s (${(set.count / s).toFixed(1)} inst/s)`);
    log(
      `${def.label}: ${SCENARIO_SHORT[id]}: acknowledged ${fmt(result.ackSeconds)}, queryable ${fmt(result.queryableSeconds)}${result.errors.length ? `; errors: ${result.errors.join('; ')}` : ''}`,
    );
  }
  rec.notes.push(`${def.label}: load average (1/5/15 min) ${loadBefore} before start, ${load()} after the last scenario.`);
  log(`${def.label}: stopping`);
  for (const m of running.measured) {
    // VmHWM of a process that already exited cannot be read; say so rather than showing a blank.
    if (statusKb(m.pid, 'VmHWM') === undefined) rec.notes.push(`${m.role} had exited before the final RSS reading.`);
  }
  rec.notes.push(...(await running.stop()));
  // Free the disk as we go (the next target needs room for its own copies); logs stay until exit.
  if (!keepTmp) for (const sub of TARGET_DATA_DIRS) await rm(join(dir, sub), { recursive: true, force: true });
  return rec;
}

// ---------------------------------------------------------------------------------------------------
// Report.

const fmtRate = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const fmtRatio = (v: number): string => `${v.toFixed(2)}x`;
const mib = (kb?: number): string => (kb === undefined ? '—' : (kb / 1024).toFixed(0));

type Kind = 'ack' | 'queryable';

function seconds(rec: TargetRecord | undefined, id: ScenarioId, kind: Kind): number | undefined {
  const r = rec?.scenarios.get(id);
  return kind === 'ack' ? r?.ackSeconds : r?.queryableSeconds;
}

function cellStatus(rec: TargetRecord | undefined, id: ScenarioId): string {
  if (!rec) return '';
  if (!rec.def.scenarios.includes(id)) return 'n/a';
  if (rec.startError) return 'did not start';
  const r = rec.scenarios.get(id);
  if (!r) return 'not run';
  if (r.skipped) return 'skipped';
  return 'failed';
}

function renderReport(run: {
  started: Date;
  facts: Array<[string, string]>;
  records: TargetRecord[];
  sets: Map<ScenarioId, InstanceSet>;
  timeoutMs: number;
  tmpRoot: string;
  logsDir?: string;
}): string {
  const byName = new Map(run.records.map((r) => [r.def.name, r] as const));
  const anySet = [...run.sets.values()][0]!;
  const n = anySet.count;
  const mbPerSet = anySet.bytes / MB;
  const out: string[] = [];
  out.push(`# Portico ingest benchmark — ${run.started.toISOString()}`, '');
  out.push(
    `${n} CT instances per scenario (512x512, 16-bit, Explicit VR Little Endian, ${(anySet.bytes / n / 1024).toFixed(0)} KiB each, ${mbPerSet.toFixed(1)} MB per set); ` +
      'each scenario sends its own study. Throughput counts from the first byte sent; MB = 10^6 bytes of Part-10 file payload.',
    '',
  );
  out.push('## Machine', '', '| | |', '|---|---|', ...run.facts.map(([k, v]) => `| ${k} | ${v} |`), '');

  // Throughput.
  const cols = run.records.map((r) => r.def);
  const hasQueryable = run.records.some((r) => r.def.name.startsWith('portico'));
  const shapes = (['portico-standalone', 'portico-cluster'] as const).filter((s) => byName.has(s));
  const bases = (['orthanc', 'storescp'] as const).filter((b) => byName.has(b));
  const ratioCols: Array<{ shape: TargetName; base: TargetName; title: string }> = [];
  for (const s of shapes)
    for (const b of bases)
      ratioCols.push({ shape: s, base: b, title: `${s === 'portico-standalone' ? 'standalone' : 'cluster'} / ${b === 'orthanc' ? 'Orthanc' : 'storescp'}` });
  out.push('## Throughput', '');
  out.push(`| scenario | ${cols.map((c) => `${c.label} inst/s | ${c.label} MB/s`).join(' | ')}${ratioCols.map((r) => ` | ${r.title}`).join('')} |`);
  out.push(`|---|${cols.map(() => '--:|--:|').join('')}${ratioCols.map(() => '--:|').join('')}`);
  for (const id of SCENARIOS) {
    for (const kind of hasQueryable ? (['ack', 'queryable'] as const) : (['ack'] as const)) {
      const label = `${SCENARIO_SHORT[id]}${hasQueryable ? (kind === 'ack' ? ' — acknowledged' : ' — all queryable') : ''}`;
      const cells = cols.map((c) => {
        const rec = byName.get(c.name);
        if (kind === 'queryable' && c.name === 'storescp') return '— | —';
        const s = seconds(rec, id, kind);
        if (s === undefined) {
          const st = cellStatus(rec, id);
          return `${st} | ${st}`;
        }
        return `${fmtRate(n / s)} | ${fmtRate(mbPerSet / s)}`;
      });
      const ratios = ratioCols.map((rc) => {
        // Baselines are always their acknowledged time (Orthanc indexes before it acknowledges).
        const sp = seconds(byName.get(rc.shape), id, kind);
        const sb = seconds(byName.get(rc.base), id, 'ack');
        return sp === undefined || sb === undefined ? '—' : fmtRatio(sb / sp);
      });
      out.push(`| ${label} | ${cells.join(' | ')}${ratios.map((r) => ` | ${r}`).join('')} |`);
    }
  }
  out.push('');
  if (hasQueryable) {
    out.push(
      '"acknowledged": the client has every C-STORE response / STOW-RS response. "all queryable": QIDO-RS lists every instance of the set ' +
        '(Portico indexes in its worker after acknowledging; Orthanc indexes before acknowledging, so its row repeats the acknowledged figure; ' +
        'storescp has no index). Ratios are Portico ÷ baseline in instances/s.',
      '',
    );
  }

  // Details.
  out.push('## Details', '', '| target | scenario | acknowledged (s) | all queryable (s) | instances held | errors |', '|---|---|--:|--:|--:|---|');
  for (const rec of run.records) {
    if (rec.startError) {
      out.push(`| ${rec.def.label} | start | — | — | — | did not start: ${oneLine(rec.startError)} |`);
      continue;
    }
    for (const id of SCENARIOS) {
      if (!rec.def.scenarios.includes(id)) continue;
      const r = rec.scenarios.get(id);
      if (!r) continue;
      const err = r.skipped ? `skipped: ${r.skipped}` : r.errors.map(oneLine).join('; ');
      out.push(
        `| ${rec.def.label} | ${SCENARIO_SHORT[id]} | ${r.ackSeconds?.toFixed(2) ?? '—'} | ${r.queryableSeconds?.toFixed(2) ?? (rec.def.name === 'storescp' ? 'n/a' : '—')} | ${r.stored ?? '—'} | ${err} |`,
      );
    }
  }
  out.push('');

  // Peak RSS.
  out.push('## Peak RSS (MiB, VmHWM)', '');
  out.push(
    '| target | process | start-up | DIMSE 1 assoc | DIMSE 4 assoc | STOW-RS | peak | child processes (sum of peaks) |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  );
  for (const rec of run.records) {
    for (const [role, phases] of rec.rss) {
      const peak = Math.max(...[...phases.values()].map((s) => s.kb ?? 0));
      const childPeak = Math.max(...[...phases.values()].map((s) => s.childrenKb ?? 0));
      const cell = (p: string): string => (phases.has(p) ? mib(phases.get(p)!.kb) : 'n/a');
      out.push(
        `| ${rec.def.label} | ${role} | ${cell('start-up')} | ${cell('dimse1')} | ${cell('dimse4')} | ${cell('stow')} | **${mib(peak || undefined)}** | ${childPeak ? mib(childPeak) : '—'} |`,
      );
    }
  }
  out.push('');
  out.push(
    'Each scenario column is the peak during that scenario (VmHWM reset through /proc/<pid>/clear_refs before it). ' +
      'Orthanc is one process (plugin included). "child processes" sums the peaks of descendants (embedded PostgreSQL for Portico standalone), which over-counts shared memory.',
  );
  if (run.records.some((r) => r.peakResetRefused))
    out.push('', 'The kernel refused the VmHWM reset for some processes: their scenario columns are cumulative peaks.');
  out.push('');

  out.push('## CPU per instance (ms, utime + stime)', '');
  out.push('| target | process | DIMSE 1 assoc | DIMSE 4 assoc | STOW-RS | child processes (DIMSE 1 / 4 / STOW) |', '|---|---|--:|--:|--:|--:|');
  for (const rec of run.records) {
    for (const [role, byScenario] of rec.cpu) {
      const cell = (id: ScenarioId): string => (byScenario.has(id) ? byScenario.get(id)!.own.toFixed(1) : 'n/a');
      const kids = SCENARIOS.map((id) => byScenario.get(id)?.children);
      out.push(
        `| ${rec.def.label} | ${role} | ${cell('dimse1')} | ${cell('dimse4')} | ${cell('stow')} | ${kids.some((k) => k) ? kids.map((k) => (k === undefined ? 'n/a' : k.toFixed(1))).join(' / ') : '—'} |`,
      );
    }
  }
  out.push(
    '',
    'From the start of each scenario until the set was all acknowledged and (Portico) queryable, divided by the instances of the set; ' +
      'the load generator (dcmsend, the STOW-RS client) is not counted. Other work on the machine inflates these figures less than it does throughput.',
    '',
  );

  // Targets from the issue.
  if (shapes.length) {
    out.push(
      '## Targets (issue)',
      '',
      `| target | ${shapes.map((s) => (s === 'portico-standalone' ? 'standalone' : 'cluster')).join(' | ')} |`,
      `|---|${shapes.map(() => '---|').join('')}`,
    );
    const judge = (shape: TargetName, base: TargetName, ids: ScenarioId[], min: number, kind: Kind): string => {
      if (!byName.has(base)) return `not measured (${base} not in this run)`;
      const parts: string[] = [];
      let missed = false;
      let unmeasured = false;
      for (const id of ids) {
        const sp = seconds(byName.get(shape), id, kind);
        const sb = seconds(byName.get(base), id, 'ack');
        if (sp === undefined || sb === undefined) {
          parts.push(`${SCENARIO_SHORT[id]}: no figure`);
          unmeasured = true;
          continue;
        }
        const ratio = sb / sp;
        if (ratio < min) missed = true;
        parts.push(`${SCENARIO_SHORT[id]} ${fmtRatio(ratio)}`);
      }
      // One scenario under the bar is enough for "not met"; a missing figure alone only makes it unknown.
      const verdict = missed ? '**not met**' : unmeasured ? 'not measured' : '**met**';
      return `${verdict} (${parts.join(', ')})`;
    };
    const rows: Array<[string, (s: TargetName) => string]> = [
      ['DIMSE ingest ≥ 2.5x Orthanc (acknowledged)', (s) => judge(s, 'orthanc', ['dimse1', 'dimse4'], 2.5, 'ack')],
      ['DIMSE ingest ≥ 2.5x Orthanc (all queryable)', (s) => judge(s, 'orthanc', ['dimse1', 'dimse4'], 2.5, 'queryable')],
      ['DIMSE ingest ≥ 0.6x storescp (acknowledged)', (s) => judge(s, 'storescp', ['dimse1', 'dimse4'], 0.6, 'ack')],
      ['DIMSE ingest ≥ 0.6x storescp (all queryable)', (s) => judge(s, 'storescp', ['dimse1', 'dimse4'], 0.6, 'queryable')],
      ['STOW-RS ≥ 3x Orthanc (acknowledged)', (s) => judge(s, 'orthanc', ['stow'], 3, 'ack')],
      ['STOW-RS ≥ 3x Orthanc (all queryable)', (s) => judge(s, 'orthanc', ['stow'], 3, 'queryable')],
      [
        'Peak RSS ≤ 250 MB (each Portico process)',
        (s) => {
          const rec = byName.get(s)!;
          const peaks = [...rec.rss]
            .filter(([role]) => rec.porticoRoles.has(role))
            .map(([role, ph]) => [role, Math.max(...[...ph.values()].map((x) => x.kb ?? 0))] as const);
          if (!peaks.length || peaks.some(([, kb]) => kb === 0)) return 'not measured';
          const worst = Math.max(...peaks.map(([, kb]) => kb));
          return `${worst / 1024 <= 250 ? '**met**' : '**not met**'} (${peaks.map(([role, kb]) => `${role} ${mib(kb)} MiB`).join(', ')})`;
        },
      ],
    ];
    for (const [title, fn] of rows) out.push(`| ${title} | ${shapes.map((s) => (byName.get(s)?.startError ? 'did not start' : fn(s))).join(' | ')} |`);
    out.push('');
  }

  // Notes.
  out.push('## Notes', '');
  out.push(
    `- Load generator: dcmtk \`dcmsend -nh +sd +r\` (TCP_NODELAY=1), one process per association; STOW-RS from this script (Node http, bodies streamed from the files, exact Content-Length). ` +
      `Client and servers share the machine's ${os.availableParallelism()} CPUs.`,
    '- Durability differs: storescp writes files without fsync; Orthanc fsyncs each file (SyncStorageArea default) and indexes in SQLite before it answers; ' +
      'Portico answers once the bytes are in the object store and the ingest job is enqueued, and indexes in the worker afterwards.',
    '- dcmsend sends with the PDU size the receiver announces: storescp and Orthanc default to 16 KiB, Portico to 256 KiB (dcmsend caps at 128 KiB).',
    `- Per-scenario time limit ${run.timeoutMs / 1000} s; a target that exceeds it is reported failed and its remaining scenarios are skipped.`,
  );
  for (const rec of run.records) {
    if (rec.startSeconds !== undefined) out.push(`- ${rec.def.label}: started in ${rec.startSeconds.toFixed(1)} s.`);
    for (const note of rec.notes) out.push(`- ${note}`);
    for (const [id, r] of rec.scenarios) for (const note of r.notes) out.push(`- ${rec.def.label}, ${SCENARIO_SHORT[id]}: ${note}`);
  }
  if (run.logsDir) {
    out.push(`- Log paths above under ${run.tmpRoot}/targets/ were copied to ${relative(REPO, run.logsDir)}/ (the temp folder is removed at exit).`);
  }
  const failures = run.records.filter((r) => r.startError);
  if (failures.length) {
    out.push('', '## Start failures', '');
    for (const r of failures) out.push(`### ${r.def.label}`, '', '```', r.startError!, '```', '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function oneLine(s: string): string {
  return s
    .replace(/\s*\n\s*/g, ' ⏎ ')
    .replace(/\|/g, '\\|')
    .slice(0, 600);
}

function machineFacts(targets: readonly TargetName[]): Array<[string, string]> {
  const cpus = os.cpus();
  const tryText = (cmd: string, args: string[]): string => toolText(cmd, args, { requireSuccess: true });
  const facts: Array<[string, string]> = [
    ['CPU', `${cpus[0]?.model ?? '?'}; nproc ${os.availableParallelism()}`],
    ['memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['kernel', `${os.type()} ${os.release()}`],
    ['node', process.version],
    ['temp folder', `${os.tmpdir()} (${tryText('stat', ['-f', '-c', '%T', os.tmpdir()]).trim() || '?'})`],
    [
      'dcmtk',
      firstLine(tryText('dcmsend', ['--version']))
        .replace(/^\$dcmtk:\s*/, '')
        .replace(/\s*\$$/, '') || 'not found',
    ],
  ];
  if (targets.includes('orthanc')) {
    const orthanc = which('Orthanc');
    facts.push(['Orthanc', orthanc ? firstLine(tryText(orthanc, ['--version'])) : 'not found']);
    facts.push(['orthanc-dicomweb', tryText('dpkg-query', ['-W', '-f', '${Version}', 'orthanc-dicomweb']).trim() || '?']);
  }
  const commit = tryText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).trim();
  if (commit) {
    const dirty = tryText('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']).trim() ? ' (working tree modified)' : '';
    facts.push(['Portico commit', `${commit}${dirty}`]);
  }
  return facts;
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        instances: { type: 'string', default: '500' },
        only: { type: 'string' },
        'timeout-s': { type: 'string', default: '300' },
        'storescp-fork': { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const instances = Number(values.instances);
  const timeoutS = Number(values['timeout-s']);
  if (!Number.isInteger(instances) || instances < 4) {
    process.stderr.write('--instances must be an integer ≥ 4\n');
    return 2;
  }
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    process.stderr.write('--timeout-s must be a positive number\n');
    return 2;
  }
  const selected = values.only
    ? values.only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [...TARGETS];
  const unknown = selected.filter((s) => !(TARGETS as readonly string[]).includes(s));
  if (unknown.length) {
    process.stderr.write(`unknown target(s): ${unknown.join(', ')}; choose from ${TARGETS.join(', ')}\n`);
    return 2;
  }
  keepTmp = values.keep;
  const opts: Options = { storescpFork: values['storescp-fork'] };
  const all: Record<TargetName, TargetDef> = {
    storescp: storescpTarget(opts),
    orthanc: orthancTarget(),
    'portico-standalone': porticoStandaloneTarget(),
    'portico-cluster': porticoClusterTarget(),
  };
  const defs = TARGETS.filter((t) => selected.includes(t)).map((t) => all[t]);

  // Check every prerequisite first and name everything that is missing at once.
  log('checking tools');
  const missing: string[] = [];
  if (!which('dcmsend')) missing.push('dcmsend, the load generator (apt-get install dcmtk)');
  if (process.platform !== 'linux') missing.push('Linux (/proc is read for peak RSS)');
  const runnable: TargetName[] = [];
  for (const d of defs) {
    const m = await d.missing();
    if (m.length === 0) runnable.push(d.name);
    for (const x of m) missing.push(`${d.name}: ${x}`);
  }
  if (missing.length) {
    const hint = runnable.length && which('dcmsend') ? `Install them, or run the rest: --only ${runnable.join(',')}` : 'Install them (see bench/README.md).';
    process.stderr.write(`\nCannot run the benchmark; missing:\n${missing.map((m) => `  - ${m}`).join('\n')}\n\n${hint}\n`);
    return 2;
  }

  const started = new Date();
  const facts = machineFacts(defs.map((d) => d.name));
  tmpRoot = await mkdtemp(join(os.tmpdir(), 'portico-bench-'));
  // mkdtemp makes the folder 0700; as root, embedded PostgreSQL runs as the `postgres` user, which must be
  // able to traverse it to reach <dataDir>/pg (the data is synthetic, nothing secret).
  await chmod(tmpRoot, 0o755);
  if (keepTmp) log(`temp folder (kept): ${tmpRoot}`);
  log(`generating 3 x ${instances} instances`);
  const sets = new Map<ScenarioId, InstanceSet>();
  for (const id of SCENARIOS) sets.set(id, await generateSet(tmpRoot, id, instances));

  const records: TargetRecord[] = [];
  for (const d of defs) records.push(await benchTarget(d, sets, tmpRoot, timeoutS * 1000));

  const resultsDir = join(BENCH_DIR, 'results');
  const stamp = `ingest-${started.toISOString().slice(0, 19).replace(/:/g, '-')}Z`;
  await mkdir(resultsDir, { recursive: true });
  // The temp folder goes away at exit: keep the logs of every target that failed next to the report.
  const failedRecs = records.filter((r) => r.startError || [...r.scenarios.values()].some((s) => s.errors.length || s.skipped));
  let logsDir: string | undefined;
  if (failedRecs.length) {
    logsDir = join(resultsDir, `${stamp}-logs`);
    for (const r of failedRecs) {
      await cp(join(tmpRoot, 'targets', r.def.name), join(logsDir, r.def.name), {
        recursive: true,
        filter: (src) => !TARGET_DATA_DIRS.some((d) => src.endsWith(`/${d}`)),
      });
    }
  }
  const report = renderReport({ started, facts, records, sets, timeoutMs: timeoutS * 1000, tmpRoot, logsDir });
  process.stdout.write(`\n${report}`);
  const file = join(resultsDir, `${stamp}.md`);
  await writeFile(file, report);
  log(`report written to ${file}${logsDir ? `; logs of failed targets in ${logsDir}` : ''}`);
  const failed = failedRecs.length > 0;
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
