/**
 * @portico/imaging — the pixel pipeline: decode one frame of any stored transfer syntax (native, RLE, JPEG
 * baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K), apply Modality and VOI LUTs and photometric
 * conversions, and encode JPEG/PNG with sharp; and decompression of whole instances to Explicit VR Little
 * Endian, streamed frame by frame.
 */
export { canDecode, decodedPhotometric, decodeFrame, isLossyTransferSyntax, loadCodecs, NATIVE_TRANSFER_SYNTAXES, swap16 } from './codecs.ts';
export type { DecodedFrame } from './codecs.ts';
export { applyModality, colourToRgb, minMax, paletteToRgb, storedValues, toDisplay, windowFunction } from './lut.ts';
export type { WindowRequest } from './lut.ts';
export {
  clipRegion,
  DEFAULT_JPEG_QUALITY,
  fitInside,
  MAX_VIEWPORT,
  parseQuality,
  parseRenderedQuery,
  parseViewport,
  parseWindow,
  renderedMediaType,
} from './params.ts';
export type { RenderOptions, SourceRegion } from './params.ts';
export { greyscaleTransforms, makeLut, paletteLuts, pixelModuleFromJson } from './pixel-module.ts';
export type { BinaryResolver, GreyscaleTransforms, Lut, PaletteLuts, PixelModule, VoiFunction } from './pixel-module.ts';
export { displayPixels, encodeDisplay, renderFrame } from './render.ts';
export type { DisplayPixels, RenderInput } from './render.ts';
export { canDecompress, decompressInstance, EXPLICIT_VR_LITTLE_ENDIAN } from './transcode.ts';
export type { DecompressedInstance, DecompressInput } from './transcode.ts';
export { decompressStored, openObject, readAll, readFrame, readRange, realignBits, type PixelInstance as StoredPixelInstance } from './stored.ts';
export { canTransform, transformInstance } from './transform.ts';
export type { TransformedInstance, TransformOptions } from './transform.ts';
export { writeDataset } from './raw-dataset.ts';
export type { RawElement } from './raw-dataset.ts';
