/**
 * The export transform: the bytes one destination gets for one stored instance — another transfer syntax
 * and/or attribute mutations. The stored instance is never changed; this builds a new Part-10 file.
 *
 * Design decisions:
 * - The data set is handled at the byte level ({@link readDataset}), not through dcmjs: dcmjs writes every
 *   string as UTF-8 whatever (0008,0005) says, so an ISO_IR 100 or ISO_IR 144 instance would reach the
 *   destination corrupted. Elements nobody touches keep their bytes.
 * - Pixels are decoded frame by frame with the decoders of codecs.ts and encoded frame by frame with the
 *   dcmjs-codecs WASM encoders; an encapsulated result has one fragment per frame and a Basic Offset Table.
 *   A same-syntax transform (mutations only) copies Pixel Data untouched.
 * - Produced syntaxes: Implicit/Explicit VR Little Endian, Deflated Explicit VR Little Endian, RLE, JPEG
 *   baseline (.50, 8-bit), JPEG lossless SV1 (.70), JPEG-LS (.80, .81), JPEG 2000 (.90, .91), HTJ2K
 *   (.201, .202, .203). Not produced: Explicit VR Big Endian (retired), JPEG extended (.51) and process 14
 *   (.57) (dcmjs-codecs has no encoder for them).
 * - An instance without pixels (SR, PDF, KOS, RT structure set, ECG…) asked for a compressed syntax goes out
 *   in Explicit VR Little Endian and the result says so (`fallback`), so "send this study as JPEG 2000" does
 *   not fail the study's SRs. An image that cannot be encoded in the asked syntax (16-bit to JPEG baseline,
 *   a lossy syntax for PALETTE COLOR, 1-bit segmentations to any compressed syntax…) is refused with
 *   NOT_ACCEPTABLE: silently sending another syntax could violate what the destination accepts.
 * - Lossy results keep their SOP Instance UID (the destination receives "this instance, compressed", and
 *   the export tracks acknowledgements by UID) and are flagged: Lossy Image Compression "01", Ratio and
 *   Method appended (PS3.3 §C.7.6.1.1.5). Decoding a lossy source keeps "01".
 * - Character sets: a `set`/`modify` result that the data set's Specific Character Set can carry (ASCII
 *   always; ISO_IR 100 for Latin-1; ISO_IR 192) is written in it. Otherwise the whole instance is converted
 *   to ISO_IR 192: every SH/LO/ST/LT/UT/PN/UC value (items with their own (0008,0005) included) is decoded
 *   with its character set and re-encoded as UTF-8, and (0008,0005) becomes ISO_IR 192. Elements of VR UN
 *   (unknown private elements of Implicit VR sources) cannot be decoded and are left as they are.
 * - A mutation path through a sequence that the instance does not have changes nothing (routes apply to
 *   instances that do and do not carry the sequence).
 * @see PS3.5 §8.2, Annex A; PS3.10 §7.1; PS3.3 §C.7.6.1.1.5, §C.7.6.3
 */
import { deflateRawSync, inflateRawSync, inflateSync } from 'node:zlib';
import {
  CHARSET_VRS,
  createCharsetDecoder,
  frameStartMarker,
  hasPart10Preamble,
  normalizeSpecificCharacterSet,
  readFileMetaInformation,
  TRANSFER_SYNTAX,
  writeFileMetaInformation,
  type Mutation,
} from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { canDecode, decodedPhotometric, decodeFrame, isLossyTransferSyntax, loadCodecs, NATIVE_TRANSFER_SYNTAXES } from './codecs.ts';
import type { PixelModule } from './pixel-module.ts';
import { find, put, readDataset, STRING_VRS, tagHex, text, us, writeDataset, type RawElement } from './raw-dataset.ts';

export interface TransformOptions {
  /** the transfer syntax the destination gets; the stored one when absent */
  readonly transferSyntaxUid?: string;
  readonly mutations?: readonly Mutation[];
}

export interface TransformedInstance {
  /** a complete Part-10 file: preamble, File Meta Information (Portico's implementation UID), data set */
  readonly bytes: Buffer;
  /** the transfer syntax of `bytes` (Explicit VR Little Endian when `fallback` is set) */
  readonly transferSyntaxUid: string;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  /** why `transferSyntaxUid` is not the one asked for (an instance without pixels, or a retired source syntax) */
  readonly fallback?: string;
}

const IMPLICIT = TRANSFER_SYNTAX.ImplicitVRLittleEndian;
const EXPLICIT = TRANSFER_SYNTAX.ExplicitVRLittleEndian;
const DEFLATED = TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian;
const BIG_ENDIAN = TRANSFER_SYNTAX.ExplicitVRBigEndian;

