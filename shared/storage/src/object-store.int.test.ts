/**
 * One contract, both implementations: a real folder in a temp dir, and a real S3-protocol server over
 * HTTP on loopback (`startS3()`: PORTICO_TEST_S3_ENDPOINT, else s3rver in this process).
 *
 * The S3 store runs with the smallest part size S3 allows (5 MiB) so the multi-MiB tests go through
 * multipart upload (initiate, parts, complete), which s3rver 3.7 implements; it does not implement abort
 * or listing uploads, which `put` does not need (abort is best-effort). Objects below 5 MiB take the single
 * PUT path.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client } from 'minio';
import { startS3, uniqueId } from '@portico/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from './index.ts';
import type { ObjectStore, S3ObjectStoreConfig } from './index.ts';

const MiB = 1024 * 1024;

// The test process runs without --expose-gc; setting the flag at run time and reading gc from a fresh
// context is the usual way to reach V8's gc() anyway.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const S3_PART_SIZE = 5 * MiB;

interface Backend {
  name: 'fs' | 's3';
  store: ObjectStore;
  /** Keys present under the store, including leftovers such as temp files. */
  leftovers(): Promise<string[]>;
  teardown(): Promise<void>;
}

async function fsBackend(): Promise<Backend> {
  const root = await mkdtemp(join(tmpdir(), 'portico-objects-'));
  const store = await openObjectStore({ kind: 'fs', root: join(root, 'objects') });
  return {
    name: 'fs',
    store,
    leftovers: async () =>
      (await readdir(join(root, 'objects'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)),
    teardown: async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function s3Backend(): Promise<Backend> {
  const { stop, ...conn } = await startS3();
  const cfg: S3ObjectStoreConfig = { kind: 's3', ...conn, bucket: uniqueId('portico-storage'), partSize: S3_PART_SIZE };
  const store = await openObjectStore(cfg);
  const client = new Client({ ...conn });
  return {
    name: 's3',
    store,
    leftovers: async () => {
      const names: string[] = [];
      for await (const item of client.listObjectsV2(cfg.bucket, '', true)) if (item.name) names.push(item.name);
      return names;
    },
    teardown: async () => {
      await store.close();
      await stop();
    },
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function sha256Of(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift), generated lazily in 64 KiB chunks, never held whole. */
async function* generated(total: number, onChunk: (sent: number) => void = () => undefined): AsyncGenerator<Buffer> {
  let x = 0x9e3779b9;
  for (let sent = 0; sent < total;) {
    const n = Math.min(64 * 1024, total - sent);
    const chunk = Buffer.allocUnsafe(Math.ceil(n / 4) * 4);
    for (let i = 0; i < chunk.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk.writeUInt32LE(x >>> 0, i);
    }
    sent += n;
    onChunk(sent);
    yield chunk.subarray(0, n);
  }
}

async function sha256OfGenerated(total: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of generated(total)) hash.update(chunk);
  return hash.digest('hex');
}

/** A stream that delivers `before` bytes, then fails. */
function failingAfter(before: number): PassThrough {
  const source = new PassThrough();
  void (async () => {
    for await (const chunk of generated(before)) {
      if (!source.write(chunk)) await new Promise((resolve) => source.once('drain', resolve));
    }
    source.destroy(new Error('sender went away'));
  })();
  return source;
}

const SAMPLE = Buffer.from('DICM'.repeat(1000)); // 4000 bytes

describe.each([
  ['fs', fsBackend],
  ['s3', s3Backend],
] as const)('ObjectStore contract: %s', (_name, makeBackend) => {
  let b: Backend;
  let store: ObjectStore;
  beforeAll(async () => {
    b = await makeBackend();
    store = b.store;
  });
  afterAll(async () => {
    await b?.teardown();
  });

  it('reports its kind', () => {
    expect(store.kind).toBe(b.name);
  });

  it('lists the objects directly under a prefix, with sizes and times', async () => {
    await store.put('listing/a.dcm', Buffer.alloc(10));
    await store.put('listing/b.dcm', Buffer.alloc(20));
    await store.put('listing/sub/c.dcm', Buffer.alloc(30));
    const found: Array<{ key: string; size: number; modified: Date }> = [];
    for await (const o of store.list('listing/')) found.push(o);
    expect(found.map((o) => [o.key, o.size]).sort()).toEqual([
      ['listing/a.dcm', 10],
      ['listing/b.dcm', 20],
    ]);
    for (const o of found) expect(Date.now() - o.modified.getTime()).toBeLessThan(60_000);
    const none: unknown[] = [];
    for await (const o of store.list('nothing-here/')) none.push(o);
    expect(none).toEqual([]);
  });

  it('puts a Buffer, then gets, stats and ranges it', async () => {
    const key = 'staging/3f2a9c1e-0d7b-4a57-9a43-5b0c8f1d2e3a.dcm';
    expect(await store.put(key, SAMPLE, { size: SAMPLE.length, contentType: 'application/dicom' })).toEqual({ size: 4000 });
    expect(await readAll(await store.get(key))).toEqual(SAMPLE);
    expect(await store.stat(key)).toEqual({ size: 4000 });
    expect(await readAll(await store.get(key, { start: 0, end: 0 }))).toEqual(SAMPLE.subarray(0, 1));
    expect(await readAll(await store.get(key, { start: 128, end: 131 }))).toEqual(SAMPLE.subarray(128, 132));
    expect(await readAll(await store.get(key, { start: 3990, end: 3999 }))).toEqual(SAMPLE.subarray(3990));
  });

  it('cuts a range that runs past the end to the last byte, and refuses one that starts past it', async () => {
    const key = 'range/past-end.bin';
    await store.put(key, SAMPLE);
    expect(await readAll(await store.get(key, { start: 3996, end: 10_000 }))).toEqual(SAMPLE.subarray(3996));
    await expect(store.get(key, { start: 4000, end: 4001 })).rejects.toMatchObject({ code: 'InvalidRange' });
    await expect(store.get(key, { start: 5, end: 4 })).rejects.toThrow(RangeError);
  });

  it('puts from a Node stream and from an async iterable, with and without a size', async () => {
    expect(await store.put('streams/readable.bin', Readable.from([SAMPLE.subarray(0, 1000), SAMPLE.subarray(1000)]))).toEqual({ size: 4000 });
    expect(await readAll(await store.get('streams/readable.bin'))).toEqual(SAMPLE);
    const gen = async function* (): AsyncGenerator<Buffer> {
      yield SAMPLE.subarray(0, 10);
      yield SAMPLE.subarray(10);
    };
    expect(await store.put('streams/iterable.bin', gen(), { size: 4000 })).toEqual({ size: 4000 });
    expect(await readAll(await store.get('streams/iterable.bin'))).toEqual(SAMPLE);
  });

  it('stores an empty object', async () => {
    expect(await store.put('empty/zero.bin', Buffer.alloc(0))).toEqual({ size: 0 });
    expect(await store.stat('empty/zero.bin')).toEqual({ size: 0 });
    expect(await readAll(await store.get('empty/zero.bin'))).toEqual(Buffer.alloc(0));
  });

  it('replaces an existing object', async () => {
    await store.put('replace/x.bin', Buffer.from('first version'));
    await store.put('replace/x.bin', Buffer.from('second'));
    expect((await readAll(await store.get('replace/x.bin'))).toString()).toBe('second');
  });

  it('handles concurrent puts into one new folder', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.${i}.dcm`);
    await Promise.all(keys.map((key, i) => store.put(key, Buffer.from(`instance ${i}`))));
    for (const [i, key] of keys.entries()) expect((await readAll(await store.get(key))).toString()).toBe(`instance ${i}`);
  });

  it('rejects NotFound for a missing object, and stat gives null', async () => {
    await expect(store.get('staging/missing.dcm')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(store.get('staging/missing.dcm', { start: 0, end: 1 })).rejects.toMatchObject({ code: 'NotFound' });
    expect(await store.stat('staging/missing.dcm')).toBeNull();
    expect(await store.stat('studies')).toBeNull(); // a folder / common prefix is not an object
  });

  it('moves, overwriting the target, and a retried move resolves', async () => {
    await store.put('staging/a.dcm', Buffer.from('new bytes'));
    await store.put('studies/9/series/9/instances/9.dcm', Buffer.from('old bytes'));
    await store.move('staging/a.dcm', 'studies/9/series/9/instances/9.dcm');
    expect(await store.stat('staging/a.dcm')).toBeNull();
    expect((await readAll(await store.get('studies/9/series/9/instances/9.dcm'))).toString()).toBe('new bytes');
    await store.move('staging/a.dcm', 'studies/9/series/9/instances/9.dcm');
    expect((await readAll(await store.get('studies/9/series/9/instances/9.dcm'))).toString()).toBe('new bytes');
  });

  it('moves into a folder that does not exist yet', async () => {
    await store.put('staging/b.dcm', SAMPLE);
    await store.move('staging/b.dcm', 'studies/7/series/8/instances/9.dcm');
    expect(await store.stat('studies/7/series/8/instances/9.dcm')).toEqual({ size: 4000 });
  });

  it('rejects NotFound moving when neither side exists, and keeps an object moved onto itself', async () => {
    await expect(store.move('staging/none.dcm', 'staging/none2.dcm')).rejects.toMatchObject({ code: 'NotFound' });
    await store.put('self/x.dcm', SAMPLE);
    await store.move('self/x.dcm', 'self/x.dcm');
    expect(await store.stat('self/x.dcm')).toEqual({ size: 4000 });
    await expect(store.move('self/none.dcm', 'self/none.dcm')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('copies, overwriting the target and keeping the source', async () => {
    await store.put('staging/c.dcm', SAMPLE);
    await store.put('studies/5/series/5/instances/5.dcm', Buffer.from('old bytes'));
    await store.copy('staging/c.dcm', 'studies/5/series/5/instances/5.dcm');
    await store.copy('staging/c.dcm', 'copies/new/folder/c.dcm');
    expect(await readAll(await store.get('studies/5/series/5/instances/5.dcm'))).toEqual(SAMPLE);
    expect(await readAll(await store.get('copies/new/folder/c.dcm'))).toEqual(SAMPLE);
    expect(await readAll(await store.get('staging/c.dcm'))).toEqual(SAMPLE);
    await store.copy('staging/c.dcm', 'staging/c.dcm');
    expect(await store.stat('staging/c.dcm')).toEqual({ size: 4000 });
    await expect(store.copy('staging/none.dcm', 'copies/none.dcm')).rejects.toMatchObject({ code: 'NotFound' });
    expect(await store.stat('copies/none.dcm')).toBeNull();
    expect((await b.leftovers()).filter((k) => k.includes('.tmp'))).toEqual([]);
  });

  it('deletes, and deleting a missing object resolves', async () => {
    await store.put('delete/x.dcm', SAMPLE);
    await store.delete('delete/x.dcm');
    expect(await store.stat('delete/x.dcm')).toBeNull();
    await store.delete('delete/x.dcm');
    await store.delete('delete/never/existed.dcm');
  });

  it('answers ping', async () => {
    await store.ping();
  });

  it.each(['../escape.dcm', '/etc/passwd', 'staging/../../escape', 'a//b', 'a/./b', '', 'a\\b'])('rejects the key %j everywhere', async (key) => {
    const invalid = { code: 'InvalidKey' };
    await expect(store.put(key, SAMPLE)).rejects.toMatchObject(invalid);
    await expect(store.get(key)).rejects.toMatchObject(invalid);
    await expect(store.stat(key)).rejects.toMatchObject(invalid);
    await expect(store.move(key, 'ok/x')).rejects.toMatchObject(invalid);
    await expect(store.move('ok/x', key)).rejects.toMatchObject(invalid);
    await expect(store.delete(key)).rejects.toMatchObject(invalid);
  });

  it('destroys a stream body it rejects before reading', async () => {
    const source = new PassThrough();
    await expect(store.put('../bad', source)).rejects.toMatchObject({ code: 'InvalidKey' });
    expect(source.destroyed).toBe(true);
  });

  it('calls onVisible once, when the whole object reads back under its key, before put resolves', async () => {
    const key = 'staging/6d1f0c2b-visible.dcm';
    const seen: Array<Buffer | null> = [];
    let resolvedBeforeVisible = false;
    let resolved = false;
    const reads: Array<Promise<void>> = [];
    const put = store
      .put(key, Readable.from([SAMPLE.subarray(0, 1000), SAMPLE.subarray(1000)]), {
        onVisible: () => {
          resolvedBeforeVisible ||= resolved;
          reads.push(
            store.get(key).then(
              async (s) => void seen.push(await readAll(s)),
              () => void seen.push(null),
            ),
          );
        },
      })
      .then((r) => {
        resolved = true;
        return r;
      });
    expect(await put).toEqual({ size: SAMPLE.length });
    await Promise.all(reads);
    expect(resolvedBeforeVisible).toBe(false);
    expect(seen).toEqual([SAMPLE]);
  });

  it('does not call onVisible, and leaves nothing, when the body fails', async () => {
    let visible = 0;
    await expect(store.put('staging/failing-visible.dcm', failingAfter(64 * 1024), { onVisible: () => visible++ })).rejects.toThrow('sender went away');
    expect(visible).toBe(0);
    expect(await store.stat('staging/failing-visible.dcm')).toBeNull();
  });

  it('leaves no object when the declared size does not match the body', async () => {
    await expect(store.put('size/short.bin', SAMPLE, { size: 4001 })).rejects.toThrow(/declared size 4001/);
    await expect(store.put('size/long.bin', Readable.from([SAMPLE, SAMPLE]), { size: 4000 })).rejects.toThrow(/declared size 4000/);
    expect(await store.stat('size/short.bin')).toBeNull();
    expect(await store.stat('size/long.bin')).toBeNull();
  });

  it('leaves no object, and no temp file, when the source stream fails half-way (small body)', async () => {
    await expect(store.put('fail/small.dcm', failingAfter(256 * 1024))).rejects.toThrow('sender went away');
    expect(await store.stat('fail/small.dcm')).toBeNull();
    expect((await b.leftovers()).filter((k) => k.includes('fail'))).toEqual([]);
  });

  it('leaves no object when the source fails after several parts, and keeps the previous version', async () => {
    await store.put('fail/big.dcm', Buffer.from('previous version'));
    await expect(store.put('fail/big.dcm', failingAfter(12 * MiB + 123))).rejects.toThrow('sender went away');
    expect((await readAll(await store.get('fail/big.dcm'))).toString()).toBe('previous version');
    expect((await b.leftovers()).filter((k) => k.includes('fail'))).toEqual([expect.stringMatching(/fail.big\.dcm$/)]);
  });

  it('streams a lazily generated 20 MiB body with little memory, and reads it back intact', async () => {
    const total = 20 * MiB;
    const expected = await sha256OfGenerated(total);
    // Collect garbage before each sample, so the numbers show what put holds, not what V8 has yet to free.
    // V8 releases ArrayBuffer memory shortly after a GC, hence the pause before the baseline.
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
    const base = process.memoryUsage();
    let peakRss = 0;
    let peakLive = 0;
    const result = await store.put(
      'big/20mib.dcm',
      generated(total, (sent) => {
        if (sent % MiB !== 0) return;
        gc();
        const now = process.memoryUsage();
        peakRss = Math.max(peakRss, now.rss - base.rss);
        peakLive = Math.max(peakLive, now.heapUsed + now.arrayBuffers - base.heapUsed - base.arrayBuffers);
      }),
    );
    expect(result).toEqual({ size: total });
    console.info(`[${b.name}] 20 MiB put: peak RSS +${(peakRss / MiB).toFixed(1)} MiB, peak heap+buffers +${(peakLive / MiB).toFixed(1)} MiB`);
    // Holding the body would add >= 20 MiB of buffers (checked by setting a 64 MiB batch / part size).
    // fs holds <= 1 MiB of chunks; S3 one 5 MiB part, two while one is assembled (and s3rver, in this
    // process, counts too). RSS is the looser check: freed memory is reused, so it mostly shows leaks.
    expect(peakLive).toBeLessThan(b.name === 'fs' ? 6 * MiB : 16 * MiB);
    expect(peakRss).toBeLessThan(24 * MiB);
    expect(await store.stat('big/20mib.dcm')).toEqual({ size: total });
    expect(await sha256Of(await store.get('big/20mib.dcm'))).toBe(expected);
    const tail = await readAll(await store.get('big/20mib.dcm', { start: total - 10, end: total - 1 }));
    expect(tail.length).toBe(10);
  });
});

describe('fs store specifics', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'portico-objects-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates the root folder, and ping fails once it is gone or not a folder', async () => {
    const store = await openObjectStore({ kind: 'fs', root: join(root, 'a', 'b') });
    await store.ping();
    await rm(join(root, 'a', 'b'), { recursive: true });
    await expect(store.ping()).rejects.toThrow();
    await writeFile(join(root, 'a', 'b'), 'not a folder');
    await expect(store.ping()).rejects.toThrow(/not a folder/);
  });

  it('keeps keys inside the root: the key maps to the same relative path', async () => {
    const store = await openObjectStore({ kind: 'fs', root: join(root, 'objects') });
    await store.put('studies/1/series/2/instances/3.dcm', SAMPLE);
    const files = await readdir(join(root, 'objects'), { recursive: true });
    expect(files).toContain(join('studies', '1', 'series', '2', 'instances', '3.dcm'));
  });

  it('openReader: positional reads into the caller buffer, short at the end, NotFound when missing', async () => {
    const store = await openObjectStore({ kind: 'fs', root: join(root, 'reader') });
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    await store.put('r/one.bin', bytes);
    const reader = await store.openReader!('r/one.bin');
    const buf = Buffer.alloc(600);
    expect(await reader.read(buf, 600, 0)).toBe(600);
    expect(buf.equals(bytes.subarray(0, 600))).toBe(true);
    expect(await reader.read(buf, 600, 600)).toBe(400);
    expect(buf.subarray(0, 400).equals(bytes.subarray(600))).toBe(true);
    expect(await reader.read(buf, 10, 995)).toBe(5);
    expect(await reader.read(buf, 600, 1000)).toBe(0);
    await reader.close();
    await expect(store.openReader!('r/missing.bin')).rejects.toMatchObject({ code: 'NotFound' });
  });
});

describe('s3 store specifics', () => {
  let s3: Awaited<ReturnType<typeof startS3>>;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('creates a missing bucket, keeps keys under the prefix, and ping fails once the bucket is gone', async () => {
    const { stop: _stop, ...conn } = s3;
    const bucket = uniqueId('portico-prefix');
    const store = await openObjectStore({ kind: 's3', ...conn, bucket, prefix: '/tenant-a/' });
    const whole = await openObjectStore({ kind: 's3', ...conn, bucket });
    await store.put('staging/x.dcm', SAMPLE);
    expect(await whole.stat('tenant-a/staging/x.dcm')).toEqual({ size: 4000 });
    expect(await whole.stat('staging/x.dcm')).toBeNull();
    await store.move('staging/x.dcm', 'studies/1/x.dcm');
    expect(await whole.stat('tenant-a/studies/1/x.dcm')).toEqual({ size: 4000 });
    await store.ping();

    await whole.delete('tenant-a/studies/1/x.dcm');
    await new Client({ ...conn }).removeBucket(bucket);
    await expect(store.ping()).rejects.toThrow(/does not exist/);
    await store.close();
    await whole.close();
  });

  it('opening fails when the endpoint does not answer', async () => {
    const { stop: _stop, ...conn } = s3;
    await expect(openObjectStore({ kind: 's3', ...conn, port: 9, bucket: uniqueId('portico-down') })).rejects.toThrow();
  });
});
