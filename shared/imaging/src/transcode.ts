/**
 * Decompression of a stored instance to Explicit VR Little Endian (1.2.840.10008.1.2.1), as a stream.
 *
 * The header (everything before Pixel Data) is small: it is read with dcmjs (which knows the VRs an
 * Implicit VR data set leaves out, and reads big endian and deflated data sets), adjusted, and written
 * again as Explicit VR Little Endian Part 10. Pixel Data is then written as a native OB/OW value whose
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
import { createRequire } from 'node:module';
import { PORTICO_IMPLEMENTATION_CLASS_UID, PORTICO_IMPLEMENTATION_VERSION_NAME } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { canDecode, decodedPhotometric, decodeFrame, isLossyTransferSyntax, NATIVE_TRANSFER_SYNTAXES } from './codecs.ts';
import type { PixelModule } from './pixel-module.ts';

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

interface DcmjsElement {
  vr: string;
  Value: unknown[];
}
interface DcmjsDict {
  meta: Record<string, DcmjsElement>;
  dict: Record<string, DcmjsElement>;
  write(opts?: Record<string, unknown>): ArrayBuffer;
}
interface Dcmjs {
  data: { DicomMessage: { readFile(buf: ArrayBuffer, opts: Record<string, unknown>): DcmjsDict } };
  log: { setLevel(level: string): void };
}
let dcmjs: Dcmjs | undefined;
function loadDcmjs(): Dcmjs {
  if (!dcmjs) {
    dcmjs = createRequire(import.meta.url)('dcmjs') as Dcmjs;
    // dcmjs logs unknown tags and VR fixes at warn level to the console: not patient data, but not ours to print.
    dcmjs.log.setLevel('error');
  }
  return dcmjs;
}

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

function set(dict: Record<string, DcmjsElement>, tag: string, vr: string, value: unknown): void {
  dict[tag] = { vr, Value: [value] };
}

/**
 * Plans and streams the Explicit VR Little Endian copy of an instance.
 * @throws NOT_ACCEPTABLE when the stored transfer syntax cannot be decoded, PROCESSING_FAILURE when the
 *   stored header cannot be read again
 */
export function decompressInstance(input: DecompressInput): DecompressedInstance {
  const ts = input.transferSyntaxUid;
  if (!canDecode(ts)) throw new PorticoError('NOT_ACCEPTABLE', `instances in transfer syntax ${ts} cannot be decompressed here`);
  let dd: DcmjsDict;
  try {
    const ab = input.header.buffer.slice(input.header.byteOffset, input.header.byteOffset + input.header.byteLength) as ArrayBuffer;
    // Without a pixel module (no Pixel Data, or one without Rows/Columns) the whole object is the header:
    // read to its end, so that a native value we cannot describe is still copied.
    const until = input.module ? { untilTag: '7FE00010', includeUntilTagValue: false } : {};
    dd = loadDcmjs().data.DicomMessage.readFile(ab, { ignoreErrors: true, ...until, noCopy: false });
  } catch (err) {
    throw new PorticoError('PROCESSING_FAILURE', `the stored header cannot be re-encoded: ${String(err).slice(0, 200)}`, { cause: err });
  }
  if (!input.module && !NATIVE_TRANSFER_SYNTAXES.has(ts) && dd.dict['7FE00010'])
    throw new PorticoError('NOT_ACCEPTABLE', 'encapsulated pixel data without an image pixel description cannot be decompressed');
  const drop = input.module ? ['7FE00010', '7FE00001', '7FE00002', '7FE00008', '7FE00009', 'FFFCFFFC'] : ['7FE00001', '7FE00002', 'FFFCFFFC'];
  for (const tag of drop) delete dd.dict[tag];
  set(dd.meta, '00020010', 'UI', EXPLICIT_VR_LITTLE_ENDIAN);
  set(dd.meta, '00020012', 'UI', PORTICO_IMPLEMENTATION_CLASS_UID);
  set(dd.meta, '00020013', 'SH', PORTICO_IMPLEMENTATION_VERSION_NAME);
  delete dd.meta['00020000'];

  const m = input.module;
  let pixelLength = 0;
  let photometric: string | undefined;
  let frameSize = 0;
  if (m) {
    const encapsulated = !NATIVE_TRANSFER_SYNTAXES.has(ts);
    photometric = decodedPhotometric(ts, m.photometricInterpretation, m.samplesPerPixel);
    if (photometric !== m.photometricInterpretation) set(dd.dict, '00280004', 'CS', photometric);
    if (encapsulated && m.samplesPerPixel > 1) set(dd.dict, '00280006', 'US', 0);
    if (isLossyTransferSyntax(ts)) set(dd.dict, '00282110', 'CS', '01');
    frameSize =
      m.bitsAllocated === 1 ? Math.ceil((m.rows * m.columns * m.samplesPerPixel) / 8) : m.rows * m.columns * m.samplesPerPixel * Math.ceil(m.bitsAllocated / 8);
    // Bit-packed 1-bit frames follow each other without byte alignment (PS3.5 §8.1.1).
    pixelLength = m.bitsAllocated === 1 ? Math.ceil((m.rows * m.columns * m.samplesPerPixel * input.frameCount) / 8) : frameSize * input.frameCount;
  }
  // Real files carry over-long values (dates as 1993.11.24, long CS): keep them as received.
  const header = Buffer.from(dd.write({ fragmentMultiframe: false, allowInvalidVRLength: true }));
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