type Encoder = 'encodeRle' | 'encodeJpeg' | 'encodeJpegLs' | 'encodeJpeg2000' | 'encodeHtJpeg2000';
interface Target {
  readonly fn: Encoder;
  readonly lossy: boolean;
  readonly params: Readonly<Record<string, unknown>>;
  /** Lossy Image Compression Method (0028,2114) defined term @see PS3.3 §C.7.6.1.1.5.1 */
  readonly method?: string;
}

/** Encapsulated syntaxes produced here and how. @see PS3.5 §8.2, PS3.6 Table A-1 */
const TARGETS: Readonly<Record<string, Target>> = {
  '1.2.840.10008.1.2.5': { fn: 'encodeRle', lossy: false, params: {} },
  // Chrominance subsampled 2:1 horizontally (index 1 of dcmjs-codecs' JpegSampleFactor): YBR_FULL_422, the
  // form PS3.5 §8.2.1 describes for lossy colour JPEG and the one every reader expects.
  '1.2.840.10008.1.2.4.50': {
    fn: 'encodeJpeg',
    lossy: true,
    params: { lossy: true, quality: 90, sampleFactor: 1, predictor: 0, pointTransform: 0 },
    method: 'ISO_10918_1',
  },
  '1.2.840.10008.1.2.4.70': { fn: 'encodeJpeg', lossy: false, params: { lossy: false, predictor: 1, pointTransform: 0 } },
  '1.2.840.10008.1.2.4.80': { fn: 'encodeJpegLs', lossy: false, params: { lossy: false } },
  '1.2.840.10008.1.2.4.81': { fn: 'encodeJpegLs', lossy: true, params: { lossy: true, allowedLossyError: 2 }, method: 'ISO_14495_1' },
  '1.2.840.10008.1.2.4.90': { fn: 'encodeJpeg2000', lossy: false, params: { lossy: false } },
  '1.2.840.10008.1.2.4.91': { fn: 'encodeJpeg2000', lossy: true, params: { lossy: true, rate: 10 }, method: 'ISO_15444_1' },
  '1.2.840.10008.1.2.4.201': { fn: 'encodeHtJpeg2000', lossy: false, params: { lossy: false } },
  // RPCL progression (index 2), as .202 requires; the encoder writes TLM markers and resolution tile-parts.
  '1.2.840.10008.1.2.4.202': { fn: 'encodeHtJpeg2000', lossy: false, params: { lossy: false, progressionOrder: 2 } },
  '1.2.840.10008.1.2.4.203': { fn: 'encodeHtJpeg2000', lossy: true, params: { lossy: true }, method: 'ISO_15444_15' },
};

/** Uncompressed syntaxes written here. */
const NATIVE_TARGETS: ReadonlySet<string> = new Set([IMPLICIT, EXPLICIT, DEFLATED]);

/**
 * True when instances stored in `fromTs` can be sent in `toTs` (as far as the syntaxes go: an image may
 * still be refused for its pixel format, see {@link transformInstance}).
 */
export function canTransform(fromTs: string, toTs: string): boolean {
  if (fromTs === toTs) return true; // nothing to do: the bytes go as stored
  const readable = NATIVE_TRANSFER_SYNTAXES.has(fromTs) || canDecode(fromTs);
  return readable && (NATIVE_TARGETS.has(toTs) || toTs in TARGETS);
}

const tags = {
  specificCharacterSet: 0x00080005,
  sopClassUid: 0x00080016,
  sopInstanceUid: 0x00080018,
  samplesPerPixel: 0x00280002,
  photometric: 0x00280004,
  planar: 0x00280006,
  numberOfFrames: 0x00280008,
  rows: 0x00280010,
  columns: 0x00280011,
  bitsAllocated: 0x00280100,
  bitsStored: 0x00280101,
  highBit: 0x00280102,
  pixelRepresentation: 0x00280103,
  lossy: 0x00282110,
  lossyRatio: 0x00282112,
  lossyMethod: 0x00282114,
  extendedOffsetTable: 0x7fe00001,
  extendedOffsetTableLengths: 0x7fe00002,
  pixelData: 0x7fe00010,
} as const;

function str(vr: string, s: string): RawElement {
  return { tag: 0, vr, value: Buffer.from(s, 'latin1') };
}
function setString(ds: RawElement[], tag: number, vr: string, s: string): void {
  put(ds, { ...str(vr, s), tag });
}
function setUs(ds: RawElement[], tag: number, v: number): void {
  const value = Buffer.alloc(2);
  value.writeUInt16LE(v, 0);
  put(ds, { tag, vr: 'US', value });
}

interface SourceInstance {
  transferSyntaxUid: string;
  sopClassUid: string;
  sopInstanceUid: string;
  elements: RawElement[];
  hasMeta: boolean;
}

