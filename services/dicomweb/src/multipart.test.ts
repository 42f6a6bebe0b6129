import { describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { closeDelimiter, partHead, readMultipart, type IncomingPart } from './multipart.ts';

function build(boundary: string, parts: Array<{ headers: Record<string, string>; body: Buffer }>): Buffer {
  const chunks = parts.flatMap((p, i) => [partHead(boundary, i, p.headers), p.body]);
  return Buffer.concat([...chunks, closeDelimiter(boundary, parts.length)]);
}

/** Feeds `buf` in chunks of `size` bytes. */
async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function collect(source: AsyncIterable<Uint8Array>, boundary: string, maxBytes = 1e9) {
  const bodies: Array<Promise<{ headers: IncomingPart['headers']; bytes: Buffer }>> = [];
  const result = await readMultipart(source, { boundary, maxBytes, highWaterMark: 1024 }, (part) => {
    bodies.push(
      (async () => {
        const chunks: Buffer[] = [];
        for await (const c of part.body) chunks.push(c as Buffer);
        return { headers: part.headers, bytes: Buffer.concat(chunks) };
      })(),
    );
    bodies.at(-1)!.catch(() => undefined);
  });
  return { result, parts: await Promise.allSettled(bodies) };
}

describe('readMultipart / partHead', () => {
  const a = Buffer.alloc(100_000, 1);
  const b = Buffer.from('\r\n--notTheBoundary\r\nsecond part with CRLF inside\r\n');
  const body = build('XyZ', [
    { headers: { 'Content-Type': 'application/dicom' }, body: a },
    { headers: { 'content-type': 'application/dicom', 'X-Extra': 'v' }, body: b },
  ]);

  for (const size of [1, 2, 3, 7, 64, 4096, body.length]) {
    it(`round-trips parts byte-exactly when fed ${size}-byte chunks`, async () => {
      const { result, parts } = await collect(chunked(body, size), 'XyZ');
      expect(result).toEqual({ parts: 2, bytes: body.length, complete: true });
      const [p1, p2] = parts.map((p) => (p.status === 'fulfilled' ? p.value : undefined));
      expect(p1!.bytes.equals(a)).toBe(true);
      expect(p2!.bytes.equals(b)).toBe(true);
      expect(p2!.headers['x-extra']).toBe('v');
      expect(p1!.headers['content-type']).toBe('application/dicom');
    });
  }

  it('survives any chunking (seeded fuzz over split points)', async () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const small = build('bnd-42', [
      { headers: { 'Content-Type': 'application/dicom', 'Content-Location': 'x' }, body: Buffer.from('first\r\n--bnd-4 not it') },
      { headers: { 'Content-Type': 'application/dicom' }, body: Buffer.from('') },
      { headers: { 'Content-Type': 'application/dicom' }, body: Buffer.from('third-') },
    ]);
    for (let round = 0; round < 300; round++) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < small.length;) {
        const n = 1 + rand(12);
        pieces.push(small.subarray(i, i + n));
        i += n;
      }
      const { result, parts } = await collect(
        (async function* () {
          yield* pieces;
        })(),
        'bnd-42',
      );
      expect(result).toMatchObject({ parts: 3, complete: true });
      const values = parts.map((p) => (p.status === 'fulfilled' ? [p.value.headers['content-type'], p.value.bytes.toString()] : ['rejected']));
      expect(values).toEqual([
        ['application/dicom', 'first\r\n--bnd-4 not it'],
        ['application/dicom', ''],
        ['application/dicom', 'third-'],
      ]);
    }
  });

  it('skips a preamble and ignores the epilogue', async () => {
    const withExtras = Buffer.concat([Buffer.from('preamble text\r\n'), body, Buffer.from('epilogue')]);
    const { result, parts } = await collect(chunked(withExtras, 333), 'XyZ');
    expect(result.parts).toBe(2);
    expect(parts.every((p) => p.status === 'fulfilled')).toBe(true);
  });

  it('a body cut before the close delimiter: earlier parts complete, the unfinished one errors', async () => {
    const cut = body.subarray(0, body.length - 30);
    const { result, parts } = await collect(chunked(cut, 1000), 'XyZ');
    expect(result.complete).toBe(false);
    expect(parts[0]!.status).toBe('fulfilled');
    expect(parts[1]!.status).toBe('rejected');
  });

  it('PAYLOAD_TOO_LARGE while streaming, the current part destroyed', async () => {
    await expect(collect(chunked(body, 1000), 'XyZ', 50_000)).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });

  it('a wrong boundary finds no parts', async () => {
    const { result } = await collect(chunked(body, 1000), 'other');
    expect(result.parts).toBe(0);
  });

  it('applies back-pressure: a slow reader holds the source', async () => {
    let pulled = 0;
    const big = build('b', [{ headers: { 'Content-Type': 'application/dicom' }, body: Buffer.alloc(1_000_000) }]);
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < big.length; i += 10_000) {
        pulled += 1;
        yield big.subarray(i, i + 10_000);
      }
    }
    let part: IncomingPart | undefined;
    const done = readMultipart(source(), { boundary: 'b', maxBytes: 1e9, highWaterMark: 16_384 }, (p) => {
      part = p;
    });
    await new Promise((r) => setTimeout(r, 50));
    // nothing reads the part: the reader must have stopped pulling after filling the part buffer
    expect(pulled).toBeLessThan(10);
    let n = 0;
    for await (const c of part!.body) n += (c as Buffer).length;
    await done;
    expect(n).toBe(1_000_000);
  });

  it('partHead/closeDelimiter framing', () => {
    expect(partHead('b', 0, { 'Content-Type': 'x/y' }).toString()).toBe('--b\r\nContent-Type: x/y\r\n\r\n');
    expect(partHead('b', 1, {}).toString()).toBe('\r\n--b\r\n\r\n');
    expect(closeDelimiter('b', 2).toString()).toBe('\r\n--b--\r\n');
    expect(closeDelimiter('b', 0).toString()).toBe('--b--\r\n');
  });

  it('BAD_REQUEST for malformed part headers', async () => {
    const bad = Buffer.from('--b\r\nno colon here\r\n\r\nbody\r\n--b--\r\n');
    const err = await collect(chunked(bad, 100), 'b').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PorticoError);
    expect((err as PorticoError).code).toBe('BAD_REQUEST');
  });
});
