/**
 * Integration-test harness for this package (not used at run time): a fresh migrated database, a folder
 * object store, real job queues on BullMQ's PostgreSQL backend in that database, the real ingest worker
 * consuming them, and the app. Also corpus helpers.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type PorticoConfig } from '@portico/config';
import { migrate, openDb, type Db } from '@portico/db';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { createLogger, type Logger } from '@portico/logging';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { corpusDir, createTestDatabase, type TestDatabase } from '@portico/testing';
import { startWorker } from '@portico/worker';
import { buildApp } from './app.ts';
import { newBoundary, closeDelimiter, partHead } from './multipart.ts';

export interface Harness {
  readonly config: PorticoConfig;
  readonly log: Logger;
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly app: FastifyInstance;
  readonly objectsDir: string;
  /** Resolves when the instance table holds `n` rows (the worker indexed them), else rejects after timeoutMs. */
  waitForInstances(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(overrides: Record<string, unknown> = {}): Promise<Harness> {
  const testDb: TestDatabase = await createTestDatabase();
  const log = createLogger({ service: 'dicomweb-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'warn' });
  const db = openDb(testDb.url, { poolSize: 8 });
  await migrate(db);
  const objectsDir = await mkdtemp(join(tmpdir(), 'portico-dicomweb-'));
  const store = await openObjectStore({ kind: 'fs', root: objectsDir });
  const queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
  const workers: JobWorkers = await startWorker({ db, store, queues, log, concurrency: 4 });
  const config = loadConfig({ env: {}, overrides: { 'http.host': '127.0.0.1', 'http.port': 0, ...overrides } });
  const app = await buildApp({ config, log, db, store, queues });
  await app.ready();
  return {
    config,
    log,
    db,
    store,
    queues,
    app,
    objectsDir,
    async waitForInstances(n, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const res = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM instance');
        if (res.rows[0]!.n >= n) return;
        if (Date.now() > until) throw new Error(`only ${res.rows[0]!.n} of ${n} instances indexed after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      await app.close();
      await workers.close();
      await queues.close();
      await db.close();
      await testDb.drop();
      await rm(objectsDir, { recursive: true, force: true });
    },
  };
}

export interface CorpusFile {
  /** Path relative to the corpus folder, e.g. `objects/CT_small.dcm`. */
  readonly name: string;
  readonly path: string;
  readonly size: number;
}

/** Every file of the corpus (throws when the corpus is missing: tests fail, never skip). */
export async function corpusFiles(...folders: string[]): Promise<CorpusFile[]> {
  const root = corpusDir();
  const out: CorpusFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) await walk(p);
      else out.push({ name: relative(root, p), path: p, size: (await stat(p)).size });
    }
  };
  for (const f of folders) await walk(join(root, f));
  if (out.length === 0) throw new Error(`no corpus files under ${folders.join(', ')} in ${root}`);
  return out;
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** A STOW-RS body (whole, in memory: test sizes only) and its Content-Type. */
export function stowBody(
  parts: ReadonlyArray<Buffer | { contentType: string; body: Buffer }>,
  boundary = newBoundary(),
): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  parts.forEach((p, i) => {
    const { contentType, body } = Buffer.isBuffer(p) ? { contentType: 'application/dicom', body: p } : p;
    chunks.push(partHead(boundary, i, { 'Content-Type': contentType }), body);
  });
  chunks.push(closeDelimiter(boundary, parts.length));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** Splits a multipart/related response into its parts (headers lower-cased). */
export function parseMultipart(body: Buffer, contentType: string): Array<{ headers: Record<string, string>; body: Buffer }> {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) throw new Error(`no boundary in ${contentType}`);
  const delim = Buffer.from(`--${m[1]}`);
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const after = pos + delim.length;
    if (body[after] === 0x2d && body[after + 1] === 0x2d) break;
    const headerEnd = body.indexOf('\r\n\r\n', after);
    const headers: Record<string, string> = {};
    for (const line of body
      .subarray(after + 2, headerEnd)
      .toString('latin1')
      .split('\r\n')) {
      const c = line.indexOf(':');
      if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), headerEnd + 4);
    if (next < 0) throw new Error('unterminated part');
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    pos = next + 2;
  }
  return parts;
}