/** Splits a Part-10 file (or a bare Implicit/Explicit VR LE data set without File Meta) into its data set. */
function openSource(part10: Uint8Array): SourceInstance {
  const buf = Buffer.from(part10.buffer, part10.byteOffset, part10.byteLength);
  let ts: string;
  let offset = 0;
  let metaSop = { sopClassUid: '', sopInstanceUid: '' };
  const hasMeta = hasPart10Preamble(buf);
  if (hasMeta) {
    let meta;
    try {
      meta = readFileMetaInformation(buf);
    } catch (err) {
      throw new PorticoError('CANNOT_UNDERSTAND', `the File Meta Information cannot be read: ${(err as Error).message}`, { cause: err });
    }
    ts = meta.transferSyntaxUid || EXPLICIT;
    offset = meta.datasetOffset;
    metaSop = { sopClassUid: meta.sopClassUid, sopInstanceUid: meta.sopInstanceUid };
  } else {
    // No preamble: a bare data set (seen from old writers). Its first element tells explicit from implicit.
    if (buf.length < 8 || buf.readUInt16LE(0) % 2 === 1 || buf.readUInt16LE(0) > 0x7fe0)
      throw new PorticoError('CANNOT_UNDERSTAND', 'not a DICOM Part-10 file or data set');
    ts = /^[A-Z]{2}$/.test(buf.toString('latin1', 4, 6)) ? EXPLICIT : IMPLICIT;
  }
  let body = buf.subarray(offset);
  if (ts === DEFLATED) {
    // Raw deflate as PS3.5 §A.5 says, or zlib-wrapped as some writers produce.
    const zlibWrapped = body.length >= 2 && (body[0]! & 0x0f) === 8 && ((body[0]! << 8) | body[1]!) % 31 === 0;
    try {
      body = zlibWrapped ? inflateSync(body) : inflateRawSync(body);
    } catch (err) {
      throw new PorticoError('CANNOT_UNDERSTAND', 'the deflated data set cannot be inflated', { cause: err });
    }
  }
  const elements = readDataset(body, { explicitVr: ts !== IMPLICIT, littleEndian: ts !== BIG_ENDIAN });
  return {
    transferSyntaxUid: ts,
    sopClassUid: text(find(elements, tags.sopClassUid)) || metaSop.sopClassUid,
    sopInstanceUid: text(find(elements, tags.sopInstanceUid)) || metaSop.sopInstanceUid,
    elements,
    hasMeta,
  };
}

/**
 * Builds the bytes one destination gets: `part10` in `opts.transferSyntaxUid` with `opts.mutations`
 * applied. With neither (or the stored syntax and no mutations), returns `part10` itself — except for a
 * bare data set without File Meta, which is always written out as a Part-10 file. Everything is in
 * memory (input, one decoded frame at a time, output).
 * @see the module comment for what is refused and what falls back to Explicit VR Little Endian
 * @throws NOT_ACCEPTABLE when the asked syntax cannot be produced for this image or a mutation cannot be
 *   applied; CANNOT_UNDERSTAND when `part10` cannot be parsed or its pixel data decoded; MISSING_ATTRIBUTE
 *   without SOP Class/Instance UID
 */
export async function transformInstance(part10: Uint8Array, opts: TransformOptions): Promise<TransformedInstance> {
  const src = openSource(part10);
  const mutations = opts.mutations ?? [];
  const asked = opts.transferSyntaxUid ?? src.transferSyntaxUid;
  if (asked === src.transferSyntaxUid && mutations.length === 0 && src.hasMeta) {
    return {
      bytes: Buffer.from(part10.buffer, part10.byteOffset, part10.byteLength),
      transferSyntaxUid: src.transferSyntaxUid,
      sopClassUid: src.sopClassUid,
      sopInstanceUid: src.sopInstanceUid,
    };
  }
  let target = asked;
  let fallback: string | undefined;
  if (target === BIG_ENDIAN) {
    if (opts.transferSyntaxUid === BIG_ENDIAN) throw new PorticoError('NOT_ACCEPTABLE', 'Explicit VR Big Endian (retired) is not produced here');
    target = EXPLICIT;
    fallback = 'the stored syntax Explicit VR Big Endian is retired and not written here';
  }
  if (!NATIVE_TARGETS.has(target) && !(target in TARGETS) && target !== src.transferSyntaxUid)
    throw new PorticoError('NOT_ACCEPTABLE', `transfer syntax ${target} is not produced here`);

  const ds = src.elements;
  applyMutations(ds, mutations);

  const px = find(ds, tags.pixelData);
  const module = px ? pixelModule(ds) : undefined;
  if (!NATIVE_TARGETS.has(target) && target !== src.transferSyntaxUid && (!px || !module)) {
    fallback = `an instance without image pixel data is sent uncompressed, not in ${target}`;
    target = EXPLICIT;
  }
  if (px && target !== src.transferSyntaxUid && !(NATIVE_TRANSFER_SYNTAXES.has(src.transferSyntaxUid) && NATIVE_TARGETS.has(target))) {
    if (!module) throw new PorticoError('NOT_ACCEPTABLE', 'pixel data without a usable Image Pixel description cannot be transcoded');
    await transcodePixels(ds, px, module, src.transferSyntaxUid, target);
  }
  if (px?.value && NATIVE_TARGETS.has(target) && module) px.vr = module.bitsAllocated > 8 ? 'OW' : 'OB';
  if (NATIVE_TARGETS.has(target)) dropNestedEncapsulated(ds);

  const sopClassUid = text(find(ds, tags.sopClassUid)) || src.sopClassUid;
  const sopInstanceUid = text(find(ds, tags.sopInstanceUid)) || src.sopInstanceUid;
  let meta: Buffer;
  try {
    meta = writeFileMetaInformation({ sopClassUid, sopInstanceUid, transferSyntaxUid: target });
  } catch (err) {
    throw new PorticoError('MISSING_ATTRIBUTE', `a File Meta Information cannot be written: ${(err as Error).message}`, { cause: err });
  }
  let body = Buffer.concat(writeDataset(ds, target !== IMPLICIT));
  if (target === DEFLATED) body = deflateRawSync(body);
  return { bytes: Buffer.concat([meta, body]), transferSyntaxUid: target, sopClassUid, sopInstanceUid, ...(fallback ? { fallback } : {}) };
}

