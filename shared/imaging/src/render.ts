/**
 * Rendering one frame to a consumer image (JPEG or PNG): decode (codecs.ts), grey-scale or colour pipeline
 * to 8-bit (lut.ts), then crop, flip, scale and encode with sharp (libvips).
 *
 * Why not dcmjs-imaging: it renders from a whole dcmjs data set, i.e. every frame of the object parsed
 * into memory; here the route reads exactly one frame's bytes with a ranged read and the header comes from
 * the index, so a 2 GB multi-frame costs one frame. The LUT stages are small and are tested on their own.
 * @see PS3.18 §8.3.5 (rendered resources), PS3.4 §N.2 (grayscale pipeline)
 */
import type SharpModule from 'sharp';
import type { DicomJsonDataset } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { decodeFrame } from './codecs.ts';
import { applyModality, colourToRgb, paletteToRgb, storedValues, toDisplay } from './lut.ts';
import { clipRegion, fitInside, type RenderOptions } from './params.ts';
import { greyscaleTransforms, paletteLuts, type BinaryResolver, type PixelModule } from './pixel-module.ts';

type SharpFactory = typeof SharpModule;
let sharpLoaded: Promise<SharpFactory> | undefined;

/**
 * sharp (libvips) is loaded on the first rendered image, not at start: it adds ~23 MB of resident memory
 * to every process that imports this package (all of Portico's roles do, for decoding and transcoding),
 * and most never render.
 */
function loadSharp(): Promise<SharpFactory> {
  sharpLoaded ??= import('sharp').then(({ default: sharp }) => {
    // libvips keeps a cache of operations for repeated pipelines on files; ours are one-shot raw buffers.
    sharp.cache(false);
    sharp.concurrency(1);
    return sharp;
  });
  sharpLoaded.catch(() => (sharpLoaded = undefined));
  return sharpLoaded;
}

/** 8-bit pixels ready for encoding: 1 channel (grey) or 3 (RGB), interleaved. */
export interface DisplayPixels {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

export interface RenderInput {
  readonly transferSyntaxUid: string;
  readonly module: PixelModule;
  /** the instance's DICOM JSON (for LUTs and windows) */
  readonly json: DicomJsonDataset;
  /** 1-based */
  readonly frameNumber: number;
  /** the bytes of that frame (native samples or codestream) */
  readonly frame: Uint8Array;
  readonly resolveBinary: BinaryResolver;
}

/** Decodes a frame and maps it to 8-bit display values (grey or RGB). */
export async function displayPixels(input: RenderInput, window?: RenderOptions['window']): Promise<DisplayPixels> {
  const m = input.module;
  const decoded = await decodeFrame(input.transferSyntaxUid, m, input.frame);
  const base = { width: m.columns, height: m.rows };
  const pi = decoded.photometricInterpretation;
  if (m.samplesPerPixel === 1 && (pi === 'MONOCHROME1' || pi === 'MONOCHROME2' || pi === '')) {
    const values = storedValues(decoded.data, m, decoded.fromCodec);
    const t = await greyscaleTransforms(input.json, input.frameNumber, input.resolveBinary);
    return { ...base, channels: 1, data: toDisplay(applyModality(values, t), t, pi, window) };
  }
  if (m.samplesPerPixel === 1 && pi === 'PALETTE COLOR') {
    const values = storedValues(decoded.data, m, decoded.fromCodec);
    return { ...base, channels: 3, data: paletteToRgb(values, await paletteLuts(input.json, input.resolveBinary)) };
  }
  if (m.samplesPerPixel === 3) return { ...base, channels: 3, data: colourToRgb(decoded.data, m, pi, decoded.planarConfiguration) };
  throw new PorticoError('NOT_ACCEPTABLE', `cannot render ${m.samplesPerPixel} samples per pixel as ${pi}`);
}

/** Crops, flips, scales to the viewport and encodes. */
export async function encodeDisplay(px: DisplayPixels, opts: RenderOptions): Promise<{ body: Buffer; width: number; height: number }> {
  const sharp = await loadSharp();
  let img = sharp(px.data, { raw: { width: px.width, height: px.height, channels: px.channels } });
  let sw = px.width;
  let sh = px.height;
  let region = opts.region;
  if (!region && opts.relativeRegion) {
    const r = opts.relativeRegion;
    region = {
      x: Math.floor(r.x1 * px.width),
      y: Math.floor(r.y1 * px.height),
      width: Math.max(1, Math.round((r.x2 - r.x1) * px.width)),
      height: Math.max(1, Math.round((r.y2 - r.y1) * px.height)),
    };
  }
  if (region) {
    const c = clipRegion(region, px.width, px.height);
    img = img.extract({ left: c.left, top: c.top, width: c.width, height: c.height });
    if (c.flipX) img = img.flop();
    if (c.flipY) img = img.flip();
    sw = c.width;
    sh = c.height;
  }
  const size = fitInside(sw, sh, opts.viewport);
  if (size.width !== sw || size.height !== sh) img = img.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' });
  const body =
    opts.mediaType === 'image/png'
      ? await img.png({ compressionLevel: 6 }).toBuffer()
      : await img.jpeg({ quality: opts.quality, chromaSubsampling: px.channels === 3 ? '4:2:0' : '4:4:4', mozjpeg: false }).toBuffer();
  return { body, ...size };
}

/** Decode, map and encode one frame. */
export async function renderFrame(input: RenderInput, opts: RenderOptions): Promise<{ body: Buffer; width: number; height: number }> {
  return encodeDisplay(await displayPixels(input, opts.window), opts);
}
