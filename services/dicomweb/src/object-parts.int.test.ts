/**
 * writeObjectParts over real HTTP, on a real folder store (positional reads into the buffer ring) and a
 * real S3-protocol server (the stream fallback): byte-exact parts at the chunk-size edges, a client that
 * goes away mid-body, an object that vanished after the query.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { startS3, uniqueId } from '@portico/testing';
import { closeDelimiter, newBoundary, partHead } from './multipart.ts';
import { CHUNK_BYTES, openForSending, writeObjectParts } from './object-parts.ts';
import { parseMultipart } from './test-support.ts';

/** Sizes around the read size: empty, tiny, one short of a chunk, exactly one, one over, several. */
const SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5];

interface Backend {
  store: ObjectStore;
  teardown(): Promise<void>;
}

async function fsBackend(): Promise<Backend> {
  const root = await mkdtemp(join(tmpdir(), 'portico-parts-'));
  const store = await openObjectStore({ kind: 'fs', root });
  return { store, teardown: () => rm(root, { recursive: true, force: true }) };
}

async function s3Backend(): Promise<Backend> {
  const { stop, ...conn } = await startS3();
  const store = await openObjectStore({ kind: 's3', ...conn, bucket: uniqueId('portico-parts') });
  return {
    store,
    teardown: async () => {
      await store.close();
      await stop();
    },
  };
}

/** An HTTP server answering every request with the given objects as multipart parts; `done` settles per request. */
async function serve(
  store: ObjectStore,
  keys: readonly string[],
): Promise<{ url: string; boundary: string; results: Array<Promise<unknown>>; server: Server }> {
  const boundary = newBoundary();
  const results: Array<Promise<unknown>> = [];
  const server = createServer((_req, res: ServerResponse) => {
    const done = (async () => {
      const first = await openForSending(store, keys[0]!);
      res.writeHead(200, { 'content-type': `multipart/related; type="application/octet-stream"; boundary=${boundary}` });
      try {
        await writeObjectParts(
          res,
          store,
          {
            count: keys.length,
            keyOf: (i) => keys[i]!,
            headOf: (i) => partHead(boundary, i, { 'Content-Type': 'application/octet-stream' }),
            tail: closeDelimiter(boundary, keys.length),
          },
          first,
        );
      } catch (err) {
        res.destroy(err as Error);
        throw err;
      }
    })();
    done.catch(() => undefined);
    results.push(done);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, boundary, results, server };
}

const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

describe.each([
  ['folder store (positional reads, buffer ring)', fsBackend],
  ['S3 store (streams)', s3Backend],
])('writeObjectParts, %s', (_name, make) => {
  let b: Backend;
  const bodies = new Map<string, Buffer>();

  beforeAll(async () => {
    b = await make();
    for (const [i, size] of SIZES.entries()) {
      const key = `parts/edge-${i}.bin`;
      const bytes = randomBytes(size);
      bodies.set(key, bytes);
      await b.store.put(key, bytes);
    }
    for (let i = 0; i < 24; i++) {
      const key = `parts/big-${i}.bin`;
      const bytes = randomBytes(1024 * 1024);
      bodies.set(key, bytes);
      await b.store.put(key, bytes);
    }
  });

  afterAll(async () => {
    await b?.teardown();
  });

  it('sends every object byte-exact, in order, at every size around the read size', async () => {
    const keys = SIZES.map((_, i) => `parts/edge-${i}.bin`);
    const s = await serve(b.store, keys);
    try {
      const res = await fetch(s.url);
      const body = Buffer.from(await res.arrayBuffer());
      await s.results[0];
      const parts = parseMultipart(body, String(res.headers.get('content-type')));
      expect(parts.map((p) => p.body.length)).toEqual(SIZES);
      for (const [i, p] of parts.entries()) expect(p.body.equals(bodies.get(keys[i]!)!), keys[i]).toBe(true);
    } finally {
      s.server.close();
    }
  });

  it('stops and releases its objects when the client goes away mid-body', async () => {
    const keys = Array.from({ length: 24 }, (_, i) => `parts/big-${i}.bin`);
    const s = await serve(b.store, keys);
    try {
      const before = await openFds();
      const abort = new AbortController();
      const res = await fetch(s.url, { signal: abort.signal });
      const reader = res.body!.getReader();
      let received = 0;
      while (received < 3 * 1024 * 1024) received += (await reader.read()).value?.length ?? 0;
      abort.abort();
      // Resolves (does not hang waiting for a socket that is gone) without having sent everything.
      await expect(s.results[0]).resolves.toBeUndefined();
      expect(received).toBeLessThan(24 * 1024 * 1024);
      if (b.store.kind === 'fs') {
        // every file handle it opened (the current object and the one opened ahead) is closed again
        for (let i = 0; i < 50 && (await openFds()) > before; i++) await new Promise((r) => setTimeout(r, 20));
        expect(await openFds()).toBeLessThanOrEqual(before);
      }
    } finally {
      s.server.close();
    }
  });

  it('rejects with PROCESSING_FAILURE when an object vanished after the query; the body is cut', async () => {
    const key = `parts/gone-${uniqueId('x')}.bin`;
    await b.store.put(key, randomBytes(10));
    const keys = ['parts/edge-1.bin', 'parts/edge-2.bin', key, 'parts/edge-3.bin'];
    const s = await serve(b.store, keys);
    try {
      await b.store.delete(key);
      const res = await fetch(s.url);
      expect(res.status).toBe(200);
      await expect(res.arrayBuffer()).rejects.toThrow();
      const err = await s.results[0]!.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PorticoError);
      expect((err as PorticoError).code).toBe('PROCESSING_FAILURE');
    } finally {
      s.server.close();
    }
  });
});