/**
 * An Icon Image Sequence item may hold encapsulated pixel data (PS3.5 §A.4 lets it follow the instance's
 * syntax); an uncompressed result cannot carry it, and an icon is optional (Type 3): the sequence goes.
 */
function dropNestedEncapsulated(elements: RawElement[]): void {
  for (let i = elements.length - 1; i >= 0; i--) {
    const items = elements[i]!.items;
    if (!items) continue;
    if (items.some((item) => item.some((e) => e.fragments))) elements.splice(i, 1);
    else for (const item of items) dropNestedEncapsulated(item);
  }
}

function pixelModule(ds: RawElement[]): PixelModule | undefined {
  const rows = us(find(ds, tags.rows));
  const columns = us(find(ds, tags.columns));
  const bitsAllocated = us(find(ds, tags.bitsAllocated));
  if (!rows || !columns || !bitsAllocated) return undefined;
  const bitsStored = us(find(ds, tags.bitsStored)) ?? bitsAllocated;
  const frames = Number.parseInt(text(find(ds, tags.numberOfFrames)) ?? '1', 10);
  return {
    rows,
    columns,
    bitsAllocated,
    bitsStored,
    highBit: us(find(ds, tags.highBit)) ?? bitsStored - 1,
    samplesPerPixel: us(find(ds, tags.samplesPerPixel)) ?? 1,
    pixelRepresentation: us(find(ds, tags.pixelRepresentation)) ?? 0,
    photometricInterpretation: text(find(ds, tags.photometric))?.trim() || 'MONOCHROME2',
    planarConfiguration: us(find(ds, tags.planar)) ?? 0,
    numberOfFrames: Number.isFinite(frames) && frames > 0 ? frames : 1,
  };
}

function frameBytes(m: PixelModule): number {
  return m.rows * m.columns * m.samplesPerPixel * Math.ceil(m.bitsAllocated / 8);
}

/** Frames of encapsulated Pixel Data: by Basic Offset Table, one fragment per frame, or start markers. @see PS3.5 §A.4 */
export function encapsulatedFrames(fragments: readonly Buffer[], numberOfFrames: number, ts: string): Buffer[] {
  const [bot, ...frags] = fragments;
  if (frags.length === 0) throw new PorticoError('CANNOT_UNDERSTAND', 'encapsulated pixel data without fragments');
  if (numberOfFrames === 1) return [frags.length === 1 ? frags[0]! : Buffer.concat(frags)];
  if (bot && bot.length >= 4 * numberOfFrames) {
    const starts: number[] = [];
    let at = 0;
    const indexAt = new Map<number, number>();
    frags.forEach((f, i) => {
      indexAt.set(at, i);
      at += 8 + f.length;
    });
    for (let k = 0; k < numberOfFrames; k++) {
      const i = indexAt.get(bot.readUInt32LE(4 * k));
      if (i === undefined) throw new PorticoError('CANNOT_UNDERSTAND', 'the Basic Offset Table does not point at fragments');
      starts.push(i);
    }
    return starts.map((s, k) => Buffer.concat(frags.slice(s, starts[k + 1] ?? frags.length)));
  }
  if (frags.length === numberOfFrames) return frags;
  const marker = frameStartMarker(ts);
  if (marker !== undefined) {
    const starts = frags.flatMap((f, i) => (f.length >= 2 && f.readUInt16BE(0) === marker ? [i] : []));
    if (starts.length === numberOfFrames && starts[0] === 0) return starts.map((s, k) => Buffer.concat(frags.slice(s, starts[k + 1] ?? frags.length)));
  }
  throw new PorticoError('CANNOT_UNDERSTAND', `${frags.length} fragments cannot be assigned to ${numberOfFrames} frames`);
}

