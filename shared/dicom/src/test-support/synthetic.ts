/**
 * Builds small DICOM byte streams in code, for tests that need encodings the public corpus lacks
 * (Extended Offset Tables, UN sequences, multi-fragment frames …) or sizes it cannot hold (200 MB).
 * Deliberately independent of the parser: it writes bytes straight from PS3.5 §7.
 */
import { writeFileMetaInformation } from '../file-meta.ts';

export interface Encoding {
  explicit: boolean;
  little: boolean;
}
export const EXPLICIT_LE: Encoding = { explicit: true, little: true };
export const IMPLICIT_LE: Encoding = { explicit: false, little: true };
export const EXPLICIT_BE: Encoding = { explicit: true, little: false };

const LONG = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);
export const UNDEFINED = 0xffffffff;

function u16(n: number, little: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (little) b.writeUInt16LE(n);
  else b.writeUInt16BE(n);
  return b;
}
function u32(n: number, little: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (little) b.writeUInt32LE(n >>> 0);
  else b.writeUInt32BE(n >>> 0);
  return b;
}

/** Element header only (for values streamed separately). */
export function header(tag: number, vr: string, length: number, enc: Encoding = EXPLICIT_LE): Buffer {
  const t = Buffer.concat([u16(tag >>> 16, enc.little), u16(tag & 0xffff, enc.little)]);
  if (!enc.explicit || tag >>> 16 === 0xfffe) return Buffer.concat([t, u32(length, enc.little)]);
  if (LONG.has(vr)) return Buffer.concat([t, Buffer.from(vr, 'latin1'), Buffer.alloc(2), u32(length, enc.little)]);
  return Buffer.concat([t, Buffer.from(vr, 'latin1'), u16(length, enc.little)]);
}

/** A complete element; strings are padded to even length (NUL for UI, space otherwise). */
export function el(tag: number, vr: string, value: Buffer | string, enc: Encoding = EXPLICIT_LE): Buffer {
  let v = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  if (typeof value === 'string' && v.length % 2 === 1) v = Buffer.concat([v, Buffer.from(vr === 'UI' ? '\0' : ' ')]);
  return Buffer.concat([header(tag, vr, v.length, enc), v]);
}

export function us(tag: number, values: number[], enc: Encoding = EXPLICIT_LE): Buffer {
  return el(tag, 'US', Buffer.concat(values.map((n) => u16(n, enc.little))), enc);
}

export function item(content: Buffer, enc: Encoding = EXPLICIT_LE, undefinedLength = false): Buffer {
  if (!undefinedLength) return Buffer.concat([header(0xfffee000, '', content.length, enc), content]);
  return Buffer.concat([header(0xfffee000, '', UNDEFINED, enc), content, header(0xfffee00d, '', 0, enc)]);
}

export function sequence(tag: number, items: Buffer[], enc: Encoding = EXPLICIT_LE, undefinedLength = false, vr = 'SQ'): Buffer {
  const body = Buffer.concat(items);
  if (!undefinedLength) return Buffer.concat([header(tag, vr, body.length, enc), body]);
  return Buffer.concat([header(tag, vr, UNDEFINED, enc), body, header(0xfffee0dd, '', 0, enc)]);
}

/** Encapsulated Pixel Data: Basic Offset Table item, one item per fragment, sequence delimiter. @see PS3.5 §A.4 */
export function encapsulatedPixelData(botOffsets: number[], fragments: Buffer[]): Buffer {
  const bot = Buffer.concat(botOffsets.map((o) => u32(o, true)));
  return Buffer.concat([header(0x7fe00010, 'OB', UNDEFINED), item(bot), ...fragments.map((f) => item(f)), header(0xfffee0dd, '', 0)]);
}

/** Preamble + File Meta + data set. */
export function part10(dataset: Buffer, transferSyntaxUid = '1.2.840.10008.1.2.1', sopInstanceUid = '1.2.3.4.5'): Buffer {
  return Buffer.concat([writeFileMetaInformation({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid, transferSyntaxUid }), dataset]);
}

/** The usual identifying elements of a small image, in tag order before (0028,xxxx). */
export function identifying(enc: Encoding = EXPLICIT_LE, sopInstanceUid = '1.2.3.4.5'): Buffer {
  return Buffer.concat([
    el(0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.7', enc),
    el(0x00080018, 'UI', sopInstanceUid, enc),
    el(0x00100010, 'PN', 'Doe^John', enc),
    el(0x0020000d, 'UI', '1.2.3', enc),
    el(0x0020000e, 'UI', '1.2.3.4', enc),
  ]);
}

/** Image Pixel attributes (0028,xxxx) for native frame sizing. */
export function imagePixel(
  o: { rows: number; columns: number; bitsAllocated: number; frames?: number; samples?: number },
  enc: Encoding = EXPLICIT_LE,
): Buffer {
  return Buffer.concat([
    us(0x00280002, [o.samples ?? 1], enc),
    ...(o.frames === undefined ? [] : [el(0x00280008, 'IS', String(o.frames), enc)]),
    us(0x00280010, [o.rows], enc),
    us(0x00280011, [o.columns], enc),
    us(0x00280100, [o.bitsAllocated], enc),
  ]);
}

/** Deterministic PRNG (mulberry32) so randomised tests are reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Yields `buf` in chunks of 1..maxChunk bytes (seeded), to exercise chunk boundaries. */
export async function* chunked(buf: Buffer, maxChunk: number, seed = 1): AsyncGenerator<Buffer> {
  const rnd = prng(seed);
  for (let o = 0; o < buf.length;) {
    const n = 1 + Math.floor(rnd() * maxChunk);
    yield buf.subarray(o, o + n);
    o += n;
  }
}
