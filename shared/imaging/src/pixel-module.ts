/**
 * What the pixel pipeline needs to know about an instance, read from its indexed DICOM JSON: the Image
 * Pixel module, the Modality and VOI LUT modules, and their functional-group equivalents of enhanced
 * multi-frame objects. LUT data that was too large to inline in the index is a BulkDataURI (a relative tag
 * path) the caller resolves with one ranged read (see {@link BinaryResolver}).
 * @see PS3.3 §C.7.6.3 (Image Pixel), §C.11.1 (Modality LUT), §C.11.2 (VOI LUT), §C.7.6.16 (functional groups)
 */
import type { DicomJsonDataset, DicomJsonElement } from '@portico/dicom';
import { PorticoError } from '@portico/errors';

/** Fetches the bytes of a binary value stored as bulk data, by its tag path (e.g. `00281201`, `00283000/0/00283006`). */
export type BinaryResolver = (tagPath: string) => Promise<Buffer>;

/** A lookup table: output = data[clamp(input - firstMapped)]. @see PS3.3 §C.11.1.1.1 (LUT Descriptor) */
export interface Lut {
  readonly firstMapped: number;
  readonly bits: number;
  readonly data: Uint16Array | Int16Array;
}

export interface PixelModule {
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly highBit: number;
  /** 0 unsigned, 1 two's complement */
  readonly pixelRepresentation: number;
  readonly photometricInterpretation: string;
  /** 0 interleaved (R1G1B1R2…), 1 planar (R…G…B…) */
  readonly planarConfiguration: number;
  readonly numberOfFrames: number;
}

/** Grey-scale transforms in force for one frame. */
export interface GreyscaleTransforms {
  readonly rescaleSlope: number;
  readonly rescaleIntercept: number;
  readonly modalityLut?: Lut | undefined;
  /** window centre/width pairs from the data set (first one is the default) */
  readonly windows: ReadonlyArray<{ center: number; width: number }>;
  /** VOI LUT Function (0028,1056): LINEAR (default), LINEAR_EXACT, SIGMOID */
  readonly voiLutFunction: VoiFunction;
  readonly voiLut?: Lut | undefined;
}

export type VoiFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface PaletteLuts {
  readonly red: Lut;
  readonly green: Lut;
  readonly blue: Lut;
}

type Ds = DicomJsonDataset;