/** Planar (R…G…B…) to interleaved samples. */
function interleave(data: Uint8Array, m: PixelModule): Uint8Array {
  const bytes = Math.ceil(m.bitsAllocated / 8);
  const n = m.rows * m.columns;
  const out = new Uint8Array(n * 3 * bytes);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) for (let b = 0; b < bytes; b++) out[(p * 3 + c) * bytes + b] = data[(c * n + p) * bytes + b]!;
  return out;
}

/** YBR_FULL to RGB, 8-bit. @see PS3.3 §C.7.6.3.1.2 */
function ybrFullToRgb(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length);
  const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));
  for (let i = 0; i + 2 < data.length; i += 3) {
    const y = data[i]!;
    const cb = data[i + 1]! - 128;
    const cr = data[i + 2]! - 128;
    out[i] = clamp(y + 1.402 * cr);
    out[i + 1] = clamp(y - 0.344136 * cb - 0.714136 * cr);
    out[i + 2] = clamp(y + 1.772 * cb);
  }
  return out;
}

/**
 * Samples with only the Bits Stored bits significant: masked (what JPEG, JPEG-LS and RLE code as unsigned
 * P-bit samples) or sign-extended (what the JPEG 2000 encoders read for signed data). Bits above High Bit
 * are not pixel data (PS3.5 §8.1.1), so this loses nothing.
 */
function normaliseBits(data: Uint8Array, m: PixelModule, signExtend: boolean): Uint8Array {
  if (m.bitsStored >= m.bitsAllocated || (m.bitsAllocated !== 16 && m.bitsAllocated !== 8)) return data;
  const out = new Uint8Array(data);
  const mask = (1 << m.bitsStored) - 1;
  const shift = 32 - m.bitsStored;
  if (m.bitsAllocated === 8) {
    for (let i = 0; i < out.length; i++) out[i] = signExtend ? ((out[i]! << shift) >> shift) & 0xff : out[i]! & mask;
    return out;
  }
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i + 1 < out.length; i += 2) {
    const v = view.getUint16(i, true);
    view.setUint16(i, signExtend ? ((v << shift) >> shift) & 0xffff : v & mask, true);
  }
  return out;
}

function refuse(detail: string): PorticoError {
  return new PorticoError('NOT_ACCEPTABLE', detail);
}

/** Checks that the decoded pixels can be coded in `ts`; returns the photometric interpretation of the result. */
function plan(ts: string, t: Target, m: PixelModule, photometric: string): string {
  const colour = m.samplesPerPixel === 3;
  if (m.samplesPerPixel !== 1 && !colour) throw refuse(`${m.samplesPerPixel} samples per pixel cannot be encoded in ${ts}`);
  if (m.bitsAllocated !== 8 && m.bitsAllocated !== 16 && !(t.fn === 'encodeRle' && m.bitsAllocated === 32))
    throw refuse(`Bits Allocated ${m.bitsAllocated} cannot be encoded in ${ts}`);
  if (t.lossy && photometric === 'PALETTE COLOR') throw refuse('PALETTE COLOR indices cannot be compressed lossily');
  if (colour && !['RGB', 'YBR_FULL'].includes(photometric)) throw refuse(`${photometric} samples cannot be re-encoded (only RGB and YBR_FULL)`);
  switch (t.fn) {
    case 'encodeRle':
      return photometric;
    case 'encodeJpeg':
      if (t.lossy && (m.bitsAllocated !== 8 || m.bitsStored !== 8))
        throw refuse(`JPEG baseline takes 8-bit samples; this image has Bits Allocated ${m.bitsAllocated}, Bits Stored ${m.bitsStored}`);
      if (t.lossy && m.pixelRepresentation === 1) throw refuse('JPEG baseline takes unsigned samples');
      // libjpeg marks lossless colour as RGB (Adobe transform 0): YBR_FULL samples would be read as RGB.
      if (!t.lossy && colour && photometric !== 'RGB') throw refuse(`${photometric} cannot be JPEG lossless here: the codec labels the components RGB`);
      return t.lossy && colour ? 'YBR_FULL_422' : photometric;
    case 'encodeJpegLs':
      return photometric;
    case 'encodeJpeg2000':
      if (colour && m.bitsAllocated !== 8) throw refuse('colour JPEG 2000 is encoded here from 8-bit samples only');
      // RGB takes the multiple component transform; YBR_FULL is kept as it is when lossless (PS3.5 §8.2.4).
      if (colour && photometric === 'RGB') return t.lossy ? 'YBR_ICT' : 'YBR_RCT';
      if (colour && t.lossy) return 'YBR_ICT';
      return photometric;
    case 'encodeHtJpeg2000':
      if (colour && m.bitsAllocated !== 8) throw refuse('colour HTJ2K is encoded here from 8-bit samples only');
      // The encoder always applies the component transform to colour: it needs RGB input.
      if (colour && photometric === 'YBR_FULL' && !t.lossy) throw refuse('YBR_FULL cannot be HTJ2K lossless: the encoder needs RGB and the conversion rounds');
      if (colour) return t.lossy ? 'YBR_ICT' : 'YBR_RCT';
      return photometric;
  }
}

