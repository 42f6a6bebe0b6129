/**
 * Synthetic DICOM instances for tests and benchmarks: Explicit VR Little Endian Part-10 files built in
 * code (deterministic from a seed), so no fixture needs to be committed and sizes can be anything.
 */
import { createHash } from 'node:crypto';

export interface SyntheticOptions {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid?: string; // default CT Image Storage
  readonly patientName?: string;
  readonly patientId?: string;
  readonly studyDate?: string;
  readonly modality?: string;
  readonly instanceNumber?: number;
  readonly rows?: number;
  readonly columns?: number;
  readonly numberOfFrames?: number;
  /** Omit these tags (by 8-hex tag) to build invalid data sets. */
  readonly omit?: readonly string[];
  readonly seed?: number;
}

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';

function pad(value: string | Buffer, padByte: number): Buffer {
  const b = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from([padByte])]);
}

function element(tag: string, vr: string, value: Buffer): Buffer {
  const group = parseInt(tag.slice(0, 4), 16);
  const elem = parseInt(tag.slice(4), 16);
  const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'UC', 'UR', 'OD', 'OL', 'OV'].includes(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(elem, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

const text = (tag: string, vr: string, v: string): Buffer => element(tag, vr, pad(v, vr === 'UI' ? 0 : 0x20));
const us = (tag: string, v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return element(tag, 'US', b);
};

/** File Meta group (PS3.10 §7.1) for the synthetic file. */
function meta(sopClassUid: string, sopInstanceUid: string): Buffer {
  const body = Buffer.concat([
    element('00020001', 'OB', Buffer.from([0, 1])),
    text('00020002', 'UI', sopClassUid),
    text('00020003', 'UI', sopInstanceUid),
    text('00020010', 'UI', EXPLICIT_LE),
    text('00020012', 'UI', '1.2.826.0.1.3680043.10.1482.99'),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), element('00020000', 'UL', len), body]);
}

/** Deterministic pseudo-random pixel bytes (xorshift), so the same seed gives the same file. */
function pixels(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x, i);
  }
  out.fill(0, length - (length % 4));
  return out;
}

/** A whole synthetic Part-10 file in memory (keep sizes test-sized; see `syntheticStream` for big ones). */
export function syntheticInstance(o: SyntheticOptions): Buffer {
  const { header, pixelLength } = syntheticHeader(o);
  return Buffer.concat([header, pixels(pixelLength, o.seed ?? 1)]);
}

/** Header (meta + data set up to the Pixel Data value) and the pixel value length. */
export function syntheticHeader(o: SyntheticOptions): { header: Buffer; pixelLength: number } {
  const rows = o.rows ?? 512;
  const columns = o.columns ?? 512;
  const frames = o.numberOfFrames ?? 1;
  const sopClassUid = o.sopClassUid ?? CT_IMAGE_STORAGE;
  const pixelLength = rows * columns * 2 * frames;
  const omit = new Set(o.omit ?? []);
  const elements: Array<[string, Buffer]> = [
    ['00080016', text('00080016', 'UI', sopClassUid)],
    ['00080018', text('00080018', 'UI', o.sopInstanceUid)],
    ['00080020', text('00080020', 'DA', o.studyDate ?? '20260101')],
    ['00080060', text('00080060', 'CS', o.modality ?? 'CT')],
    ['00100010', text('00100010', 'PN', o.patientName ?? 'Synthetic^Patient')],
    ['00100020', text('00100020', 'LO', o.patientId ?? 'SYN-0001')],
    ['0020000D', text('0020000D', 'UI', o.studyInstanceUid)],
    ['0020000E', text('0020000E', 'UI', o.seriesInstanceUid)],
    ['00200013', text('00200013', 'IS', String(o.instanceNumber ?? 1))],
    ['00280002', us('00280002', 1)],
    ['00280004', text('00280004', 'CS', 'MONOCHROME2')],
    ...(frames > 1 ? ([['00280008', text('00280008', 'IS', String(frames))]] as Array<[string, Buffer]>) : []),
    ['00280010', us('00280010', rows)],
    ['00280011', us('00280011', columns)],
    ['00280100', us('00280100', 16)],
    ['00280101', us('00280101', 16)],
    ['00280102', us('00280102', 15)],
    ['00280103', us('00280103', 1)],
  ];
  const pixelHeader = Buffer.alloc(12);
  pixelHeader.writeUInt16LE(0x7fe0, 0);
  pixelHeader.writeUInt16LE(0x0010, 2);
  pixelHeader.write('OW', 4, 'latin1');
  pixelHeader.writeUInt32LE(pixelLength, 8);
  const header = Buffer.concat([meta(sopClassUid, o.sopInstanceUid), ...elements.filter(([t]) => !omit.has(t)).map(([, b]) => b), pixelHeader]);
  return { header, pixelLength };
}

/** A synthetic instance as a stream of chunks; the pixel value is generated lazily (any size, flat memory). */
export async function* syntheticStream(o: SyntheticOptions, chunkSize = 1 << 20): AsyncGenerator<Buffer> {
  const { header, pixelLength } = syntheticHeader(o);
  yield header;
  const chunk = pixels(chunkSize, o.seed ?? 1);
  for (let left = pixelLength; left > 0; left -= chunkSize) yield left >= chunkSize ? chunk : chunk.subarray(0, left);
}

/** A UID under a test root, unique per (prefix, n). */
export function testUid(prefix: string, n: number | string): string {
  const h = BigInt(`0x${createHash('sha1').update(`${prefix}.${n}`).digest('hex').slice(0, 15)}`);
  return `2.25.${h.toString()}`;
}
