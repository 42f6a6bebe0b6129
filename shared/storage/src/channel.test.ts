import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { ChunkChannel, flowingChunks } from './channel.ts';

async function drain(ch: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of ch) out.push(c);
  return out;
}

describe('ChunkChannel', () => {
  it('hands chunks over in order and without copying', async () => {
    const ch = new ChunkChannel(1024);
    const chunks = [Buffer.from('a'), Buffer.from('bc'), Buffer.from('def')];
    const got = drain(ch);
    for (const c of chunks) ch.write(c);
    ch.end();
    const out = await got;
    expect(out).toHaveLength(3);
    out.forEach((c, i) => expect(c).toBe(chunks[i]));
  });

  it('signals back-pressure above the high-water mark and releases it when the consumer catches up', async () => {
    const ch = new ChunkChannel(10);
    expect(ch.write(Buffer.alloc(6))).toBe(true);
    expect(ch.write(Buffer.alloc(6))).toBe(false);
    let drained = false;
    const wait = ch.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(drained).toBe(false);
    const it = ch[Symbol.asyncIterator]();
    await it.next();
    await wait;
    expect(drained).toBe(true);
  });

  it('fails the consumer on destroy and ignores later writes', async () => {
    const ch = new ChunkChannel();
    const got = drain(ch);
    ch.write(Buffer.from('x'));
    ch.destroy(new Error('aborted'));
    expect(ch.write(Buffer.from('y'))).toBe(true);
    await expect(got).rejects.toThrow('aborted');
  });

  it('closes when the consumer stops early, so the producer never waits forever', async () => {
    const ch = new ChunkChannel(4);
    const consumer = (async () => {
      for await (const _ of ch) break;
    })();
    ch.write(Buffer.alloc(8));
    await consumer;
    expect(ch.closed).toBe(true);
    await ch.drained();
  });

  it('drops consumed chunks while the producer stays ahead, so nothing is retained for the whole stream', async () => {
    const ch = new ChunkChannel(1 << 20);
    const it = ch[Symbol.asyncIterator]();
    const consumed: Buffer[] = [];
    ch.write(Buffer.alloc(16, 0));
    for (let i = 1; i <= 100; i++) {
      ch.write(Buffer.alloc(16, i)); // the queue never runs empty: one chunk always waits
      consumed.push((await it.next()).value as Buffer);
    }
    const queue = (ch as unknown as { queue: Buffer[] }).queue;
    expect(consumed.filter((c) => queue.includes(c))).toEqual([]);
  });
});

describe('flowingChunks', () => {
  it('yields the Buffers the Readable was given, not joined copies', async () => {
    const src = new PassThrough();
    const pushed = [Buffer.from('ab'), Buffer.from('cd'), Buffer.from('ef')];
    // All three are buffered before anyone reads: `for await` over the PassThrough would join them.
    for (const b of pushed) src.write(b);
    src.end();
    const got = await drain(flowingChunks(src));
    expect(got).toHaveLength(3);
    got.forEach((b, i) => expect(b).toBe(pushed[i]));
  });

  it('pauses the source while the consumer is behind and resumes it when it catches up', async () => {
    const src = new PassThrough();
    const it = flowingChunks(src, 4)[Symbol.asyncIterator]();
    src.write(Buffer.alloc(8));
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(true);
    await it.next();
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(false);
    src.end();
    expect((await it.next()).done).toBe(true);
  });

  it("fails the consumer with the source's error", async () => {
    const src = new PassThrough();
    const done = drain(flowingChunks(src));
    src.destroy(new Error('connection reset'));
    await expect(done).rejects.toThrow('connection reset');
  });

  it('reads and drops the rest when the consumer stops early', async () => {
    const src = new PassThrough();
    src.write(Buffer.from('x'));
    for await (const _ of flowingChunks(src)) break;
    src.write(Buffer.alloc(1 << 20));
    src.end();
    await new Promise((r) => src.once('end', r));
    expect(src.destroyed || src.readableEnded).toBe(true);
    expect(src.readableLength).toBe(0);
  });

  it('fails the consumer when the source closes before its end', async () => {
    const src = new PassThrough();
    const done = drain(flowingChunks(src));
    src.destroy();
    await expect(done).rejects.toThrow('closed before its end');
  });
});