async function encodeFrame(ts: string, t: Target, m: PixelModule, photometric: string, samples: Uint8Array): Promise<Buffer> {
  const mod = await loadCodecs();
  const j2k = t.fn === 'encodeJpeg2000' || t.fn === 'encodeHtJpeg2000';
  let data = normaliseBits(samples, m, j2k && m.pixelRepresentation === 1);
  let pi = photometric;
  const needsRgb = (t.fn === 'encodeJpeg' && t.lossy) || (j2k && t.lossy) || t.fn === 'encodeHtJpeg2000';
  if (m.samplesPerPixel === 3 && pi === 'YBR_FULL' && needsRgb) {
    data = ybrFullToRgb(data);
    pi = 'RGB';
  }
  let bitsAllocated = m.bitsAllocated;
  let bitsStored = m.bitsStored;
  // JPEG-LS codes P = Bits Allocated bits: give it Bits Stored so MAXVAL fits the data (PS3.5 §8.2.3).
  if (t.fn === 'encodeJpegLs' && m.bitsAllocated === 16) bitsAllocated = Math.max(m.bitsStored, 9);
  // libjpeg and OpenJPEG read 16-bit words only for precisions above 8 (and decoders then give 8-bit samples).
  if ((t.fn === 'encodeJpeg' || t.fn === 'encodeJpeg2000') && m.bitsAllocated === 16 && m.bitsStored <= 8) bitsStored = 9;
  const ctx = new mod.Context({
    width: m.columns,
    height: m.rows,
    bitsAllocated,
    bitsStored,
    samplesPerPixel: m.samplesPerPixel,
    pixelRepresentation: m.pixelRepresentation,
    planarConfiguration: 0,
    photometricInterpretation: pi,
    decodedBuffer: data,
  });
  const codecs = mod.NativeCodecs as unknown as Record<Encoder, (c: unknown, p: Record<string, unknown>) => { getEncodedBuffer(): Uint8Array | undefined }>;
  let out: Uint8Array | undefined;
  try {
    // allowMct only matters for JPEG 2000: RGB takes the component transform, YBR_FULL must not.
    out = codecs[t.fn](ctx, { ...t.params, allowMct: pi === 'RGB' ? 1 : 0 }).getEncodedBuffer();
  } catch (err) {
    throw new PorticoError('NOT_ACCEPTABLE', `the ${ts} encoder refused this frame: ${String(err).slice(0, 200)}`, { cause: err });
  }
  if (!out || out.length === 0) throw new PorticoError('PROCESSING_FAILURE', `the ${ts} encoder produced nothing`);
  return Buffer.from(out);
}

async function transcodePixels(ds: RawElement[], px: RawElement, m: PixelModule, fromTs: string, toTs: string): Promise<void> {
  const native = NATIVE_TRANSFER_SYNTAXES.has(fromTs);
  if (!native && !canDecode(fromTs)) throw refuse(`pixel data in ${fromTs} cannot be decoded here`);
  if (m.bitsAllocated === 1 && !NATIVE_TARGETS.has(toTs)) throw refuse(`1-bit pixel data (binary segmentation) cannot be encoded in ${toTs}`);
  const size = frameBytes(m);
  let frames: Buffer[];
  if (native) {
    const value = px.value ?? Buffer.alloc(0);
    const count = Math.min(m.numberOfFrames, Math.floor(value.length / size));
    if (count === 0) throw new PorticoError('CANNOT_UNDERSTAND', 'native pixel data is shorter than one frame');
    frames = Array.from({ length: count }, (_, i) => value.subarray(i * size, (i + 1) * size));
  } else frames = encapsulatedFrames(px.fragments ?? [], m.numberOfFrames, fromTs);

  const srcPhotometric = native ? m.photometricInterpretation : decodedPhotometric(fromTs, m.photometricInterpretation, m.samplesPerPixel);
  const decoded = async (frame: Buffer): Promise<Uint8Array> => {
    let data: Uint8Array = frame;
    let planar = m.planarConfiguration;
    if (!native) {
      const d = await decodeFrame(fromTs, m, frame);
      data = d.data.subarray(0, size);
      planar = d.planarConfiguration;
    }
    return m.samplesPerPixel === 3 && planar === 1 ? interleave(data, m) : data;
  };
  const sourceLossy = isLossyTransferSyntax(fromTs) || text(find(ds, tags.lossy)) === '01';

  if (NATIVE_TARGETS.has(toTs)) {
    const out: Uint8Array[] = [];
    for (const f of frames) out.push(await decoded(f));
    px.fragments = undefined;
    px.value = Buffer.concat(out);
    px.vr = m.bitsAllocated > 8 ? 'OW' : 'OB';
    finishHeader(ds, m, srcPhotometric, sourceLossy);
    return;
  }
  const t = TARGETS[toTs]!;
  const photometric = plan(toTs, t, m, srcPhotometric);
  const fragments: Buffer[] = [];
  let encodedBytes = 0;
  for (const f of frames) {
    const e = await encodeFrame(toTs, t, m, srcPhotometric, await decoded(f));
    fragments.push(e);
    encodedBytes += e.length;
  }
  // Basic Offset Table: offset of each frame's item from the first item (PS3.5 §A.4).
  const bot = Buffer.alloc(4 * fragments.length);
  let at = 0;
  fragments.forEach((f, i) => {
    bot.writeUInt32LE(at, 4 * i);
    at += 8 + f.length + (f.length % 2);
  });
  px.value = undefined;
  px.fragments = [fragments.length > 1 ? bot : Buffer.alloc(0), ...fragments];
  px.vr = 'OB';
  finishHeader(ds, m, photometric, sourceLossy || t.lossy, t.fn === 'encodeRle' && m.samplesPerPixel === 3 ? 1 : 0);
  if (t.lossy && t.method) {
    const ratio = (size * frames.length) / Math.max(1, encodedBytes);
    appendValue(ds, tags.lossyRatio, 'DS', ratio.toFixed(ratio >= 100 ? 0 : 2));
    appendValue(ds, tags.lossyMethod, 'CS', t.method);
  }
}

