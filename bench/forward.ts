#!/usr/bin/env node
/**
 * Store-and-forward benchmark (`make bench-forward`): C-STORE in with dcmsend, delivered to a dcmtk
 * `storescp` destination, as received and transcoded to JPEG 2000 lossless, side by side in one run for
 * Orthanc (Lua `OnStoredInstance` → `SendToModality`), Portico standalone and Portico cluster. See
 * bench/README.md.
 *
 * Design decisions:
 * - Every scenario starts its own server and its own destination storescp, fresh, on free loopback ports,
 *   with its own temp data folder, and stops them afterwards. So all scenarios can send the same generated
 *   set: no server has seen it before.
 * - The clock runs from the start of dcmsend until the destination folder holds a file for every SOP
 *   Instance UID of the set ("end to end"); the time dcmsend took (every C-STORE acknowledged) is recorded
 *   too. storescp writes a file once the whole data set is received; whether every file is complete and
 *   readable is checked afterwards with one dcmdump over all of them, which also reads their transfer
 *   syntax (as sent for "as received", 1.2.840.10008.1.2.4.90 for "transcoded").
 * - Orthanc 1.10 can only transcode with the codecs it is built with (DCMTK's, plus plugins such as
 *   GDCM); whether it can write JPEG 2000 is probed, not assumed: a scratch Orthanc is asked to transcode
 *   one instance (`/instances/{id}/modify` with `Transcode`). When it cannot, its transcoded scenario is
 *   reported n/a with Orthanc's answer. When it can, Orthanc transcodes at ingest (`IngestTranscoding`) and
 *   forwards the stored copy: the only way 1.10 sends a compressed syntax the source did not have.
 * - Peak RSS is VmHWM from /proc of every server process, read at the end of each scenario (each
 *   scenario has fresh processes, so no reset is needed). Portico standalone: the node process, and its
 *   descendants (embedded PostgreSQL) summed in a separate column.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { freePort, syntheticInstance, testUid } from '@portico/testing';
import {
  BENCH_DIR,
  REPO,
  MB,
  CLUSTER_DB_URL,
  CLUSTER_REDIS_URL,
  cleanups,
  installExitCleanup,
  startChild,
  isRunning,
  stopProc,
  logTail,
  runTool,
  which,
  toolText,
  httpStatus,
  tcpOpen,
  waitReady,
  samplePeak,
  pgQuery,
  withRedis,
  createLog,
  type Proc,
  type ToolResult,
  type RssSample,
} from './lib.ts';

/** The launcher, with the V8 flags Portico is measured with. */
const PORTICO_BIN = join(REPO, 'bin/portico');
const JPEG2000_LOSSLESS = '1.2.840.10008.1.2.4.90';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const POLL_MS = 50; // destination folder poll interval

const SCENARIOS = ['orthanc', 'orthanc-j2k', 'portico-standalone', 'portico-standalone-j2k', 'portico-cluster', 'portico-cluster-j2k'] as const;
type ScenarioId = (typeof SCENARIOS)[number];
type Mode = 'as-received' | 'j2k';

const HELP = `node bench/forward.ts [options]   (make bench-forward)

Store-and-forward throughput: dcmsend C-STORE of generated CT instances (512x512, 16-bit,
~513 KiB each) into the server, delivered to a dcmtk storescp destination, as received and
transcoded to JPEG 2000 lossless. Orthanc forwards with a Lua OnStoredInstance → SendToModality
script; Portico with routes.yml. Prints a Markdown report and writes it to
bench/results/forward-<date>.md.

Options:
  --instances N      instances in the set (default 500)
  --only LIST        comma-separated subset of:
                     ${SCENARIOS.join(', ')}
                     (a name selects that scenario; a word that is no name but starts
                     names selects those: --only portico)
  --timeout-s S      per-scenario limit from dcmsend start to the last file delivered (default 300)
  --keep             keep the temp folder (instances, data, destination files, logs)
  -h, --help         this help

Needs: dcmtk (dcmsend, storescp, dcmdump), orthanc; for portico-cluster PostgreSQL on
127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379 (override:
PORTICO_BENCH_DATABASE_URL, PORTICO_BENCH_REDIS_URL).
`;

