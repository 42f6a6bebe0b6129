import { describe, expect, it } from 'vitest';
import { PduReader } from './pdu-reader.ts';

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function collect(chunks: Buffer[]): { pdus: Buffer[]; errors: Error[] } {
  const pdus: Buffer[] = [];
  const errors: Error[] = [];
  const r = new PduReader(
    (p) => pdus.push(Buffer.from(p)),
    (e) => errors.push(e),
  );
  for (const c of chunks) r.push(c);
  return { pdus, errors };
}

describe('PduReader', () => {
  const stream = Buffer.concat([
    pdu(0x01, Buffer.alloc(70, 1)),
    pdu(0x04, Buffer.alloc(300_000, 2)),
    pdu(0x04, Buffer.alloc(5, 3)),
    pdu(0x05, Buffer.alloc(4)),
  ]);
  const expected = [70, 300_000, 5, 4].map((n) => n + 6);

  it('splits a stream delivered in one chunk', () => {
    expect(collect([stream]).pdus.map((p) => p.length)).toEqual(expected);
  });

  it('gives the same PDUs for every chunking, down to single bytes', () => {
    for (const size of [1, 2, 5, 7, 6, 1000, 65536, 65535, 300_006]) {
      const chunks: Buffer[] = [];
      for (let o = 0; o < stream.length; o += size) chunks.push(stream.subarray(o, o + size));
      const { pdus } = collect(chunks);
      expect(Buffer.concat(pdus).equals(stream), `chunk size ${size}`).toBe(true);
      expect(pdus.map((p) => p.length)).toEqual(expected);
    }
  });

  it('hands P-DATA-TF PDUs on as views of the chunks they span when asked to, the others whole', () => {
    for (const size of [1, 7, 1000, 65536, 300_006]) {
      const pdus: Buffer[] = [];
      const types: string[] = [];
      const r = new PduReader(
        (p) => {
          types.push(`whole ${p[0]}`);
          pdus.push(Buffer.from(p));
        },
        (e) => {
          throw e;
        },
        (parts) => {
          types.push(`parts ${parts[0]![0]}`);
          pdus.push(Buffer.concat(parts));
        },
      );
      for (let o = 0; o < stream.length; o += size) r.push(stream.subarray(o, o + size));
      expect(Buffer.concat(pdus).equals(stream), `chunk size ${size}`).toBe(true);
      expect(types).toEqual(['whole 1', 'parts 4', 'parts 4', 'whole 5']);
      expect(r.pending).toBe(0);
    }
  });

  it('reports an unknown PDU type once and stops', () => {
    const { pdus, errors } = collect([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]), stream]);
    expect(pdus).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/unknown PDU type 0x89/);
  });
});
