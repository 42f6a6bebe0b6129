/**
 * From decoded pixel samples to 8-bit display values: stored value extraction, Modality LUT (rescale or
 * table), VOI LUT (window with its function, table, or the frame's min/max), MONOCHROME1 inversion, and
 * colour conversions (YBR_FULL, YBR_FULL_422, PALETTE COLOR, planar configuration). Pure functions over
 * typed arrays; one frame at a time.
 * @see PS3.3 §C.7.6.3.1 (Image Pixel), §C.11.1 (Modality LUT), §C.11.2.1.2 (window functions)
 * @see PS3.4 §N.2 (grayscale pipeline)
 */
import { PorticoError } from '@portico/errors';
import type { GreyscaleTransforms, Lut, PaletteLuts, PixelModule, VoiFunction } from './pixel-module.ts';

/** A window requested by the client (the `window` parameter of PS3.18 §8.3.5.1.4, WADO-URI windowCenter/Width). */
export interface WindowRequest {
  readonly center: number;
  readonly width: number;
  readonly function?: VoiFunction | undefined;
}

/**
 * Stored values of one grey-scale frame as signed integers: bits outside Bits Stored masked off (native
 * data, where High Bit says where they are), two's complement extended for Pixel Representation 1.
 * Decoded codestreams give samples aligned at bit 0; when `fromCodec` a value wider than Bits Stored (a
 * codestream deeper than the header says) is kept as read instead of being truncated.
 */
export function storedValues(data: Uint8Array, m: PixelModule, fromCodec = false): Int32Array | Float64Array {
  const n = m.rows * m.columns;
  const bits = m.bitsStored;
  const signed = m.pixelRepresentation === 1;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (m.bitsAllocated === 32) {
    const out = new Float64Array(n);
    for (let i = 0; i < n && i * 4 + 3 < data.length; i++) out[i] = signed ? view.getInt32(i * 4, true) : view.getUint32(i * 4, true);
    return out;
  }
  const out = new Int32Array(n);
  if (m.bitsAllocated === 1) {
    for (let i = 0; i < n; i++) out[i] = ((data[i >> 3] ?? 0) >> (i & 7)) & 1;
    return out;
  }
  const shift = fromCodec ? 0 : Math.max(0, m.highBit + 1 - bits);
  const mask = bits >= 32 ? 0xffffffff : (1 << bits) - 1;
  const sign = 1 << (bits - 1);
  const wide = m.bitsAllocated > 8;
  for (let i = 0; i < n; i++) {
    const raw = wide ? (2 * i + 1 < data.length ? view.getUint16(2 * i, true) : 0) : (data[i] ?? 0);
    let v = (raw >> shift) & mask;
    if (fromCodec && raw > mask) {
      // deeper than Bits Stored says: read it at its allocated width
      out[i] = signed && wide ? (raw << 16) >> 16 : raw;
      continue;
    }
    if (signed && v & sign) v -= mask + 1;
    out[i] = v;
  }
  return out;
}

function lookup(lut: Lut, x: number): number {
  const i = Math.round(x) - lut.firstMapped;
  return lut.data[i < 0 ? 0 : i >= lut.data.length ? lut.data.length - 1 : i]!;
}

/** Modality LUT stage in place: a table when the data set has one, else rescale slope/intercept. @see PS3.3 §C.11.1 */
export function applyModality(
  values: Int32Array | Float64Array,
  t: Pick<GreyscaleTransforms, 'rescaleSlope' | 'rescaleIntercept' | 'modalityLut'>,
): Float64Array {
  const out = new Float64Array(values.length);
  const lut = t.modalityLut;
  if (lut) for (let i = 0; i < values.length; i++) out[i] = lookup(lut, values[i]!);
  else {
    const s = t.rescaleSlope;
    const b = t.rescaleIntercept;
    for (let i = 0; i < values.length; i++) out[i] = values[i]! * s + b;
  }
  return out;
}

/**
 * One VOI window as a function x → [0, 255], exactly as PS3.3 §C.11.2.1.2.1 (LINEAR), §C.11.2.1.3.2
 * (LINEAR_EXACT) and §C.11.2.1.3.1 (SIGMOID) define them with ymin 0 and ymax 255.
 */
export function windowFunction(center: number, width: number, fn: VoiFunction = 'LINEAR'): (x: number) => number {
  const ymax = 255;
  switch (fn) {
    case 'LINEAR_EXACT': {
      const w = Math.max(width, Number.MIN_VALUE);
      return (x) => (x <= center - w / 2 ? 0 : x > center + w / 2 ? ymax : ((x - center) / w + 0.5) * ymax);
    }
    case 'SIGMOID':
      return (x) => ymax / (1 + Math.exp((-4 * (x - center)) / width));
    case 'LINEAR': {
      // width must be >= 1 for LINEAR (PS3.3 §C.11.2.1.2.1)
      const w = Math.max(width, 1);
      const lo = center - 0.5 - (w - 1) / 2;
      const hi = center - 0.5 + (w - 1) / 2;
      if (w === 1) return (x) => (x <= lo ? 0 : ymax);
      return (x) => (x <= lo ? 0 : x > hi ? ymax : ((x - (center - 0.5)) / (w - 1) + 0.5) * ymax);
    }
  }
}

