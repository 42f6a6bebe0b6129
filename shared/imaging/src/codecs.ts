/**
 * Decoding one frame of any transfer syntax Portico stores into native little-endian samples.
 *
 * Native data needs no codec (big endian is byte-swapped); encapsulated data goes through the WASM codecs
 * of dcmjs-codecs (libjpeg-turbo incl. 12-bit and lossless, CharLS, OpenJPEG, OpenJPH, and its RLE
 * decoder), called frame by frame on the bytes of that frame only, so a multi-frame object is never decoded
 * whole. The codec module is initialised once per process, lazily.
 *
 * After decoding, the photometric interpretation may have changed: JPEG YBR_FULL(_422) and
 * YBR_PARTIAL_* come out as RGB (libjpeg converts colour), JPEG 2000 YBR_RCT/YBR_ICT come out as RGB
 * (the codestream's inverse component transform), and every decoder yields interleaved samples
 * (planar configuration 0). {@link DecodedFrame} says what the samples are.
 * @see PS3.5 §8.2 (native and encapsulated pixel data), Annex A.4
 */
import { createRequire } from 'node:module';
import { PorticoError } from '@portico/errors';
import type { PixelModule } from './pixel-module.ts';

/** Transfer syntaxes whose pixel data is native (not encapsulated). @see PS3.5 §A.1–A.3, A.5 */
export const NATIVE_TRANSFER_SYNTAXES: ReadonlySet<string> = new Set([
  '1.2.840.10008.1.2',
  '1.2.840.10008.1.2.1',
  '1.2.840.10008.1.2.2',
  '1.2.840.10008.1.2.1.99',
]);

type CodecFn = 'decodeRle' | 'decodeJpeg' | 'decodeJpegLs' | 'decodeJpeg2000' | 'decodeHtJpeg2000';

/** Encapsulated transfer syntax → dcmjs-codecs decoder. @see PS3.6 Table A-1 */
const DECODERS: Readonly<Record<string, CodecFn>> = {
  '1.2.840.10008.1.2.5': 'decodeRle',
  '1.2.840.10008.1.2.4.50': 'decodeJpeg', // baseline 8-bit
  '1.2.840.10008.1.2.4.51': 'decodeJpeg', // extended 12-bit
  '1.2.840.10008.1.2.4.57': 'decodeJpeg', // lossless process 14
  '1.2.840.10008.1.2.4.70': 'decodeJpeg', // lossless SV1
  '1.2.840.10008.1.2.4.80': 'decodeJpegLs',
  '1.2.840.10008.1.2.4.81': 'decodeJpegLs',
  '1.2.840.10008.1.2.4.90': 'decodeJpeg2000',
  '1.2.840.10008.1.2.4.91': 'decodeJpeg2000',
  '1.2.840.10008.1.2.4.201': 'decodeHtJpeg2000',
  '1.2.840.10008.1.2.4.202': 'decodeHtJpeg2000',
  '1.2.840.10008.1.2.4.203': 'decodeHtJpeg2000',
};

/** True when frames of this transfer syntax can be decoded here. Deflated data sets need the whole stream inflated first (see the caller). */
export function canDecode(transferSyntaxUid: string): boolean {
  return NATIVE_TRANSFER_SYNTAXES.has(transferSyntaxUid) || transferSyntaxUid in DECODERS;
}

/** Whether decoding changes the samples into lossless output of the stored values (for LossyImageCompression bookkeeping). */
export function isLossyTransferSyntax(transferSyntaxUid: string): boolean {
  return ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.203'].includes(
    transferSyntaxUid,
  );
}

/**
 * The Photometric Interpretation of decoded samples: what {@link decodeFrame} yields for a stored
 * interpretation and transfer syntax. @see PS3.5 §8.2.1 (JPEG colour), §8.2.4 (JPEG 2000 multi-component transform)
 */
export function decodedPhotometric(transferSyntaxUid: string, photometric: string, samplesPerPixel: number): string {
  if (samplesPerPixel !== 3) return photometric;
  const jpeg = ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'].includes(transferSyntaxUid);
  if (jpeg && photometric.startsWith('YBR')) return 'RGB';
  const j2k = /^1\.2\.840\.10008\.1\.2\.4\.(9[0-3]|20[1-3])$/.test(transferSyntaxUid);
  if (j2k && (photometric === 'YBR_RCT' || photometric === 'YBR_ICT')) return 'RGB';
  return photometric;
}

