/**
 * Decompression of a stored instance to Explicit VR Little Endian (1.2.840.10008.1.2.1), as a stream.
 *
 * The header (everything before Pixel Data) is small: it is read element by element (raw-dataset.ts:
 * VRs an Implicit VR data set leaves out come from the dictionary; big endian values are swapped, deflated
 * data sets inflated), adjusted, and written again as Explicit VR Little Endian Part 10 with every value's
 * bytes as stored. (dcmjs, used here before, rewrote every string as UTF-8 whatever the Specific Character
 * Set, which corrupted ISO_IR 100/144/… names.) Pixel Data is then written as a native OB/OW value whose
 * length is known up front (frames × rows × columns × samples × bytes), decoded frame by frame from the
 * caller's `readFrame`, so an instance costs its header plus one frame of memory and the total length is
 * known before the first byte (a Content-Length for each multipart part).
 *
 * What changes besides the encoding: Transfer Syntax UID; Photometric Interpretation where the decoder
 * changes it (JPEG YBR_* → RGB, JPEG 2000 YBR_RCT/YBR_ICT → RGB); Planar Configuration 0 for decoded
 * colour; Lossy Image Compression "01" kept/set for lossy sources (PS3.3 §C.7.6.1.1.5: once lossy, always
 * flagged); the Extended Offset Table (7FE0,0001/0002), meaningful only for encapsulated data, is dropped.
 * Elements after Pixel Data (trailing padding) are not copied.
 * @see PS3.5 §8.2.1, §A.2; PS3.10 §7.1; PS3.18 §8.7.3.5.2
 */
import { inflateRawSync, inflateSync } from 'node:zlib';
import { readFileMetaInformation, TRANSFER_SYNTAX, writeFileMetaInformation, type FileMetaInformation } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { canDecode, decodedPhotometric, decodeFrame, isLossyTransferSyntax, NATIVE_TRANSFER_SYNTAXES } from './codecs.ts';
import type { PixelModule } from './pixel-module.ts';
import { find, put, readDataset, text, writeDataset, type RawElement } from './raw-dataset.ts';

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/** True when an instance stored in `transferSyntaxUid` can be served as Explicit VR Little Endian. */
export function canDecompress(transferSyntaxUid: string): boolean {
  return canDecode(transferSyntaxUid);
}

export interface DecompressInput {
  readonly transferSyntaxUid: string;
  /**
   * The stored bytes before the Pixel Data element; the whole object when `module` is undefined and for a
   * deflated data set.
   */
  readonly header: Uint8Array;
  /** the pixel module, or undefined for an instance without (usable) Pixel Data: then the whole object is re-encoded as read */
  readonly module?: PixelModule | undefined;
  /** number of frames to write (the frames that exist) */
  readonly frameCount: number;
  /** bytes of frame n (1-based) as stored: native samples or codestream */
  readFrame(n: number): Promise<Uint8Array>;
}

export interface DecompressedInstance {
  /** exact byte length of the stream */
  readonly length: number;
  readonly photometricInterpretation?: string | undefined;
  /** Part-10 bytes, chunk by chunk (header, pixel element header, one chunk per frame, padding) */
  readonly body: AsyncGenerator<Uint8Array>;
}

/**
 * Plans and streams the Explicit VR Little Endian copy of an instance.
 * @throws NOT_ACCEPTABLE when the stored transfer syntax cannot be decoded, PROCESSING_FAILURE when the
 *   stored header cannot be read again
 */