let tmpRoot: string | undefined;
let keepTmp = false;
installExitCleanup({
  stopping: 'everything',
  onExit: () => {
    if (tmpRoot && !keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
  },
});
const log = createLog('forward');

/** Peak RSS of one server process (see samplePeak). */
interface ServerRss extends RssSample {
  readonly role: string;
}

// ---------------------------------------------------------------------------------------------------
// The instance set: one study, one series, N CT instances, Explicit VR Little Endian.

interface InstanceSet {
  readonly dir: string;
  readonly sopUids: ReadonlySet<string>;
  readonly count: number;
  readonly bytes: number;
}

async function generateSet(root: string, n: number): Promise<InstanceSet> {
  const dir = join(root, 'set');
  await mkdir(dir, { recursive: true });
  const studyInstanceUid = testUid('bench-forward-study', 1);
  const seriesInstanceUid = testUid('bench-forward-series', 1);
  const sopUids = new Set<string>();
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const sopInstanceUid = testUid('bench-forward-sop', i);
    const data = syntheticInstance({
      studyInstanceUid,
      seriesInstanceUid,
      sopInstanceUid,
      instanceNumber: i + 1,
      patientName: 'Bench^Forward',
      patientId: 'BENCH-FORWARD',
      seed: i + 1,
    });
    await writeFile(join(dir, `${String(i).padStart(5, '0')}.dcm`), data);
    sopUids.add(sopInstanceUid);
    bytes += data.length;
  }
  return { dir, sopUids, count: n, bytes };
}

// ---------------------------------------------------------------------------------------------------
// The destination: dcmtk storescp, one per scenario.

interface Destination {
  readonly proc: Proc;
  readonly port: number;
  readonly dir: string;
}

async function startDestination(dir: string): Promise<Destination> {
  const out = join(dir, 'dest');
  await mkdir(out, { recursive: true });
  const port = await freePort();
  const proc = startChild('storescp (destination)', 'storescp', ['+xa', '-od', out, '-aet', 'DEST', String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' },
    logFile: join(dir, 'storescp.log'),
  });
  await waitReady([proc], () => tcpOpen(port), 'the destination storescp', 30_000);
  return { proc, port, dir: out };
}

/** Files of the destination folder that belong to the set (storescp names them <modality>.<SOP Instance UID>). */
async function delivered(dest: Destination, set: InstanceSet): Promise<string[]> {
  const names = await readdir(dest.dir);
  return names.filter((n) => set.sopUids.has(n.slice(n.indexOf('.') + 1)));
}

// ---------------------------------------------------------------------------------------------------
// Servers.

interface Server {
  readonly procs: Proc[];
  /** Processes whose peak RSS is reported; withChildren: also sum its descendants (embedded PostgreSQL). */
  readonly measured: Array<{ role: string; pid: number; withChildren: boolean }>;
  readonly port: number;
  readonly aet: string;
  stop(): Promise<string[]>;
}

interface ScenarioDef {
  readonly id: ScenarioId;
  readonly system: 'Orthanc' | 'Portico standalone' | 'Portico cluster';
  readonly mode: Mode;
  /** What is missing on this machine (empty: ready to go). */
  missing(): Promise<string[]>;
  /** Why this scenario cannot be run meaningfully here (n/a), else undefined. */
  unsupported?(dir: string): Promise<string | undefined>;
  start(dir: string, dest: Destination, notes: string[]): Promise<Server>;
}

const ORTHANC_LUA = `-- Forward every stored instance to the destination (bench/forward.ts).
function OnStoredInstance(instanceId, tags, metadata, origin)
  SendToModality(instanceId, 'dest')
end
`;

async function startOrthanc(dir: string, extra: Record<string, unknown>, lua?: string): Promise<{ proc: Proc; base: string; dicomPort: number }> {
  const [dicomPort, httpPort] = [await freePort(), await freePort()];
  await mkdir(join(dir, 'storage'), { recursive: true });
  await mkdir(join(dir, 'index'), { recursive: true });
  const config: Record<string, unknown> = {
    Name: 'portico-bench-forward',
    StorageDirectory: join(dir, 'storage'),
    IndexDirectory: join(dir, 'index'),
    DicomAet: 'ORTHANC',
    DicomPort: dicomPort,
    HttpPort: httpPort,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: false,
    Plugins: [],
    ...extra,
  };
  if (lua !== undefined) {
    await writeFile(join(dir, 'forward.lua'), lua);
    config['LuaScripts'] = [join(dir, 'forward.lua')];
  }
  await writeFile(join(dir, 'orthanc.json'), JSON.stringify(config, null, 2));
  // Orthanc's DICOM server and SCU are DCMTK's dcmnet, which reads TCP_NODELAY like the dcmtk tools; without
  // it Nagle's algorithm costs ~50 ms per instance on loopback (see bench/README.md).
  const proc = startChild('Orthanc', which('Orthanc')!, [join(dir, 'orthanc.json')], {
    env: { ...process.env, TCP_NODELAY: '1' },
    logFile: join(dir, 'orthanc.log'),
  });
  const base = `http://127.0.0.1:${httpPort}`;
  await waitReady([proc], async () => (await httpStatus(`${base}/system`)) === 200 && (await tcpOpen(dicomPort)), 'Orthanc', 60_000);
  return { proc, base, dicomPort };
}

/**
 * Can this Orthanc write JPEG 2000 lossless? A scratch Orthanc is asked to transcode one instance of the set;
 * undefined when it can, else the reason (Orthanc's own answer).
 */
