import { describe, expect, it } from 'vitest';
import { type PorticoError } from '@portico/errors';
import { parseFrameList, parseRange } from './wado-rs.ts';
import { realignBits } from '@portico/imaging';

describe('parseFrameList', () => {
  it('parses 1-based comma lists and refuses the rest', () => {
    expect(parseFrameList('1', 3)).toEqual([1]);
    expect(parseFrameList('3, 1,2', 3)).toEqual([3, 1, 2]);
    for (const [list, code] of [
      ['0', 'BAD_REQUEST'],
      ['1,,2', 'BAD_REQUEST'],
      ['x', 'BAD_REQUEST'],
      ['4', 'NOT_FOUND'],
    ] as const) {
      let err: unknown;
      try {
        parseFrameList(list, 3);
      } catch (e) {
        err = e;
      }
      expect((err as PorticoError).code, list).toBe(code);
    }
  });
});

describe('parseRange', () => {
  it('single byte ranges, suffix ranges; ignores what it cannot satisfy', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ start: 50, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBeNull();
    expect(parseRange('bytes=5-1', 100)).toBeNull();
    expect(parseRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(parseRange(undefined, 100)).toBeNull();
  });
});

describe('realignBits', () => {
  it('extracts a bit-packed 1-bit frame that starts inside a byte', () => {
    // three 3x3 frames (9 bits each) packed LSB first: frame 2 starts at bit 9 = byte 1, bit 1
    const frames = ['101100111', '010011010', '111000111'];
    const bitsAll = frames.join('');
    const packed = Buffer.alloc(Math.ceil(bitsAll.length / 8));
    [...bitsAll].forEach((b, i) => {
      if (b === '1') packed[i >> 3]! |= 1 << (i & 7);
    });
    const unpack = (buf: Buffer, n: number): string => Array.from({ length: n }, (_, i) => ((buf[i >> 3]! >> (i & 7)) & 1).toString()).join('');
    const frame2 = realignBits(packed.subarray(1), 1, 9);
    expect(frame2.length).toBe(2);
    expect(unpack(frame2, 9)).toBe(frames[1]);
    expect(frame2[1]! & 0xfe).toBe(0); // padding bits are zero
    expect(unpack(realignBits(packed.subarray(2), 2, 9), 9)).toBe(frames[2]);
  });
});
