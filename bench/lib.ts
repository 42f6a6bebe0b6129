/**
 * Helpers shared by the benchmarks (bench/ingest.ts, bench/forward.ts): child processes in their own
 * process groups and their cleanup, tools run to completion, readiness probes, peak RSS from /proc, the
 * cluster shape's PostgreSQL and Redis, and the progress log.
 *
 * Importing this module has no side effects; a benchmark calls installExitCleanup() once.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(BENCH_DIR, '..');
export const START_TIMEOUT_MS = 180_000; // a server (embedded PostgreSQL included) must be ready within this
export const STOP_GRACE_MS = 20_000; // SIGTERM, then SIGKILL of the process group
export const MB = 1e6; // throughput in MB = 10^6 bytes; RSS in MiB
export const CLUSTER_DB_URL = process.env['PORTICO_BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const CLUSTER_REDIS_URL = process.env['PORTICO_BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

// ---------------------------------------------------------------------------------------------------
// Child processes: each in its own process group, all killed when this process exits (also on Ctrl-C).

export interface Proc {
  readonly role: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export const children = new Set<ChildProcess>();
/** Run (bounded) after an interrupt, once every child process group is killed: drop databases, Redis keys. */
export const cleanups: Array<() => Promise<void>> = [];
let interrupted = false;

/** True once SIGINT or SIGTERM was received. */
export function wasInterrupted(): boolean {
  return interrupted;
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // group already gone
  }
}

/**
 * Kills every child process group when this process exits, then runs onExit (e.g. removing the temp
 * folder). On SIGINT / SIGTERM: SIGTERM to every child first so that servers clean up after themselves
 * (s3rver removes its folder, Portico stops its embedded PostgreSQL), SIGKILL to every process group after
 * 5 s (or, with waitForExit, as soon as every child has exited), then the cleanups (bounded), then exit
 * 130; the exit hook does the rest.
 */
export function installExitCleanup(opts: { stopping: string; waitForExit?: boolean; onExit?: () => void }): void {
  process.on('exit', () => {
    for (const child of children) killGroup(child, 'SIGKILL');
    opts.onExit?.();
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      interrupted = true;
      process.stderr.write(`\n${signal}: stopping ${opts.stopping} and cleaning up\n`);
      const alive = [...children];
      for (const c of alive) c.kill('SIGTERM');
      const exited = opts.waitForExit
        ? Promise.all(alive.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(undefined) : c.once('exit', r)))))
        : new Promise<never>(() => undefined);
      void Promise.race([exited, sleep(5000)])
        .then(() => {
          for (const c of alive) killGroup(c, 'SIGKILL');
          return Promise.race([Promise.allSettled(cleanups.map((c) => c())), sleep(5000)]);
        })
        .finally(() => process.exit(130));
    });
  }
}

/** Starts a long-running process in its own group, stdout and stderr appended to logFile; cwd defaults to the repository. */
export function startChild(role: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; logFile: string }): Proc {
  const fd = openSync(opts.logFile, 'a');
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? REPO, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  children.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('error', (err) => {
      writeFileSync(opts.logFile, `spawn ${cmd}: ${err.message}\n`, { flag: 'a' });
      children.delete(child);
      res({ code: null, signal: null });
    });
    child.once('exit', (code, signal) => {
      children.delete(child);
      res({ code, signal });
    });
  });
  return { role, child, logFile: opts.logFile, exited };
}

export function isRunning(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null && children.has(p.child);
}

/**
 * SIGTERM to the process itself (it stops its own children), then SIGKILL to its whole group. Returns a
 * note when it did not stop cleanly; with withLogError, a non-zero exit code note carries the first error
 * of its log.
 */
export async function stopProc(p: Proc, opts: { withLogError?: boolean } = {}): Promise<string | undefined> {
  let note: string | undefined;
  if (isRunning(p)) {
    p.child.kill('SIGTERM');
    const r = await Promise.race([p.exited, sleep(STOP_GRACE_MS).then(() => undefined)]);
    if (r === undefined) note = `${p.role} did not stop within ${STOP_GRACE_MS / 1000} s of SIGTERM; killed`;
    else if (r.code !== 0 && r.code !== null && r.code !== 143) {
      note = `${p.role} exited with code ${r.code} after SIGTERM${opts.withLogError ? `: ${logError(p.logFile)}` : ''}`;
    }
  }
  killGroup(p.child, 'SIGKILL');
  return note;
}

