import { describe, expect, it } from 'vitest';
import { PdvCutter, datasetOffset } from './store-scu.ts';

/** Reassembles the data of P-DATA-TF PDUs with one PDV each; checks lengths and flags. */
function unpack(pieces: Buffer[][], pcId: number, max: number): { data: Buffer; lastFlags: boolean[] } {
  const parts: Buffer[] = [];
  const lastFlags: boolean[] = [];
  for (const p of pieces.map((list) => Buffer.concat(list))) {
    expect(p[0]).toBe(0x04);
    expect(p.readUInt32BE(2)).toBe(p.length - 6);
    expect(p.readUInt32BE(6)).toBe(p.length - 10);
    expect(p[10]).toBe(pcId);
    expect(p.length - 12).toBeLessThanOrEqual(max);
    lastFlags.push((p[11]! & 2) === 2);
    parts.push(p.subarray(12));
  }
  return { data: Buffer.concat(parts), lastFlags };
}

describe('PdvCutter', () => {
  it('cuts any chunking into PDUs of at most max data bytes, the last one flagged last', () => {
    const data = Buffer.from(Array.from({ length: 100_003 }, (_, i) => i % 251));
    for (const chunk of [1, 7, 4096, 16_378, 65_536, 200_000]) {
      const cutter = new PdvCutter(3, 16_378);
      const pdus: Buffer[][] = [];
      for (let i = 0; i < data.length; i += chunk) pdus.push(...cutter.push(data.subarray(i, i + chunk)));
      pdus.push(cutter.end());
      const { data: back, lastFlags } = unpack(pdus, 3, 16_378);
      expect(back.equals(data)).toBe(true);
      expect(lastFlags.filter(Boolean)).toHaveLength(1);
      expect(lastFlags.at(-1)).toBe(true);
      expect(pdus).toHaveLength(Math.ceil(data.length / 16_378));
    }
  });
  it('finds the data set after the File Meta group, and refuses what is not Part 10', () => {
    const head = Buffer.alloc(200);
    head.write('DICM', 128, 'latin1');
    head.writeUInt16LE(0x0002, 132);
    head.writeUInt16LE(0x0000, 134);
    head.writeUInt32LE(40, 140);
    expect(datasetOffset(head)).toBe(184);
    expect(() => datasetOffset(Buffer.alloc(200))).toThrow(/not a Part-10/);
  });
});