/** Smallest and largest finite value (0, 0 when there is none). */
export function minMax(values: ArrayLike<number>): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return Number.isFinite(min) ? { min, max } : { min: 0, max: 0 };
}

/**
 * VOI stage to 8-bit: the requested window, else the data set's first window, else its VOI LUT table, else
 * a window over the frame's value range (so that a frame without presentation hints is still visible).
 * MONOCHROME1 is inverted afterwards (low values white). @see PS3.3 §C.11.2, §C.7.6.3.1.2
 */
export function toDisplay(modality: Float64Array, t: GreyscaleTransforms, photometric: string, requested?: WindowRequest): Uint8Array {
  const out = new Uint8Array(modality.length);
  let f: (x: number) => number;
  const win = requested ?? t.windows[0];
  if (win) f = windowFunction(win.center, win.width, requested?.function ?? t.voiLutFunction);
  else if (t.voiLut) {
    const lut = t.voiLut;
    const scale = 255 / ((1 << Math.min(lut.bits, 16)) - 1 || 1);
    f = (x) => lookup(lut, x) * scale;
  } else {
    const { min, max } = minMax(modality);
    f = max > min ? (x) => ((x - min) / (max - min)) * 255 : () => 0;
  }
  const invert = photometric === 'MONOCHROME1';
  for (let i = 0; i < modality.length; i++) {
    const y = Math.round(f(modality[i]!));
    const c = y < 0 ? 0 : y > 255 ? 255 : y;
    out[i] = invert ? 255 - c : c;
  }
  return out;
}

/** YCbCr (full range, PS3.3 §C.7.6.3.1.2 YBR_FULL) to RGB, one pixel. */
function ybrToRgb(y: number, cb: number, cr: number, out: Uint8Array, o: number): void {
  const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));
  out[o] = clamp(y + 1.402 * (cr - 128));
  out[o + 1] = clamp(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
  out[o + 2] = clamp(y + 1.772 * (cb - 128));
}

/**
 * A colour frame to interleaved 8-bit RGB. Handles planar configuration 1, 16-bit samples (scaled down),
 * YBR_FULL, native YBR_FULL_422 (Y1 Y2 Cb Cr per pixel pair), and RGB-like interpretations a codec has
 * already converted (YBR_RCT, YBR_ICT, YBR_PARTIAL_*). @throws NOT_ACCEPTABLE for others (CMYK, HSV…).
 * @see PS3.3 §C.7.6.3.1.2, §C.7.6.3.1.3
 */
export function colourToRgb(data: Uint8Array, m: PixelModule, photometric: string, planar: number): Uint8Array {
  const n = m.rows * m.columns;
  const out = new Uint8Array(n * 3);
  const wide = m.bitsAllocated > 8;
  const shift = wide ? Math.max(0, m.bitsStored - 8) : 0;
  const sample = (idx: number): number => (wide ? ((data[2 * idx] ?? 0) | ((data[2 * idx + 1] ?? 0) << 8)) >> shift : (data[idx] ?? 0));
  if (photometric === 'YBR_FULL_422' && !wide) {
    // native 4:2:2: for each pair of pixels Y1 Y2 Cb Cr (PS3.3 §C.7.6.3.1.2)
    for (let p = 0; p < n; p += 2) {
      const b = p * 2;
      const cb = data[b + 2] ?? 128;
      const cr = data[b + 3] ?? 128;
      ybrToRgb(data[b] ?? 0, cb, cr, out, p * 3);
      if (p + 1 < n) ybrToRgb(data[b + 1] ?? 0, cb, cr, out, p * 3 + 3);
    }
    return out;
  }
  const at = (p: number, c: number): number => sample(planar === 1 ? c * n + p : p * 3 + c);
  switch (photometric) {
    case 'RGB':
    case 'YBR_RCT':
    case 'YBR_ICT':
    case 'YBR_PARTIAL_420':
    case 'YBR_PARTIAL_422':
      for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = at(p, c);
      return out;
    case 'YBR_FULL':
    case 'YBR_FULL_422':
      for (let p = 0; p < n; p++) ybrToRgb(at(p, 0), at(p, 1), at(p, 2), out, p * 3);
      return out;
    default:
      throw new PorticoError('NOT_ACCEPTABLE', `photometric interpretation ${photometric} cannot be rendered`);
  }
}

/** PALETTE COLOR indices to interleaved 8-bit RGB. @see PS3.3 §C.7.6.3.1.5, §C.7.9 */
export function paletteToRgb(indices: Int32Array | Float64Array, luts: PaletteLuts): Uint8Array {
  const out = new Uint8Array(indices.length * 3);
  const tables = [luts.red, luts.green, luts.blue];
  for (let c = 0; c < 3; c++) {
    const lut = tables[c]!;
    const shift = lut.bits > 8 ? lut.bits - 8 : 0;
    // Some writers declare 16 bits but fill only the low byte: scale by what the table really holds.
    const max = minMax(lut.data).max;
    const effShift = shift > 0 && max < 256 ? 0 : shift;
    for (let i = 0; i < indices.length; i++) out[i * 3 + c] = Math.min(255, lookup(lut, indices[i]!) >> effShift);
  }
  return out;
}
