import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { batches, checkDeclaredSize, chunksOf, discardBody, dropBytes, toParts } from './body.ts';

async function* fromChunks(chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const chunk of chunks) yield chunk;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** n bytes whose values encode their position, so a misplaced byte is caught. */
function bytes(n: number, from = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) % 251;
  return b;
}

function split(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    out.push(buf.subarray(at, at + size));
    at += size;
  }
  if (at < buf.length) out.push(buf.subarray(at));
  return out;
}

describe('toParts', () => {
  it('yields one empty last part for an empty body', async () => {
    const parts = await collect(toParts(fromChunks([]), 10));
    expect(parts).toEqual([{ data: Buffer.alloc(0), last: true }]);
  });

  it('keeps a body of exactly partSize as a single last part', async () => {
    const body = bytes(10);
    const parts = await collect(toParts(fromChunks(split(body, [3, 3, 3])), 10));
    expect(parts.map((p) => [p.data.length, p.last])).toEqual([[10, true]]);
    expect(parts[0]?.data).toEqual(body);
  });

  it.each([
    [
      25,
      [7, 7, 7],
      [
        [10, false],
        [10, false],
        [5, true],
      ],
    ],
    [
      20,
      [20],
      [
        [10, false],
        [10, true],
      ],
    ],
    [
      21,
      [1, 19, 1],
      [
        [10, false],
        [10, false],
        [1, true],
      ],
    ],
    [
      30,
      [30],
      [
        [10, false],
        [10, false],
        [10, true],
      ],
    ],
  ])('cuts %i bytes (chunks %j) into exact parts', async (n, sizes, expected) => {
    const body = bytes(n);
    const parts = await collect(toParts(fromChunks(split(body, sizes)), 10));
    expect(parts.map((p) => [p.data.length, p.last])).toEqual(expected);
    expect(Buffer.concat(parts.map((p) => p.data))).toEqual(body);
  });

  it('skips empty chunks', async () => {
    const parts = await collect(toParts(fromChunks([Buffer.alloc(0), bytes(3), Buffer.alloc(0)]), 10));
    expect(parts.map((p) => p.data.length)).toEqual([3]);
  });
});

describe('batches', () => {
  it('groups small chunks into batches of at least minBytes, in order, without copying', async () => {
    const body = bytes(100);
    const chunks = split(body, Array(20).fill(5) as number[]);
    const out = await collect(batches(fromChunks(chunks), 32));
    expect(out.map((batch) => batch.length)).toEqual([7, 7, 6]);
    expect(out.flat()[0]).toBe(chunks[0]);
    expect(Buffer.concat(out.flat())).toEqual(body);
  });

  it('yields a large chunk as a batch of its own', async () => {
    const big = bytes(100);
    expect(await collect(batches(fromChunks([big]), 32))).toEqual([[big]]);
  });
});

describe('dropBytes', () => {
  it('removes the first n bytes across chunk boundaries', () => {
    const body = bytes(20);
    const chunks = split(body, [5, 5, 5]);
    expect(Buffer.concat(dropBytes(chunks, 0))).toEqual(body);
    expect(Buffer.concat(dropBytes(chunks, 7))).toEqual(body.subarray(7));
    expect(Buffer.concat(dropBytes(chunks, 10))).toEqual(body.subarray(10));
    expect(dropBytes(chunks, 20)).toEqual([]);
  });
});

describe('chunksOf', () => {
  it('yields a Buffer body as is', async () => {
    const b = bytes(5);
    expect(await collect(chunksOf(b))).toEqual([b]);
  });

  it('turns strings and Uint8Arrays into Buffers', async () => {
    async function* mixed(): AsyncGenerator<Buffer | Uint8Array | string> {
      yield 'ab';
      yield new Uint8Array([1, 2]);
      yield Buffer.from('z');
    }
    const out = await collect(chunksOf(mixed()));
    expect(out.every((c) => Buffer.isBuffer(c))).toBe(true);
    expect(Buffer.concat(out)).toEqual(Buffer.from([0x61, 0x62, 1, 2, 0x7a]));
  });

  it('reads a Node Readable', async () => {
    const out = await collect(chunksOf(Readable.from([bytes(3), bytes(4, 3)])));
    expect(Buffer.concat(out)).toEqual(bytes(7));
  });

  it('propagates a source error', async () => {
    const source = new PassThrough();
    source.write(bytes(3));
    setImmediate(() => source.destroy(new Error('source broke')));
    await expect(collect(chunksOf(source))).rejects.toThrow('source broke');
  });
});

describe('discardBody', () => {
  it('destroys a stream without emitting an error', () => {
    const source = new PassThrough();
    discardBody(source);
    expect(source.destroyed).toBe(true);
    expect(source.errored).toBeNull();
  });
});

describe('checkDeclaredSize', () => {
  it('passes without a declared size', () => {
    expect(() => checkDeclaredSize('k', undefined, 5, true)).not.toThrow();
  });
  it('fails as soon as the body exceeds the declared size', () => {
    expect(() => checkDeclaredSize('k', 4, 3, false)).not.toThrow();
    expect(() => checkDeclaredSize('k', 4, 5, false)).toThrow(/declared size 4/);
  });
  it('fails at the end when the body is short', () => {
    expect(() => checkDeclaredSize('k', 4, 3, true)).toThrow(/declared size 4/);
    expect(() => checkDeclaredSize('k', 4, 4, true)).not.toThrow();
  });
});
