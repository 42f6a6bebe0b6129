import { describe, expect, it } from 'vitest';
import { applyModality, colourToRgb, paletteToRgb, storedValues, toDisplay, windowFunction } from './lut.ts';
import { makeLut, type GreyscaleTransforms, type PixelModule } from './pixel-module.ts';

const mono = (over: Partial<PixelModule> = {}): PixelModule => ({
  rows: 1,
  columns: 4,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 12,
  highBit: 11,
  pixelRepresentation: 0,
  photometricInterpretation: 'MONOCHROME2',
  planarConfiguration: 0,
  numberOfFrames: 1,
  ...over,
});
const u16 = (...v: number[]): Uint8Array => {
  const b = Buffer.alloc(v.length * 2);
  v.forEach((x, i) => b.writeUInt16LE(x & 0xffff, i * 2));
  return b;
};
const none: GreyscaleTransforms = { rescaleSlope: 1, rescaleIntercept: 0, windows: [], voiLutFunction: 'LINEAR' };

describe('storedValues', () => {
  it('masks bits above Bits Stored and sign-extends two’s complement', () => {
    expect([...storedValues(u16(0xf001, 0x0fff, 0x0800, 0x07ff), mono())]).toEqual([1, 4095, 2048, 2047]);
    expect([...storedValues(u16(0x0fff, 0x0800, 0x07ff, 0), mono({ pixelRepresentation: 1 }))]).toEqual([-1, -2048, 2047, 0]);
  });
  it('shifts by High Bit when the stored bits are not at bit 0', () => {
    // Bits Stored 12, High Bit 15: values live in the top 12 bits
    expect([...storedValues(u16(0x0010, 0xfff0, 0, 0), mono({ highBit: 15 }))]).toEqual([1, 4095, 0, 0]);
  });
  it('unpacks 1-bit pixels least significant bit first', () => {
    expect([...storedValues(Uint8Array.of(0b0101), mono({ bitsAllocated: 1, bitsStored: 1, highBit: 0 }))]).toEqual([1, 0, 1, 0]);
  });
  it('keeps codec output deeper than Bits Stored instead of truncating it', () => {
    expect([...storedValues(u16(0x3fff, 0x4000, 0, 0), mono({ bitsStored: 14, highBit: 13 }), true)]).toEqual([0x3fff, 0x4000, 0, 0]);
  });
});

describe('windowFunction (PS3.3 §C.11.2.1.2)', () => {
  it('LINEAR: c=2048 w=4096 spans the range, ends clamp', () => {
    const f = windowFunction(2048, 4096);
    expect(f(-10)).toBe(0);
    expect(f(5000)).toBe(255);
    expect(f(2047.5)).toBeCloseTo(127.5, 5);
  });
  it('LINEAR with the standard’s thresholds: x <= c - 0.5 - (w-1)/2 is ymin', () => {
    const f = windowFunction(40, 400);
    expect(f(40 - 0.5 - 399 / 2)).toBe(0);
    expect(f(40 - 0.5 + 399 / 2 + 0.001)).toBe(255);
  });
  it('LINEAR_EXACT and SIGMOID', () => {
    expect(windowFunction(100, 50, 'LINEAR_EXACT')(100)).toBeCloseTo(127.5, 5);
    expect(windowFunction(100, 50, 'LINEAR_EXACT')(75)).toBe(0);
    expect(windowFunction(100, 50, 'SIGMOID')(100)).toBeCloseTo(127.5, 5);
    expect(windowFunction(100, 50, 'SIGMOID')(1000)).toBeCloseTo(255, 3);
  });
});

describe('modality and VOI stages', () => {
  it('rescale slope/intercept then the data set window', () => {
    const hu = applyModality(Int32Array.of(0, 1000, 1040, 3000), { rescaleSlope: 1, rescaleIntercept: -1024 });
    expect([...hu]).toEqual([-1024, -24, 16, 1976]);
    const out = toDisplay(hu, { ...none, windows: [{ center: 40, width: 400 }] }, 'MONOCHROME2');
    expect(out[0]).toBe(0);
    expect(out[3]).toBe(255);
    expect(out[2]).toBe(Math.round(windowFunction(40, 400)(16)));
  });
  it('a modality LUT table takes precedence over rescale', () => {
    const lut = makeLut([4, 10, 16], Buffer.from(u16(100, 200, 300, 400)))!;
    expect([...applyModality(Int32Array.of(5, 10, 12, 99), { rescaleSlope: 2, rescaleIntercept: 7, modalityLut: lut })]).toEqual([100, 100, 300, 400]);
  });
  it('the requested window wins; without any window the frame’s min/max is used', () => {
    const v = Float64Array.of(10, 20, 30, 40);
    expect([...toDisplay(v, none, 'MONOCHROME2')]).toEqual([0, 85, 170, 255]);
    expect([...toDisplay(v, { ...none, windows: [{ center: 0, width: 2 }] }, 'MONOCHROME2', { center: 25, width: 1000 })][0]).toBeGreaterThan(100);
  });
  it('MONOCHROME1 is inverted', () => {
    expect([...toDisplay(Float64Array.of(10, 40), none, 'MONOCHROME1')]).toEqual([255, 0]);
  });
  it('a constant frame without window renders black rather than dividing by zero', () => {
    expect([...toDisplay(Float64Array.of(7, 7), none, 'MONOCHROME2')]).toEqual([0, 0]);
  });
});

describe('colour', () => {
  const rgbModule = mono({ columns: 2, samplesPerPixel: 3, bitsAllocated: 8, bitsStored: 8, highBit: 7, photometricInterpretation: 'RGB' });
  it('planar configuration 1 is interleaved', () => {
    expect([...colourToRgb(Uint8Array.of(1, 2, 3, 4, 5, 6), rgbModule, 'RGB', 1)]).toEqual([1, 3, 5, 2, 4, 6]);
  });
  it('YBR_FULL grey stays grey, pure red round-trips', () => {
    expect([...colourToRgb(Uint8Array.of(128, 128, 128, 76, 85, 255), rgbModule, 'YBR_FULL', 0)]).toEqual([128, 128, 128, 254, 0, 0]);
  });
  it('native YBR_FULL_422 shares chroma between a pixel pair', () => {
    expect([...colourToRgb(Uint8Array.of(50, 200, 128, 128), rgbModule, 'YBR_FULL_422', 0)]).toEqual([50, 50, 50, 200, 200, 200]);
  });
  it('PALETTE COLOR maps through 16-bit tables', () => {
    const lut = (vals: number[]) => makeLut([2, 0, 16], Buffer.from(u16(...vals)))!;
    const out = paletteToRgb(Int32Array.of(0, 1), { red: lut([0xff00, 0]), green: lut([0, 0xff00]), blue: lut([0, 0x8000]) });
    expect([...out]).toEqual([255, 0, 0, 0, 255, 128]);
  });
  it('CMYK is refused with 406', () => {
    expect(() => colourToRgb(new Uint8Array(6), rgbModule, 'CMYK', 0)).toThrow(/cannot be rendered/);
  });
});