async function orthancJ2kUnsupported(dir: string, sample: string): Promise<string | undefined> {
  const probeDir = join(dir, 'probe');
  await mkdir(probeDir, { recursive: true });
  const o = await startOrthanc(probeDir, {});
  try {
    const up = await fetch(`${o.base}/instances`, { method: 'POST', body: await readFile(sample) });
    const { ID } = (await up.json()) as { ID: string };
    const r = await fetch(`${o.base}/instances/${ID}/modify`, {
      method: 'POST',
      body: JSON.stringify({ Transcode: JPEG2000_LOSSLESS, Keep: ['SOPInstanceUID'], Force: true }),
    });
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status === 200 && body.includes(Buffer.from(JPEG2000_LOSSLESS))) return undefined;
    const text = body.toString('utf8');
    let answer = text.replace(/\s+/g, ' ').slice(0, 200);
    try {
      answer = (JSON.parse(text) as { Details?: string }).Details ?? answer;
    } catch {
      // not JSON
    }
    const version = toolText(which('Orthanc')!, ['--version']).split('\n')[0]?.trim() ?? 'Orthanc';
    const plugins = (await (await fetch(`${o.base}/plugins`)).text()).replace(/\s+/g, '');
    return (
      `${version} cannot write JPEG 2000: \`POST /instances/{id}/modify\` with \`"Transcode": "${JPEG2000_LOSSLESS}"\` answered HTTP ${r.status} "${answer}". ` +
      `Its built-in transcoder has DCMTK's codecs (DCMTK has no JPEG 2000 encoder) and no transcoding plugin is loaded (\`GET /plugins\`: ${plugins}); ` +
      'JPEG 2000 would need the orthanc-gdcm plugin. Lua SendToModality has no transfer-syntax parameter, and Orthanc transcodes on C-STORE only to a syntax it can encode.'
    );
  } finally {
    await stopProc(o.proc);
  }
}

function orthancScenario(mode: Mode, sample: () => string): ScenarioDef {
  return {
    id: mode === 'j2k' ? 'orthanc-j2k' : 'orthanc',
    system: 'Orthanc',
    mode,
    missing: async () => (which('Orthanc') ? [] : ['Orthanc (apt-get install orthanc)']),
    ...(mode === 'j2k' ? { unsupported: (dir: string) => orthancJ2kUnsupported(dir, sample()) } : {}),
    async start(dir, dest, notes) {
      // SyncStorageArea (fsync per instance), ConcurrentJobs, thread counts, MaximumPduLength and
      // DicomScuTimeout stay at their defaults.
      const extra: Record<string, unknown> = { DicomModalities: { dest: ['DEST', '127.0.0.1', dest.port] } };
      if (mode === 'j2k') {
        extra['IngestTranscoding'] = JPEG2000_LOSSLESS;
        notes.push('Orthanc, transcoded: IngestTranscoding stores the JPEG 2000 copy and SendToModality forwards it.');
      }
      const o = await startOrthanc(dir, extra, ORTHANC_LUA);
      return {
        procs: [o.proc],
        measured: [{ role: 'Orthanc', pid: o.proc.child.pid!, withChildren: false }],
        port: o.dicomPort,
        aet: 'ORTHANC',
        async stop() {
          const note = await stopProc(o.proc);
          return note ? [note] : [];
        },
      };
    },
  };
}

function porticoEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTICO_')) env[k] = v;
  // Log level info: one "export batch done" line per batch, the record of where delivery time goes.
  return { ...env, PORTICO_LOG_LEVEL: 'info', PORTICO_HTTP_HOST: '127.0.0.1', PORTICO_DIMSE_HOST: '127.0.0.1', PORTICO_VIEWER_ENABLED: 'false', ...extra };
}

/** nodes.yml and routes.yml of a Portico scenario. */
async function writeRouting(dir: string, dest: Destination, mode: Mode): Promise<{ nodes: string; routes: string }> {
  const nodes = join(dir, 'nodes.yml');
  const routes = join(dir, 'routes.yml');
  await writeFile(
    nodes,
    [
      'nodes:',
      '  - { aeTitle: DCMSEND, host: 127.0.0.1, port: 104, services: [echo, store] }',
      `  - { aeTitle: DEST, host: 127.0.0.1, port: ${dest.port}, batchSize: 100, maxAssociations: 1 }`,
      '',
    ].join('\n'),
  );
  await writeFile(
    routes,
    mode === 'as-received'
      ? 'default: [DEST]\n'
      : ['default: []', 'rules:', '  - name: j2k', '    then:', '      - add: DEST', '        transcode: jpeg2000-lossless', ''].join('\n'),
  );
  return { nodes, routes };
}

async function porticoMissing(): Promise<string[]> {
  const r = await runTool(PORTICO_BIN, ['--help'], { signal: AbortSignal.timeout(60_000) });
  return r.code === 0 ? [] : [`a working Portico: \`bin/portico --help\` exited with code ${r.code}: ${r.output.trim().split('\n')[0] ?? ''}`];
}