/**
 * Photometric Interpretation, Planar Configuration (RLE codes colour by plane and says 1, PS3.5 §G.2 note;
 * everything else here is interleaved), Lossy Image Compression; the Extended Offset Table describes the
 * old encoding and goes.
 */
function finishHeader(ds: RawElement[], m: PixelModule, photometric: string, lossy: boolean, planar = 0): void {
  if (photometric !== m.photometricInterpretation) setString(ds, tags.photometric, 'CS', photometric);
  if (m.samplesPerPixel > 1) setUs(ds, tags.planar, planar);
  if (lossy) setString(ds, tags.lossy, 'CS', '01');
  const i = ds.findIndex((e) => e.tag === tags.extendedOffsetTable);
  if (i >= 0) ds.splice(i, 1);
  const j = ds.findIndex((e) => e.tag === tags.extendedOffsetTableLengths);
  if (j >= 0) ds.splice(j, 1);
}

function appendValue(ds: RawElement[], tag: number, vr: string, v: string): void {
  const old = text(find(ds, tag))?.trim();
  setString(ds, tag, vr, old ? `${old}\\${v}` : v);
}

// ---- mutations ----

interface Level {
  readonly elements: RawElement[];
  /** Specific Character Set in force for this data set or item */
  readonly terms: readonly string[];
}

function termsOf(elements: readonly RawElement[], inherited: readonly string[]): readonly string[] {
  const own = find(elements, tags.specificCharacterSet);
  if (!own?.value) return inherited;
  return normalizeSpecificCharacterSet(own.value.toString('latin1').split('\\'));
}

/** Every data set the path's sequence steps lead to (each item of each step). */
function levels(root: RawElement[], path: readonly string[]): Level[] {
  let current: Level[] = [{ elements: root, terms: termsOf(root, []) }];
  for (const step of path.slice(0, -1)) {
    const tag = parseTag(step);
    current = current.flatMap((l) => (find(l.elements, tag)?.items ?? []).map((item) => ({ elements: item, terms: termsOf(item, l.terms) })));
  }
  return current;
}

function parseTag(step: string): number {
  if (!/^[0-9A-Fa-f]{8}$/.test(step)) throw new PorticoError('NOT_ACCEPTABLE', `mutation path step ${JSON.stringify(step)} is not a tag of 8 hex digits`);
  return Number.parseInt(step, 16) >>> 0;
}

/** Text in `terms`, or undefined when that character set cannot carry it. @see PS3.5 §6.1 */
function encodeText(s: string, terms: readonly string[]): Buffer | undefined {
  if (/^[\x00-\x7f]*$/.test(s)) return Buffer.from(s, 'latin1');
  const first = terms[0] ?? '';
  if (first === 'ISO_IR 192') return Buffer.from(s, 'utf8');
  if (terms.length === 1 && first === 'ISO_IR 100' && /^[\x00-\xff]*$/.test(s)) return Buffer.from(s, 'latin1');
  return undefined;
}

/** Re-encodes every text value of the instance as UTF-8 and declares ISO_IR 192 wherever a character set was declared. */
function convertToUtf8(elements: RawElement[], inherited: readonly string[], top: boolean): void {
  const terms = termsOf(elements, inherited);
  const decoder = createCharsetDecoder(terms);
  for (const el of elements) {
    if (el.items) for (const item of el.items) convertToUtf8(item, terms, false);
    else if (el.value && CHARSET_VRS.has(el.vr)) el.value = Buffer.from(decoder.decode(el.value, el.vr).replace(/ +$/, ''), 'utf8');
  }
  if (top || find(elements, tags.specificCharacterSet)) setString(elements, tags.specificCharacterSet, 'CS', 'ISO_IR 192');
}