function num(ds: Ds | undefined, tag: string, index = 0): number | undefined {
  const v = ds?.[tag]?.Value?.[index];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function str(ds: Ds | undefined, tag: string): string | undefined {
  const v = ds?.[tag]?.Value?.[0];
  return typeof v === 'string' ? v.trim() : undefined;
}

function item(ds: Ds | undefined, tag: string, index = 0): Ds | undefined {
  const v = ds?.[tag]?.Value?.[index];
  return v !== null && typeof v === 'object' && !('Alphabetic' in v) ? (v as Ds) : undefined;
}

/**
 * The Image Pixel module of an instance. @throws NOT_ACCEPTABLE when it has no usable pixel description
 * (no Rows/Columns/Bits Allocated: not an image).
 */
export function pixelModuleFromJson(json: Ds): PixelModule {
  const rows = num(json, '00280010');
  const columns = num(json, '00280011');
  const bitsAllocated = num(json, '00280100');
  if (!rows || !columns || !bitsAllocated)
    throw new PorticoError('NOT_ACCEPTABLE', 'the instance has no image pixel description (Rows, Columns, Bits Allocated)');
  const bitsStored = num(json, '00280101') ?? bitsAllocated;
  const samplesPerPixel = num(json, '00280002') ?? 1;
  return {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit: num(json, '00280102') ?? bitsStored - 1,
    pixelRepresentation: num(json, '00280103') ?? 0,
    photometricInterpretation: (str(json, '00280004') ?? (samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2')).toUpperCase(),
    planarConfiguration: num(json, '00280006') ?? 0,
    numberOfFrames: Math.max(1, Math.floor(num(json, '00280008') ?? 1)),
  };
}

/** Bytes of a binary element: InlineBinary, a list of US/SS values, or bulk data resolved by path. */
async function binaryOf(el: DicomJsonElement | undefined, path: string, resolve: BinaryResolver): Promise<Buffer | undefined> {
  if (!el) return undefined;
  if (el.InlineBinary !== undefined) return Buffer.from(el.InlineBinary, 'base64');
  if (el.BulkDataURI !== undefined) return resolve(path);
  if (el.Value && el.Value.every((v) => typeof v === 'number')) {
    const vals = el.Value as number[];
    const b = Buffer.alloc(vals.length * 2);
    vals.forEach((v, i) => (el.vr === 'SS' ? b.writeInt16LE(v, i * 2) : b.writeUInt16LE(v & 0xffff, i * 2)));
    return b;
  }
  return undefined;
}

/**
 * A LUT from its descriptor and data. The descriptor's first value 0 means 65536 entries; 8-bit tables may
 * be packed two entries per 16-bit word (PS3.3 §C.7.6.3.1.5 allows that for palettes), which we detect by
 * the data length.
 */
export function makeLut(descriptor: ReadonlyArray<number>, data: Buffer, signedData = false): Lut | undefined {
  const entries = descriptor[0] === 0 ? 65536 : (descriptor[0] ?? 0);
  const firstMapped = descriptor[1] ?? 0;
  const bits = descriptor[2] ?? 16;
  if (entries <= 0) return undefined;
  let out: Uint16Array | Int16Array;
  if (data.length >= entries * 2) {
    out = signedData ? new Int16Array(entries) : new Uint16Array(entries);
    for (let i = 0; i < entries; i++) out[i] = signedData ? data.readInt16LE(i * 2) : data.readUInt16LE(i * 2);
  } else if (bits <= 8 && data.length >= entries) {
    out = new Uint16Array(entries);
    for (let i = 0; i < entries; i++) out[i] = data[i]!;
  } else {
    return undefined;
  }
  return { firstMapped, bits, data: out };
}

async function lutFromItem(it: Ds | undefined, path: string, resolve: BinaryResolver): Promise<Lut | undefined> {
  if (!it) return undefined;
  const desc = it['00283002']?.Value;
  if (!desc || desc.length < 3 || !desc.every((v) => typeof v === 'number')) return undefined;
  const data = await binaryOf(it['00283006'], `${path}/00283006`, resolve);
  return data ? makeLut(desc as number[], data) : undefined;
}

function windowsOf(ds: Ds | undefined): Array<{ center: number; width: number }> {
  const c = ds?.['00281050']?.Value ?? [];
  const w = ds?.['00281051']?.Value ?? [];
  const out: Array<{ center: number; width: number }> = [];
  for (let i = 0; i < Math.min(c.length, w.length); i++) {
    const center = c[i];
    const width = w[i];
    if (typeof center === 'number' && typeof width === 'number' && Number.isFinite(center) && Number.isFinite(width) && width > 0) out.push({ center, width });
  }
  return out;
}

function voiFunction(ds: Ds | undefined): VoiFunction | undefined {
  const f = str(ds, '00281056')?.toUpperCase();
  return f === 'LINEAR_EXACT' || f === 'SIGMOID' || f === 'LINEAR' ? f : undefined;
}

/**
 * Modality and VOI transforms for frame `frameNumber` (1-based): the top-level modules, overridden by the
 * Shared then Per-frame Functional Groups (Pixel Value Transformation, Frame VOI LUT) of enhanced objects.
 * @see PS3.3 §C.7.6.16.2.9, §C.7.6.16.2.10
 */
export async function greyscaleTransforms(json: Ds, frameNumber: number, resolve: BinaryResolver): Promise<GreyscaleTransforms> {
  let slope = num(json, '00281053') ?? 1;
  let intercept = num(json, '00281052') ?? 0;
  let windows = windowsOf(json);
  let fn = voiFunction(json) ?? 'LINEAR';
  const shared = item(json, '52009229');
  const perFrame = item(json, '52009230', frameNumber - 1);
  for (const group of [shared, perFrame]) {
    const pvt = item(group, '00289145');
    if (pvt) {
      slope = num(pvt, '00281053') ?? slope;
      intercept = num(pvt, '00281052') ?? intercept;
    }
    const voi = item(group, '00289132');
    if (voi) {
      const w = windowsOf(voi);
      if (w.length > 0) windows = w;
      fn = voiFunction(voi) ?? fn;
    }
  }
  const modalityLut = await lutFromItem(item(json, '00283000'), '00283000/0', resolve);
  const voiLut = await lutFromItem(item(json, '00283010'), '00283010/0', resolve);
  return { rescaleSlope: slope === 0 ? 1 : slope, rescaleIntercept: intercept, modalityLut, windows, voiLutFunction: fn, voiLut };
}

/** Red, green and blue palette LUTs. @throws NOT_ACCEPTABLE when a table is missing or segmented. @see PS3.3 §C.7.6.3.1.5 */
export async function paletteLuts(json: Ds, resolve: BinaryResolver): Promise<PaletteLuts> {
  const one = async (descTag: string, dataTag: string): Promise<Lut> => {
    const desc = json[descTag]?.Value;
    const data = await binaryOf(json[dataTag], dataTag, resolve);
    const lut = desc && desc.length >= 3 && data ? makeLut(desc as number[], data) : undefined;
    if (!lut) throw new PorticoError('NOT_ACCEPTABLE', 'PALETTE COLOR image without a usable (non-segmented) palette lookup table');
    return lut;
  };
  return { red: await one('00281101', '00281201'), green: await one('00281102', '00281202'), blue: await one('00281103', '00281203') };
}