function porticoStandaloneScenario(mode: Mode): ScenarioDef {
  return {
    id: mode === 'j2k' ? 'portico-standalone-j2k' : 'portico-standalone',
    system: 'Portico standalone',
    mode,
    missing: porticoMissing,
    async start(dir, dest) {
      const { nodes, routes } = await writeRouting(dir, dest, mode);
      const [httpPort, dimsePort, pgPort] = [await freePort(), await freePort(), await freePort()];
      const env = porticoEnv({
        PORTICO_DATA_DIR: join(dir, 'data'),
        PORTICO_HTTP_PORT: String(httpPort),
        PORTICO_DIMSE_PORT: String(dimsePort),
        PORTICO_EMBEDDED_PG_PORT: String(pgPort),
        PORTICO_NODES_FILE: nodes,
        PORTICO_ROUTES_FILE: routes,
      });
      const p = startChild('portico standalone', PORTICO_BIN, ['standalone'], { env, logFile: join(dir, 'portico.log') });
      const base = `http://127.0.0.1:${httpPort}`;
      await waitReady([p], async () => (await httpStatus(`${base}/readyz`)) === 200 && (await tcpOpen(dimsePort)), 'Portico standalone');
      return {
        procs: [p],
        measured: [{ role: 'portico standalone (node)', pid: p.child.pid!, withChildren: true }],
        port: dimsePort,
        aet: 'PORTICO',
        async stop() {
          const note = await stopProc(p);
          return note ? [note] : [];
        },
      };
    },
  };
}