/** One decoded frame: little-endian samples, `bitsAllocated` per sample, interleaved unless `planarConfiguration` is 1. */
export interface DecodedFrame {
  readonly data: Uint8Array;
  readonly photometricInterpretation: string;
  readonly planarConfiguration: number;
  /** the samples came out of a codec (aligned at bit 0) rather than from native data */
  readonly fromCodec: boolean;
}

interface CodecContext {
  getDecodedBuffer(): Uint8Array | undefined;
  getPhotometricInterpretation(): string | undefined;
  getPlanarConfiguration(): number | undefined;
}
interface CodecsModule {
  NativeCodecs: Record<CodecFn, (ctx: unknown, params?: Record<string, unknown>) => CodecContext> & {
    initializeAsync(opts?: Record<string, unknown>): Promise<void>;
  };
  Context: new (attrs: Record<string, unknown>) => unknown;
}

let codecs: Promise<CodecsModule> | undefined;

/** The dcmjs-codecs module with its WASM initialised (once per process). */
export function loadCodecs(): Promise<CodecsModule> {
  codecs ??= (async () => {
    const mod = createRequire(import.meta.url)('dcmjs-codecs') as CodecsModule;
    await mod.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
    return mod;
  })();
  codecs.catch(() => (codecs = undefined));
  return codecs;
}

/** Big-endian words to little endian (OW of Explicit VR Big Endian, PS3.5 §A.3). Returns a copy. */
export function swap16(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let i = 0; i + 1 < data.length; i += 2) {
    out[i] = data[i + 1]!;
    out[i + 1] = data[i]!;
  }
  return out;
}

/**
 * Decodes one frame. `frame` holds the frame's bytes: the native samples, or the concatenated fragments
 * of its codestream. @throws NOT_ACCEPTABLE for a transfer syntax without a decoder here, or a codestream
 * the decoder rejects (the client asked for something we cannot produce from this object).
 */
export async function decodeFrame(transferSyntaxUid: string, m: PixelModule, frame: Uint8Array): Promise<DecodedFrame> {
  if (NATIVE_TRANSFER_SYNTAXES.has(transferSyntaxUid)) {
    const bigEndian = transferSyntaxUid === '1.2.840.10008.1.2.2';
    const data = bigEndian && m.bitsAllocated === 16 ? swap16(frame) : frame;
    return { data, photometricInterpretation: m.photometricInterpretation, planarConfiguration: m.planarConfiguration, fromCodec: false };
  }
  const fn = DECODERS[transferSyntaxUid];
  if (!fn) throw new PorticoError('NOT_ACCEPTABLE', `pixel data in transfer syntax ${transferSyntaxUid} cannot be decoded here`);
  const mod = await loadCodecs();
  const ctx = new mod.Context({
    width: m.columns,
    height: m.rows,
    bitsAllocated: m.bitsAllocated,
    bitsStored: m.bitsStored,
    samplesPerPixel: m.samplesPerPixel,
    pixelRepresentation: m.pixelRepresentation,
    planarConfiguration: m.planarConfiguration,
    photometricInterpretation: m.photometricInterpretation,
    encodedBuffer: frame,
  });
  let out: CodecContext;
  try {
    // libjpeg converts YCbCr to RGB when asked, as dcmjs-codecs' own JPEG codec does for every non-RGB input.
    out = mod.NativeCodecs[fn](ctx, fn === 'decodeJpeg' ? { convertColorspaceToRgb: m.samplesPerPixel === 3 } : {});
  } catch (err) {
    throw new PorticoError('NOT_ACCEPTABLE', `the ${fn.slice(6)} codestream of this frame could not be decoded: ${String(err).slice(0, 200)}`, { cause: err });
  }
  const data = out.getDecodedBuffer();
  const expected = m.rows * m.columns * m.samplesPerPixel * (m.bitsAllocated > 8 ? 2 : 1);
  if (!data || data.length < expected) throw new PorticoError('NOT_ACCEPTABLE', `decoding gave ${data?.length ?? 0} bytes, the frame needs ${expected}`);
  const photometric = decodedPhotometric(transferSyntaxUid, m.photometricInterpretation, m.samplesPerPixel);
  return {
    data: data.length === expected ? data : data.subarray(0, expected),
    photometricInterpretation: photometric,
    planarConfiguration: fn === 'decodeRle' ? (out.getPlanarConfiguration() ?? m.planarConfiguration) : 0,
    fromCodec: true,
  };
}
