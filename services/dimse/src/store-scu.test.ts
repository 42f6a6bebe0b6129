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

describe('C-STORE command sets', () => {
  it('writes a C-STORE-RQ with its group length, and reads a C-STORE-RSP', async () => {
    const { storeCommand, parseStoreResponse } = await import('./store-scu.ts');
    const cmd = storeCommand({
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      sopInstanceUid: '1.2.3',
      messageId: 7,
      moveOriginator: { aeTitle: 'MOVESCU', messageId: 3 },
    });
    expect(cmd.readUInt32LE(8)).toBe(cmd.length - 12);
    const parsed = parseStoreResponse(Buffer.concat([cmd, el(0x0120, 7), el(0x0900, 0xb000)]));
    expect(parsed).toMatchObject({ commandField: 0x0001, messageIdBeingRespondedTo: 7, status: 0xb000 });
    expect(cmd.includes(Buffer.from('MOVESCU '))).toBe(true);
    expect(() => parseStoreResponse(cmd)).toThrow(/without status/);
  });
});

function el(element: number, value: number): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt16LE(0, 0);
  b.writeUInt16LE(element, 2);
  b.writeUInt32LE(2, 4);
  b.writeUInt16LE(value, 8);
  return b;
}