export function logTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The first error of a log in one line (the error line and the stack frame after it), else its last lines. */
export function logError(file: string): string {
  const lines = logTail(file, 400).split('\n');
  // "Error: …", "TypeError: …", pg's "error: …"; not pino JSON lines, stack frames or "Unhandled 'error' event".
  const i = lines.findIndex((l) => /^\s*(\w*Error|error)(:|\s\[)/.test(l));
  const picked = i >= 0 ? [lines[i], lines.slice(i + 1).find((l) => /^\s+at /.test(l))] : lines.slice(-3);
  return picked
    .filter((l): l is string => Boolean(l?.trim()))
    .map((l) => l.trim())
    .join(' ⏎ ')
    .slice(0, 800);
}

/** Why a process died, in one line: its exit status and the first error of its log. */
export function crashSummary(p: Proc): string {
  const status = p.child.exitCode !== null ? `code ${p.child.exitCode}` : `signal ${p.child.signalCode ?? '?'}`;
  return `${p.role} exited (${status}): ${logError(p.logFile)} (log ${p.logFile})`;
}

export interface ToolResult {
  code: number | null;
  output: string;
  aborted: boolean;
}

/** Runs a tool to completion (stdout and stderr captured, the last maxOutput characters, default 64 KiB); on abort its group is killed. */
export function runTool(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; signal: AbortSignal; maxOutput?: number }): Promise<ToolResult> {
  const max = opts.maxOutput ?? 65_536;
  return new Promise((res) => {
    let output = '';
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(child);
    const add = (b: Buffer): void => {
      output = (output + b.toString('utf8')).slice(-max);
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const onAbort = (): void => killGroup(child, 'SIGKILL');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    if (opts.signal.aborted) onAbort();
    const done = (code: number | null): void => {
      children.delete(child);
      opts.signal.removeEventListener('abort', onAbort);
      res({ code, output, aborted: opts.signal.aborted });
    };
    child.once('error', (err) => {
      output += `spawn ${cmd}: ${err.message}`;
      done(null);
    });
    child.once('close', (code) => done(code));
  });
}

/** PATH plus the sbin folders (Orthanc lives in /usr/sbin, which a non-root PATH often lacks). */
export function which(cmd: string): string | undefined {
  for (const d of [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!d) continue;
    try {
      accessSync(join(d, cmd), fsConstants.X_OK);
      return join(d, cmd);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Output (stdout then stderr) of a short synchronous command, '' when it cannot run (or, with
 * requireSuccess, exits non-zero); for version probes, never on the measured path.
 */
export function toolText(cmd: string, args: string[], opts: { requireSuccess?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error || (opts.requireSuccess && r.status !== 0)) return '';
  return `${r.stdout}${r.stderr}`;
}

// ---------------------------------------------------------------------------------------------------
// Small network helpers.

export async function httpStatus(url: string, timeoutMs = 2000): Promise<number> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

export function tcpOpen(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Waits until check() is true; fails early when one of procs exits, with the tail of its log. On timeout
 * the error holds the log tail of every proc (with logPaths, each headed by its log file).
 */
export async function waitReady(
  procs: Proc[],
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = START_TIMEOUT_MS,
  opts: { logPaths?: boolean } = {},
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const p of procs) {
      if (!isRunning(p)) {
        const r = await p.exited;
        throw new Error(`${p.role} exited (code ${r.code}, signal ${r.signal}) before ${what} was ready; log ${p.logFile}:\n${logTail(p.logFile)}`);
      }
    }
    if (await check()) return;
    if (performance.now() > deadline) {
      const tails = procs.map((p) => `--- ${p.role}${opts.logPaths ? ` (${p.logFile})` : ''}:\n${logTail(p.logFile)}`).join('\n');
      throw new Error(`${what} was not ready within ${timeoutMs / 1000} s\n${tails}`);
    }
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------------
// Peak RSS from /proc.

export interface RssSample {
  /** VmHWM of the process, KiB. */
  readonly kb?: number;
  /** Sum of VmHWM of its descendants (e.g. embedded PostgreSQL), KiB; over-counts shared memory. */
  readonly childrenKb?: number;
}

export function statusKb(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

export function descendants(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = byParent.get(ppid) ?? [];
      list.push(Number(name));
      byParent.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    for (const c of byParent.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/** VmHWM of a process and, unless withChildren is false, the sum of its descendants' (absent when none is readable). */
export function samplePeak(pid: number, withChildren = true): RssSample {
  const kids = withChildren ? descendants(pid).map((k) => statusKb(k, 'VmHWM')) : [];
  const known = kids.filter((v): v is number => v !== undefined);
  return { kb: statusKb(pid, 'VmHWM'), ...(known.length ? { childrenKb: known.reduce((a, b) => a + b, 0) } : {}) };
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL and Redis for the cluster shape.

export async function pgQuery<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null });
  r.on('error', () => undefined);
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------
// Progress on stderr.

/** A progress logger: `[tag hh:mm:ss] msg` on stderr; with quietWhenInterrupted, silent after SIGINT / SIGTERM. */
export function createLog(tag: string, opts: { quietWhenInterrupted?: boolean } = {}): (msg: string) => void {
  return (msg) => {
    if (opts.quietWhenInterrupted && interrupted) return;
    process.stderr.write(`[${tag} ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  };
}