function porticoClusterScenario(mode: Mode): ScenarioDef {
  return {
    id: mode === 'j2k' ? 'portico-cluster-j2k' : 'portico-cluster',
    system: 'Portico cluster',
    mode,
    async missing() {
      const m = await porticoMissing();
      await pgQuery(CLUSTER_DB_URL, 'SELECT 1').catch((err: unknown) =>
        m.push(`PostgreSQL at ${CLUSTER_DB_URL.replace(/:[^:@/]*@/, ':***@')} (${(err as Error).message}); set PORTICO_BENCH_DATABASE_URL`),
      );
      await withRedis(CLUSTER_REDIS_URL, (r) => r.ping()).catch((err: unknown) =>
        m.push(`Redis at ${CLUSTER_REDIS_URL} (${(err as Error).message}); set PORTICO_BENCH_REDIS_URL`),
      );
      return m;
    },
    async start(dir, dest, notes) {
      const id = `bench_fwd_${randomBytes(5).toString('hex')}`;
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
          const note = await stopProc(p);
          if (note) out.push(note);
        }
        await cleanup();
        return out;
      };
      try {
        await pgQuery(CLUSTER_DB_URL, `CREATE DATABASE ${pg.escapeIdentifier(id)}`);
        dbCreated = true;
        const { nodes, routes } = await writeRouting(dir, dest, mode);
        const common = {
          PORTICO_DATABASE_URL: dbUrl.toString(),
          PORTICO_REDIS_URL: CLUSTER_REDIS_URL,
          PORTICO_QUEUE_PREFIX: id,
          PORTICO_OBJECTS_DIR: join(dir, 'data', 'objects'),
          PORTICO_DATA_DIR: join(dir, 'data'),
          PORTICO_NODES_FILE: nodes,
          PORTICO_ROUTES_FILE: routes,
        };
        const migrate = await runTool(PORTICO_BIN, ['migrate'], { env: porticoEnv(common), signal: AbortSignal.timeout(120_000) });
        await writeFile(join(dir, 'migrate.log'), migrate.output);
        if (migrate.code !== 0)
          throw new Error(`portico migrate exited with code ${migrate.code}:\n${migrate.output.trim().split('\n').slice(-20).join('\n')}`);
        // Consumers first, the edge last (as the CLI does inside one process); own ports for every role.
        let dimsePort = 0;
        for (const role of ['export', 'worker', 'dimse'] as const) {
          const [http, dimse] = [await freePort(), await freePort()];
          if (role === 'dimse') dimsePort = dimse;
          const env = porticoEnv({ ...common, PORTICO_HTTP_PORT: String(http), PORTICO_DIMSE_PORT: String(dimse) });
          const p = startChild(`portico ${role}`, PORTICO_BIN, [role], { env, logFile: join(dir, `${role}.log`) });
          procs.push(p);
          // export and worker have no port to probe: their "portico ready" log line (level info) says it.
          await waitReady(
            procs,
            async () =>
              role === 'dimse'
                ? tcpOpen(dimse)
                : readFile(p.logFile, 'utf8').then(
                    (t) => t.includes('"portico ready"'),
                    () => false,
                  ),
            `portico ${role}`,
          );
        }
        notes.push(
          `Portico cluster: database ${id} on ${CLUSTER_DB_URL.replace(/:[^:@/]*@/, ':***@')}, Redis ${CLUSTER_REDIS_URL} prefix ${id}, folder object store shared by the roles; PostgreSQL and Redis are not in the RSS figures.`,
        );
        return {
          procs,
          measured: procs.map((p) => ({ role: p.role, pid: p.child.pid!, withChildren: false })),
          port: dimsePort,
          aet: 'PORTICO',
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
// One scenario.

interface ScenarioResult {
  readonly def: ScenarioDef;
  /** n/a: the reason the scenario cannot be run on this server. */
  na?: string;
  /** dcmsend start → every C-STORE acknowledged, seconds (set only when all were Success). */
  ackSeconds?: number;
  /** dcmsend start → first file of the set at the destination, seconds. */
  firstSeconds?: number;
  /** dcmsend start → every file of the set at the destination, seconds (set only when all arrived). */
  endSeconds?: number;
  delivered?: number;
  /** Transfer syntaxes of the delivered files, as dcmdump reads them, with counts. */
  syntaxes?: Map<string, number>;
  rss: ServerRss[];
  errors: string[];
  notes: string[];
}

async function syntaxesOf(files: string[]): Promise<{ counts: Map<string, number>; unreadable: number; output: string }> {
  const r = await runTool('dcmdump', ['-q', '-M', '-Un', '+P', '0002,0010', ...files], { signal: AbortSignal.timeout(300_000), maxOutput: 4_000_000 });
  const counts = new Map<string, number>();
  let read = 0;
  for (const m of r.output.matchAll(/\(0002,0010\) UI =?\[?([0-9.]+)/g)) {
    counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    read++;
  }
  return { counts, unreadable: files.length - read, output: r.output };
}

/** Warnings and errors in a server log: Portico's pino warn/error/fatal, Orthanc's E lines (it logs its start-up as W). */
function logProblems(file: string): { count: number; first?: string } {
  let lines: string[];
  try {
    lines = readFileSync(file, 'utf8').split('\n');
  } catch {
    return { count: 0 };
  }
  const bad = lines.filter((l) => /"level":("warn"|"error"|"fatal"|[456]0)/.test(l) || /^E\d{4} /.test(l));
  return { count: bad.length, ...(bad[0] ? { first: bad[0].slice(0, 400) } : {}) };
}

/** Portico's "export batch done" lines: how many batches, their sizes, any failed deliveries. */
function exportBatches(file: string): { batches: number; sizes: number[]; failed: number } {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // no log
  }
  const sizes: number[] = [];
  let failed = 0;
  for (const l of text.split('\n')) {
    if (!l.includes('"export batch done"')) continue;
    try {
      const j = JSON.parse(l) as { batch?: number; failed?: number };
      sizes.push(j.batch ?? 0);
      failed += j.failed ?? 0;
    } catch {
      // not JSON
    }
  }
  return { batches: sizes.length, sizes, failed };
}

async function runScenario(def: ScenarioDef, set: InstanceSet, root: string, timeoutMs: number): Promise<ScenarioResult> {
  const res: ScenarioResult = { def, rss: [], errors: [], notes: [] };
  const dir = join(root, 'runs', def.id);
  await mkdir(dir, { recursive: true });
  if (def.unsupported) {
    log(`${def.id}: probing whether ${def.system} can transcode to JPEG 2000 lossless`);
    try {
      const why = await def.unsupported(dir);
      if (why) {
        res.na = why;
        log(`${def.id}: n/a: ${why}`);
        return res;
      }
    } catch (err) {
      res.na = `the transcoding probe failed: ${(err as Error).message}`;
      return res;
    }
  }
  const load = (): string =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' / ');
  const loadBefore = load();
  let dest: Destination;
  let server: Server;
  try {
    dest = await startDestination(dir);
  } catch (err) {
    res.errors.push(`destination: ${(err as Error).message}`);
    return res;
  }
  try {
    log(`${def.id}: starting ${def.system}`);
    server = await def.start(dir, dest, res.notes);
  } catch (err) {
    res.errors.push(`start: ${(err as Error).message}`);
    await stopProc(dest.proc);
    return res;
  }
  log(`${def.id}: sending ${set.count} instances with dcmsend to ${server.aet}@${server.port}`);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const report = join(dir, 'dcmsend-report.txt');
  const t0 = performance.now();
  const send = runTool('dcmsend', ['-nh', '+sd', '+r', '-aet', 'DCMSEND', '-aec', server.aet, '127.0.0.1', String(server.port), set.dir, '+crf', report], {
    env: { ...process.env, TCP_NODELAY: '1' },
    signal: ctl.signal,
  }).then((r) => ({ ...r, seconds: (performance.now() - t0) / 1000 }));
  let sent: (ToolResult & { seconds: number }) | undefined;
  void send.then((r) => (sent = r));
  let got: string[] = [];
  let lastLog = performance.now();
  while (!ctl.signal.aborted) {
    got = await delivered(dest, set);
    const now = performance.now();
    if (got.length > 0 && res.firstSeconds === undefined) res.firstSeconds = (now - t0) / 1000;
    if (got.length >= set.count) {
      res.endSeconds = (now - t0) / 1000;
      break;
    }
    const dead = [...server.procs, dest.proc].find((p) => !isRunning(p));
    if (dead) {
      res.errors.push(`${dead.role} exited: ${logTail(dead.logFile, 5)}`);
      break;
    }
    if (now - lastLog > 5000) {
      lastLog = now;
      log(
        `${def.id}: ${got.length} of ${set.count} at the destination after ${((now - t0) / 1000).toFixed(1)} s${sent ? ` (dcmsend done in ${sent.seconds.toFixed(1)} s)` : ''}`,
      );
    }
    await sleep(POLL_MS);
  }
  // Peak RSS now, while every server process still runs.
  for (const m of server.measured) res.rss.push({ role: m.role, ...samplePeak(m.pid, m.withChildren) });
  const s = await send;
  clearTimeout(timer);
  res.delivered = got.length;
  if (ctl.signal.aborted) res.errors.push(`${got.length} of ${set.count} delivered within the ${timeoutMs / 1000} s limit`);
  // dcmsend -nh exits 0 even when nothing was stored; the report file's summary is what counts.
  const summary = await readFile(report, 'utf8').catch(() => '');
  const ok = Number(/with status SUCCESS\s*:\s*(\d+)/.exec(summary)?.[1] ?? 0);
  await writeFile(join(dir, 'dcmsend.log'), s.output);
  if (s.code === 0 && ok === set.count) res.ackSeconds = s.seconds;
  else res.errors.push(`dcmsend: exit code ${s.code}, ${ok} of ${set.count} C-STORE Success: ${s.output.trim().split('\n').slice(-2).join(' | ')}`);

  // Complete and readable, in the expected transfer syntax: one dcmdump over every delivered file.
  if (got.length > 0) {
    await sleep(300); // storescp may still be writing the last file
    const files = (await delivered(dest, set)).map((n) => join(dest.dir, n));
    const { counts, unreadable, output } = await syntaxesOf(files);
    res.syntaxes = counts;
    const want = def.mode === 'j2k' ? JPEG2000_LOSSLESS : EXPLICIT_LE;
    if (unreadable > 0)
      res.errors.push(`dcmdump could not read ${unreadable} of ${files.length} delivered files: ${output.split('\n').find((l) => /E:|error/i.test(l)) ?? ''}`);
    const wrong = [...counts].filter(([ts]) => ts !== want);
    if (wrong.length) res.errors.push(`delivered in ${wrong.map(([ts, n]) => `${ts} (${n})`).join(', ')}; expected ${want}`);
    if (def.mode === 'j2k' && files.length > 0) {
      // The issue's spot check, on a few files, as an operator would type it.
      const spot = await runTool('dcmdump', ['-M', '-Un', '+P', '0002,0010', ...files.slice(0, 3)], { signal: AbortSignal.timeout(60_000) });
      const lines = spot.output
        .split('\n')
        .map((l) => l.replace(/\s+#.*$/, '').trim())
        .filter(Boolean);
      res.notes.push(`${def.id}: \`dcmdump -M -Un +P 0002,0010\` on 3 delivered files: ${lines.join(' / ')}`);
    }
  }
  const logs = server.procs.map((p) => ({ p, problems: logProblems(p.logFile) }));
  for (const { p, problems } of logs) {
    if (problems.count)
      res.notes.push(`${def.id}: ${problems.count} warning/error lines in the ${p.role} log; first: \`${problems.first?.replace(/`/g, "'")}\``);
  }
  for (const p of server.procs.filter((x) => x.role.startsWith('portico'))) {
    const b = exportBatches(p.logFile);
    if (b.batches) {
      res.notes.push(
        `${def.id}: ${b.batches} export batches (sizes ${b.sizes.length > 12 ? `${b.sizes.slice(0, 12).join(', ')}, …` : b.sizes.join(', ')}), ${b.failed} failed deliveries`,
      );
    }
  }
  res.notes.push(`${def.id}: load average (1/5/15 min) ${loadBefore} before, ${load()} after.`);
  log(
    `${def.id}: ${got.length}/${set.count} delivered; dcmsend ${res.ackSeconds?.toFixed(2) ?? '—'} s, first at destination ${res.firstSeconds?.toFixed(2) ?? '—'} s, last ${res.endSeconds?.toFixed(2) ?? '—'} s${res.errors.length ? `; errors: ${res.errors.join('; ')}` : ''}`,
  );
  res.notes.push(...(await server.stop()));
  await stopProc(dest.proc);
  if (!keepTmp) for (const sub of ['dest', 'data', 'storage', 'index', 'probe']) await rm(join(dir, sub), { recursive: true, force: true });
  return res;
}

// ---------------------------------------------------------------------------------------------------
// Report.

const fmt = (v: number | undefined, digits = 1): string => (v === undefined ? '—' : v.toFixed(digits));
const mib = (kb?: number): string => (kb === undefined ? '—' : (kb / 1024).toFixed(0));

function renderReport(started: Date, set: InstanceSet, results: ScenarioResult[], facts: Array<[string, string]>, command: string): string {
  const L: string[] = [];
  const mbTotal = set.bytes / MB;
  L.push(`# Forward benchmark, ${started.toISOString().slice(0, 19)}Z`, '');
  L.push(
    `${set.count} CT instances (512x512, 16-bit, Explicit VR Little Endian, ${(set.bytes / set.count / 1024).toFixed(0)} KiB each, ${mbTotal.toFixed(1)} MB in all; ` +
      'pixels are pseudo-random noise, so JPEG 2000 lossless cannot shrink them), one `dcmsend` association into the server, delivered to a dcmtk `storescp +xa` ' +
      'destination (TCP_NODELAY=1 for every dcmtk tool and for Orthanc). End to end = dcmsend start → the last file at the destination.',
    '',
    `Command: \`${command}\``,
    '',
  );
  L.push('| scenario | end to end (s) | instances/s | MB/s | dcmsend (s) | first at destination (s) | delivered | transfer syntax | peak RSS (MiB) | result |');
  L.push('|---|--:|--:|--:|--:|--:|--:|---|---|---|');
  for (const r of results) {
    const name = `${r.def.system}, ${r.def.mode === 'j2k' ? 'transcoded to JPEG 2000 lossless' : 'as received'}`;
    if (r.na) {
      L.push(`| ${name} | n/a | n/a | n/a | — | — | — | — | — | n/a (see below) |`);
      continue;
    }
    const e = r.endSeconds;
    const ts = r.syntaxes ? [...r.syntaxes].map(([t, n]) => (r.syntaxes!.size > 1 ? `${t} (${n})` : t)).join(', ') : '—';
    const rss = r.rss.map((x) => `${x.role} ${mib(x.kb)}${x.childrenKb !== undefined ? ` + children ${mib(x.childrenKb)}` : ''}`).join('; ');
    L.push(
      `| ${name} | ${fmt(e, 2)} | ${e ? fmt(set.count / e) : '—'} | ${e ? fmt(mbTotal / e) : '—'} | ${fmt(r.ackSeconds, 2)} | ${fmt(r.firstSeconds, 2)} | ${r.delivered ?? '—'} of ${set.count} | ${ts} | ${rss || '—'} | ${r.errors.length ? 'FAILED' : 'ok'} |`,
    );
  }
  L.push('');
  const rate = (id: ScenarioId): number | undefined => {
    const r = results.find((x) => x.def.id === id);
    return r && !r.errors.length && r.endSeconds ? set.count / r.endSeconds : undefined;
  };
  const naOf = (id: ScenarioId): string | undefined => results.find((x) => x.def.id === id)?.na;
  L.push('| ratio (end-to-end instances/s) | value |', '|---|--:|');
  const ratioRows: Array<[string, ScenarioId, ScenarioId]> = [
    ['Portico standalone ÷ Orthanc, as received', 'portico-standalone', 'orthanc'],
    ['Portico standalone ÷ Orthanc, transcoded', 'portico-standalone-j2k', 'orthanc-j2k'],
    ['Portico cluster ÷ Orthanc, as received', 'portico-cluster', 'orthanc'],
    ['Portico cluster ÷ Orthanc, transcoded', 'portico-cluster-j2k', 'orthanc-j2k'],
    ['Portico standalone, transcoded ÷ as received', 'portico-standalone-j2k', 'portico-standalone'],
  ];
  for (const [label, a, b] of ratioRows) {
    if (!results.some((x) => x.def.id === a) || !results.some((x) => x.def.id === b)) continue;
    const [ra, rb] = [rate(a), rate(b)];
    L.push(`| ${label} | ${ra !== undefined && rb !== undefined ? `${(ra / rb).toFixed(2)}x` : naOf(b) || naOf(a) ? 'n/a' : '—'} |`);
  }
  L.push('');
  const [p, o] = [rate('portico-standalone'), rate('orthanc')];
  if (p !== undefined && o !== undefined) {
    L.push(`Target (issue): Portico ≥ 2x Orthanc, as received — **${p / o >= 2 ? 'met' : 'not met'}** (${(p / o).toFixed(2)}x, standalone).`, '');
  }
  const nas = results.filter((r) => r.na);
  if (nas.length) {
    L.push('## n/a', '');
    for (const r of nas) L.push(`- ${r.def.id}: ${r.na}`);
    L.push('');
  }
  const errs = results.filter((r) => r.errors.length);
  if (errs.length) {
    L.push('## Errors', '');
    for (const r of errs) for (const e of r.errors) L.push(`- ${r.def.id}: ${e.replace(/\s*\n\s*/g, ' ⏎ ').slice(0, 1500)}`);
    L.push('');
  }
  L.push('## Notes', '');
  for (const r of results) for (const n of r.notes) L.push(`- ${n}`);
  L.push(
    '- Peak RSS: VmHWM of each server process at the end of its scenario; Portico standalone adds its embedded PostgreSQL processes ("children", summed, shared memory counted more than once). The destination storescp and dcmsend are not counted.',
    '- Orthanc acknowledges a C-STORE after storing and indexing it; its Lua OnStoredInstance runs afterwards and SendToModality sends one instance per call. Portico acknowledges once the bytes are in the object store and the ingest job is queued; the worker indexes and routes, the export role sends batches of up to 100 instances of a study on one association.',
    '',
  );
  L.push('## Machine', '', '| | |', '|---|---|', ...facts.map(([k, v]) => `| ${k} | ${v} |`), '');
  return L.join('\n');
}

function machineFacts(): Array<[string, string]> {
  const cpus = os.cpus();
  const commit = toolText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).trim();
  const dirty = toolText('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']).trim() ? ' (working tree modified)' : '';
  return [
    ['CPU', `${cpus[0]?.model ?? '?'}; nproc ${os.availableParallelism()}`],
    ['memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['kernel', `${os.type()} ${os.release()}`],
    ['node', process.version],
    [
      'dcmtk',
      toolText('dcmsend', ['--version'])
        .split('\n')[0]
        ?.replace(/^\$dcmtk:\s*/, '')
        .replace(/\s*\$$/, '') ?? '?',
    ],
    ['Orthanc', which('Orthanc') ? (toolText(which('Orthanc')!, ['--version']).split('\n')[0]?.trim() ?? '?') : 'not found'],
    ['Portico commit', commit ? `${commit}${dirty}` : '?'],
  ];
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
  if (!Number.isInteger(instances) || instances < 1) {
    process.stderr.write('--instances must be a positive integer\n');
    return 2;
  }
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    process.stderr.write('--timeout-s must be a positive number\n');
    return 2;
  }
  const wanted = values.only
    ? values.only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [...SCENARIOS];
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s === w || s.startsWith(`${w}-`)));
  if (unknown.length) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}; choose from ${SCENARIOS.join(', ')}\n`);
    return 2;
  }
  // A scenario name selects that scenario; a word that is no name but starts names ("portico") selects those.
  const selected = SCENARIOS.filter((s) => wanted.some((w) => s === w || (!SCENARIOS.includes(w as ScenarioId) && s.startsWith(`${w}-`))));
  keepTmp = values.keep;

  let sampleFile = '';
  const all: Record<ScenarioId, ScenarioDef> = {
    orthanc: orthancScenario('as-received', () => sampleFile),
    'orthanc-j2k': orthancScenario('j2k', () => sampleFile),
    'portico-standalone': porticoStandaloneScenario('as-received'),
    'portico-standalone-j2k': porticoStandaloneScenario('j2k'),
    'portico-cluster': porticoClusterScenario('as-received'),
    'portico-cluster-j2k': porticoClusterScenario('j2k'),
  };
  const defs = selected.map((s) => all[s]);

  // Check every prerequisite first and name everything that is missing at once.
  log('checking tools');
  const missing = new Set<string>();
  for (const tool of ['dcmsend', 'storescp', 'dcmdump']) if (!which(tool)) missing.add(`${tool} (apt-get install dcmtk)`);
  if (process.platform !== 'linux') missing.add('Linux (/proc is read for peak RSS)');
  for (const d of defs) for (const m of await d.missing()) missing.add(`${d.id}: ${m}`);
  if (missing.size) {
    process.stderr.write(`\nCannot run the benchmark; missing:\n${[...missing].map((m) => `  - ${m}`).join('\n')}\n`);
    return 2;
  }

  const started = new Date();
  const facts = machineFacts();
  tmpRoot = await mkdtemp(join(os.tmpdir(), 'portico-bench-forward-'));
  // mkdtemp makes the folder 0700; as root, embedded PostgreSQL runs as the `postgres` user, which must be
  // able to traverse it to reach <dataDir>/pg (the data is synthetic, nothing secret).
  await chmod(tmpRoot, 0o755);
  if (keepTmp) log(`temp folder (kept): ${tmpRoot}`);
  log(`generating ${instances} instances`);
  const set = await generateSet(tmpRoot, instances);
  sampleFile = join(set.dir, (await readdir(set.dir))[0]!);

  const results: ScenarioResult[] = [];
  for (const d of defs) results.push(await runScenario(d, set, tmpRoot, timeoutS * 1000));

  const command = `node bench/forward.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const report = renderReport(started, set, results, facts, command);
  process.stdout.write(`\n${report}`);
  const resultsDir = join(BENCH_DIR, 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, `forward-${started.toISOString().slice(0, 19).replace(/:/g, '-')}Z.md`);
  await writeFile(file, report);
  log(`report written to ${file}`);
  return results.some((r) => r.errors.length) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
