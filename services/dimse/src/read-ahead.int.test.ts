/**
 * ReadAhead on a real folder store: objects come back byte for byte whether read ahead into the ring or
 * streamed (too large, missing from the ring, changed since indexed, a store without positional reads),
 * and a buffer is reused only after its sub-operation was released.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { READ_AHEAD_DEPTH, READ_AHEAD_MAX_BYTES, ReadAhead } from './read-ahead.ts';

const root = mkdtempSync(path.join(tmpdir(), 'read-ahead-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function bytesOf(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array> | NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of source as AsyncIterable<Uint8Array>) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 251));

describe('ReadAhead', () => {
  it('reads ahead into a ring of reused buffers, and gives every object back as stored', async () => {
    const store = await openObjectStore({ kind: 'fs', root: path.join(root, 'a') });
    const items = [];
    for (let i = 0; i < 6; i++) {
      const body = pattern(300_000 + i * 1000, i);
      await store.put(`o/${i}.dcm`, body);
      items.push({ objectKey: `o/${i}.dcm`, objectSize: body.length, body });
    }
    const reads: string[] = [];
    const counting: Pick<ObjectStore, 'get' | 'openReader'> = {
      get: (key) => {
        reads.push(`stream ${key}`);
        return store.get(key);
      },
      openReader: (key) => {
        reads.push(`ring ${key}`);
        return store.openReader!(key);
      },
    };
    const ahead = new ReadAhead(counting);
    ahead.prefetch(items[0]!);
    const buffers = new Set<ArrayBufferLike>();
    for (const [i, item] of items.entries()) {
      for (const next of items.slice(i + 1, i + 1 + READ_AHEAD_DEPTH)) ahead.prefetch(next);
      const source = await ahead.get(item.objectKey);
      expect(Array.isArray(source)).toBe(true);
      buffers.add((source as Uint8Array[])[0]!.buffer);
      expect((await bytesOf(source)).equals(item.body)).toBe(true);
      await ahead.release(item.objectKey);
    }
    expect(reads.filter((r) => r.startsWith('stream'))).toEqual([]);
    expect(buffers.size).toBe(READ_AHEAD_DEPTH + 1);
  });

  it('streams what it did not read ahead: too large, not prefetched, changed since indexed, no positional reads', async () => {
    const store = await openObjectStore({ kind: 'fs', root: path.join(root, 'b') });
    const small = pattern(5000, 1);
    await store.put('s.dcm', small);
    const ahead = new ReadAhead(store);
    // Not prefetched.
    expect((await bytesOf(await ahead.get('s.dcm'))).equals(small)).toBe(true);
    // The index says another size: the ring copy is not used.
    ahead.prefetch({ objectKey: 's.dcm', objectSize: 4000 });
    const changed = await ahead.get('s.dcm');
    expect(Array.isArray(changed)).toBe(false);
    expect((await bytesOf(changed)).equals(small)).toBe(true);
    await ahead.release('s.dcm');
    // Larger than what is read ahead.
    ahead.prefetch({ objectKey: 's.dcm', objectSize: READ_AHEAD_MAX_BYTES + 1 });
    expect(Array.isArray(await ahead.get('s.dcm'))).toBe(false);
    // A store without positional reads (S3).
    const streamOnly = new ReadAhead({ get: (key) => store.get(key) });
    streamOnly.prefetch({ objectKey: 's.dcm', objectSize: small.length });
    expect((await bytesOf(await streamOnly.get('s.dcm'))).equals(small)).toBe(true);
  });

  it('a missing object fails when its turn comes, with the store error', async () => {
    const store = await openObjectStore({ kind: 'fs', root: path.join(root, 'c') });
    const ahead = new ReadAhead(store);
    ahead.prefetch({ objectKey: 'gone.dcm', objectSize: 10 });
    await expect(ahead.get('gone.dcm')).rejects.toMatchObject({ code: 'NotFound' });
    await ahead.release('gone.dcm');
  });
});