function stringValue(el: RawElement, terms: readonly string[]): string {
  const raw = el.value ?? Buffer.alloc(0);
  const s = CHARSET_VRS.has(el.vr) ? createCharsetDecoder(terms).decode(raw, el.vr) : raw.toString('latin1');
  return s.replace(el.vr === 'UI' ? /[\0 ]+$/ : / +$/, '');
}

/** Encodes a value for `vr`; strings via `textBytes` (which may convert the instance's character set). */
function encodeValue(vr: string, values: readonly (string | number)[], textBytes: (s: string) => Buffer): Buffer {
  // DS holds at most 16 characters (PS3.5 Table 6.2-1): 0.1 + 0.2 must not become 0.30000000000000004.
  const format = (v: string | number): string =>
    vr === 'DS' && typeof v === 'number' && String(v).length > 16 ? String(Number(v.toPrecision(10))) : String(v);
  if (STRING_VRS.has(vr)) return textBytes(values.map(format).join('\\'));
  const num = values.map((v) => (typeof v === 'number' ? v : Number(v)));
  const size = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, AT: 4 }[vr];
  if (size === undefined) throw new PorticoError('NOT_ACCEPTABLE', `a mutation cannot set a value of VR ${vr}`);
  const b = Buffer.alloc(size * num.length);
  values.forEach((v, i) => {
    const n = num[i]!;
    if (vr === 'AT') {
      const t = typeof v === 'string' ? parseTag(v) : n;
      b.writeUInt16LE(t >>> 16, 4 * i);
      b.writeUInt16LE(t & 0xffff, 4 * i + 2);
      return;
    }
    if (!Number.isFinite(n)) throw new PorticoError('NOT_ACCEPTABLE', `${JSON.stringify(v)} is not a number for VR ${vr}`);
    if (vr === 'US') b.writeUInt16LE(n, 2 * i);
    else if (vr === 'SS') b.writeInt16LE(n, 2 * i);
    else if (vr === 'UL') b.writeUInt32LE(n, 4 * i);
    else if (vr === 'SL') b.writeInt32LE(n, 4 * i);
    else if (vr === 'FL') b.writeFloatLE(n, 4 * i);
    else b.writeDoubleLE(n, 8 * i);
  });
  return b;
}

/**
 * Applies set/remove/modify in order. @see mutation.ts for the path semantics.
 * @throws NOT_ACCEPTABLE for a malformed path, a bad regular expression, a VR that cannot be set
 */
export function applyMutations(root: RawElement[], mutations: readonly Mutation[]): void {
  let utf8 = false;
  for (const mu of mutations) {
    if (mu.path.length === 0) throw new PorticoError('NOT_ACCEPTABLE', 'a mutation path is empty');
    const tag = parseTag(mu.path[mu.path.length - 1]!);
    if (tag >>> 16 === 0x0002) throw new PorticoError('NOT_ACCEPTABLE', 'File Meta Information (group 0002) is written by the transform, not mutated');
    for (const level of levels(root, mu.path)) {
      // Text this level's character set cannot carry switches the whole instance to UTF-8, once.
      const textBytes = (s: string): Buffer => {
        const b = encodeText(s, utf8 ? ['ISO_IR 192'] : termsOf(level.elements, level.terms));
        if (b) return b;
        convertToUtf8(root, [], true);
        utf8 = true;
        return Buffer.from(s, 'utf8');
      };
      switch (mu.op) {
        case 'remove': {
          const i = level.elements.findIndex((e) => e.tag === tag);
          if (i >= 0) level.elements.splice(i, 1);
          break;
        }
        case 'set':
          put(level.elements, { tag, vr: mu.vr, value: encodeValue(mu.vr, mu.value, textBytes) });
          break;
        case 'modify': {
          const el = find(level.elements, tag);
          if (!el?.value) break;
          if (!STRING_VRS.has(el.vr)) throw new PorticoError('NOT_ACCEPTABLE', `modify applies to string values; ${tagHex(tag)} has VR ${el.vr}`);
          let re: RegExp;
          try {
            re = new RegExp(mu.pattern, mu.flags);
          } catch (err) {
            throw new PorticoError('NOT_ACCEPTABLE', `modify pattern is not a valid regular expression: ${(err as Error).message}`, { cause: err });
          }
          const terms = utf8 ? ['ISO_IR 192'] : termsOf(level.elements, level.terms);
          const multi = !['LT', 'ST', 'UT', 'UR'].includes(el.vr);
          const values = multi ? stringValue(el, terms).split('\\') : [stringValue(el, terms)];
          const changed = values.map((v) => v.replace(re, mu.replacement)).join('\\');
          el.value = textBytes(changed);
          break;
        }
      }
    }
  }
}