export function decompressInstance(input: DecompressInput): DecompressedInstance {
  const ts = input.transferSyntaxUid;
  if (!canDecode(ts)) throw new PorticoError('NOT_ACCEPTABLE', `instances in transfer syntax ${ts} cannot be decompressed here`);
  let ds: RawElement[];
  let meta: FileMetaInformation;
  try {
    const buf = Buffer.from(input.header.buffer, input.header.byteOffset, input.header.byteLength);
    meta = readFileMetaInformation(buf);
    let body = buf.subarray(meta.datasetOffset);
    if (ts === TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian) {
      // Raw deflate as PS3.5 §A.5 says, or zlib-wrapped as some writers produce.
      const zlibWrapped = body.length >= 2 && (body[0]! & 0x0f) === 8 && ((body[0]! << 8) | body[1]!) % 31 === 0;
      body = zlibWrapped ? inflateSync(body) : inflateRawSync(body);
    }
    // Without a pixel module (no Pixel Data, or one without Rows/Columns) the whole object is the header:
    // read to its end, so that a native value we cannot describe is still copied.
    ds = readDataset(body, { explicitVr: ts !== TRANSFER_SYNTAX.ImplicitVRLittleEndian, littleEndian: ts !== TRANSFER_SYNTAX.ExplicitVRBigEndian });
  } catch (err) {
    throw new PorticoError('PROCESSING_FAILURE', `the stored header cannot be re-encoded: ${String(err).slice(0, 200)}`, { cause: err });
  }
  if (!input.module && !NATIVE_TRANSFER_SYNTAXES.has(ts) && find(ds, 0x7fe00010))
    throw new PorticoError('NOT_ACCEPTABLE', 'encapsulated pixel data without an image pixel description cannot be decompressed');
  // Pixel Data is written after the header: with a module, nothing from it on is kept (float and
  // double-float pixel data, the Extended Offset Table, trailing padding go).
  const drop = input.module ? (tag: number) => tag >= 0x7fe00000 : (tag: number) => tag === 0x7fe00001 || tag === 0x7fe00002 || tag === 0xfffcfffc;
  ds = ds.filter((e) => !drop(e.tag));
  const setText = (tag: number, vr: string, value: string): void => put(ds, { tag, vr, value: Buffer.from(value, 'latin1') });

  const m = input.module;
  let pixelLength = 0;
  let photometric: string | undefined;
  let frameSize = 0;
  if (m) {
    const encapsulated = !NATIVE_TRANSFER_SYNTAXES.has(ts);
    photometric = decodedPhotometric(ts, m.photometricInterpretation, m.samplesPerPixel);
    if (photometric !== m.photometricInterpretation) setText(0x00280004, 'CS', photometric);
    if (encapsulated && m.samplesPerPixel > 1) put(ds, { tag: 0x00280006, vr: 'US', value: Buffer.from([0, 0]) });
    if (isLossyTransferSyntax(ts)) setText(0x00282110, 'CS', '01');
    frameSize =
      m.bitsAllocated === 1 ? Math.ceil((m.rows * m.columns * m.samplesPerPixel) / 8) : m.rows * m.columns * m.samplesPerPixel * Math.ceil(m.bitsAllocated / 8);
    // Bit-packed 1-bit frames follow each other without byte alignment (PS3.5 §8.1.1).
    pixelLength = m.bitsAllocated === 1 ? Math.ceil((m.rows * m.columns * m.samplesPerPixel * input.frameCount) / 8) : frameSize * input.frameCount;
  }
  // Values are copied byte for byte (text in its Specific Character Set, over-long dates as received).
  const sopClassUid = text(find(ds, 0x00080016)) || meta.sopClassUid;
  const sopInstanceUid = text(find(ds, 0x00080018)) || meta.sopInstanceUid;
  let fileMeta: Buffer;
  try {
    fileMeta = writeFileMetaInformation({ sopClassUid, sopInstanceUid, transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN });
  } catch (err) {
    throw new PorticoError('PROCESSING_FAILURE', `the stored header cannot be re-encoded: ${(err as Error).message}`, { cause: err });
  }
  const header = Buffer.concat([fileMeta, ...writeDataset(ds, true)]);
  const padded = pixelLength + (pixelLength % 2);
  const length = header.length + (m ? 12 + padded : 0);

  async function* body(): AsyncGenerator<Uint8Array> {
    yield header;
    if (!m) return;
    const el = Buffer.alloc(12);
    el.writeUInt16LE(0x7fe0, 0);
    el.writeUInt16LE(0x0010, 2);
    el.write(m.bitsAllocated > 8 ? 'OW' : 'OB', 4, 'latin1');
    el.writeUInt32LE(padded, 8);
    yield el;
    if (m.bitsAllocated === 1) {
      // realigned frames → one continuous bit stream again
      yield* packBits(input, m);
    } else {
      for (let n = 1; n <= input.frameCount; n++) {
        const decoded = await decodeFrame(ts, m, await input.readFrame(n));
        let data = decoded.data.subarray(0, frameSize);
        if (m.samplesPerPixel === 3 && !NATIVE_TRANSFER_SYNTAXES.has(ts) && decoded.planarConfiguration === 1) data = interleave(data, m);
        if (data.length < frameSize) throw new PorticoError('PROCESSING_FAILURE', `frame ${n} decoded to ${data.length} bytes, expected ${frameSize}`);
        yield data;
      }
    }
    if (padded !== pixelLength) yield Uint8Array.of(0);
  }
  return { length, photometricInterpretation: photometric, body: body() };
}

/** Planar (R…G…B…) to interleaved (RGBRGB…) samples. */
function interleave(data: Uint8Array, m: PixelModule): Uint8Array {
  const bytes = Math.ceil(m.bitsAllocated / 8);
  const n = m.rows * m.columns;
  const out = new Uint8Array(data.length);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) for (let b = 0; b < bytes; b++) out[(p * 3 + c) * bytes + b] = data[(c * n + p) * bytes + b]!;
  return out;
}

/** 1-bit frames (each starting at bit 0) packed back into one bit stream. */
async function* packBits(input: DecompressInput, m: PixelModule): AsyncGenerator<Uint8Array> {
  const bits = m.rows * m.columns * m.samplesPerPixel;
  let carry = 0;
  let carryBits = 0;
  for (let n = 1; n <= input.frameCount; n++) {
    const frame = await input.readFrame(n);
    const out = new Uint8Array(Math.ceil((carryBits + bits) / 8));
    let o = 0;
    let acc = carry;
    let accBits = carryBits;
    for (let i = 0; i < bits; i++) {
      acc |= (((frame[i >> 3] ?? 0) >> (i & 7)) & 1) << accBits;
      if (++accBits === 8) {
        out[o++] = acc;
        acc = 0;
        accBits = 0;
      }
    }
    carry = acc;
    carryBits = accBits;
    yield out.subarray(0, o);
  }
  if (carryBits > 0) yield Uint8Array.of(carry);
}
