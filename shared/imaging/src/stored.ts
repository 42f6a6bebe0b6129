/**
 * Reading a stored instance's pixel data from the object store: byte ranges, single frames (native,
 * encapsulated, deflated, 1-bit), and the whole instance decompressed to Explicit VR Little Endian.
 * Shared by WADO-RS (services/dicomweb) and the DIMSE send path (conversion for a destination that
 * accepts nothing else).
 */
import { Readable } from 'node:stream';
import { createInflate, createInflateRaw } from 'node:zlib';
import { parseInstance, readFileMetaInformation, TRANSFER_SYNTAX, type DicomJsonDataset } from '@portico/dicom';
import { PorticoError, toPorticoError } from '@portico/errors';
import type { ObjectStore } from '@portico/storage';
import { decompressInstance, type DecompressedInstance } from './transcode.ts';
import { pixelModuleFromJson } from './pixel-module.ts';

/** What these functions need of an indexed instance (StoredInstance of @portico/db plus its JSON). */
export interface PixelInstance {
  readonly sopInstanceUid: string;
  readonly transferSyntaxUid: string;
  readonly objectKey: string;
  readonly objectSize: number;
  readonly frames: ReadonlyArray<ReadonlyArray<{ offset: number; length: number }>>;
  readonly bulkData: Readonly<Record<string, { offset: number; length: number } | undefined>>;
  readonly pixelDataEncapsulated: boolean;
  readonly json: DicomJsonDataset;
}

/**
 * Bits `[shift, shift + bits)` of `src` moved to start at bit 0 (DICOM packs 1-bit pixels least significant
 * bit first, PS3.5 §8.1.1), padded with zero bits to a whole byte.
 */
export function realignBits(src: Buffer, shift: number, bits: number): Buffer {
  const out = Buffer.alloc(Math.ceil(bits / 8));
  for (let k = 0; k < out.length; k++) out[k] = ((src[k]! >> shift) | ((src[k + 1] ?? 0) << (8 - shift))) & 0xff;
  const tail = bits % 8;
  if (tail !== 0) out[out.length - 1]! &= (1 << tail) - 1;
  return out;
}

/** Opens an object (or a range of it), mapping store failures onto our error table. */
export async function openObject(store: ObjectStore, key: string, range?: { start: number; end: number }): Promise<NodeJS.ReadableStream> {
  try {
    return await store.get(key, range);
  } catch (err) {
    if ((err as { code?: string }).code === 'NotFound')
      throw new PorticoError('PROCESSING_FAILURE', `indexed object ${key} is missing from the object store`, { cause: err });
    throw toPorticoError(err, 'OUT_OF_RESOURCES');
  }
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Reads `[offset, offset + length)` of an object. */
export async function readRange(store: ObjectStore, key: string, offset: number, length: number): Promise<Buffer> {
  if (length === 0) return Buffer.alloc(0);
  return readAll(await openObject(store, key, { start: offset, end: offset + length - 1 }));
}

/**
 * The bytes of frame `n` (1-based): its native samples (bit-packed 1-bit frames realigned to bit 0) or its
 * codestream (fragments concatenated). @throws NOT_FOUND beyond the last frame, NOT_ACCEPTABLE when the
 * frames of this object are not located (deflated data set, multi-fragment frames without offset table)
 */
export async function readFrame(store: ObjectStore, inst: PixelInstance, n: number): Promise<Buffer> {
  if (inst.frames.length === 0 && inst.transferSyntaxUid === TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian) return readDeflatedFrame(store, inst, n);
  if (inst.frames.length === 0)
    throw new PorticoError('NOT_ACCEPTABLE', `the frames of instance ${inst.sopInstanceUid} cannot be located without decoding the whole object`);
  const ranges = inst.frames[n - 1];
  if (!ranges) throw new PorticoError('NOT_FOUND', `frame ${n} does not exist: the instance has ${inst.frames.length} frame(s)`);
  const parts = await Promise.all(ranges.map((r) => readRange(store, inst.objectKey, r.offset, r.length)));
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const v = (tag: string): number | undefined => {
    const x = inst.json[tag]?.Value?.[0];
    return typeof x === 'number' ? x : undefined;
  };
  if (!inst.pixelDataEncapsulated && v('00280100') === 1) {
    const bits = (v('00280010') ?? 0) * (v('00280011') ?? 0) * (v('00280002') ?? 1);
    const shift = ((n - 1) * bits) % 8;
    if (shift !== 0) return realignBits(bytes, shift, bits);
  }
  return bytes;
}

/**
 * A native frame of a Deflated Explicit VR Little Endian object (PS3.5 §A.5). Its index has no byte ranges
 * (they would be inside the deflate stream), so: one streaming parse to learn where Pixel Data starts in
 * the inflated data set, then a second streaming inflate that skips to the frame and keeps only its bytes.
 * Memory stays at one frame plus the parser's header; time is two reads of the object (a rare syntax).
 */
async function readDeflatedFrame(store: ObjectStore, inst: PixelInstance, n: number): Promise<Buffer> {
  const parsed = await parseInstance((await openObject(store, inst.objectKey)) as AsyncIterable<Buffer>).catch((err: unknown) => {
    throw new PorticoError('PROCESSING_FAILURE', `stored object of ${inst.sopInstanceUid} cannot be parsed again`, { cause: err });
  });
  const px = parsed.pixelData;
  const num = (tag: string): number => {
    const x = parsed.json[tag]?.Value?.[0];
    return typeof x === 'number' ? x : 0;
  };
  const frameSize = num('00280010') * num('00280011') * (num('00280002') || 1) * Math.ceil(num('00280100') / 8);
  if (!px || px.encapsulated || px.valueLength === null || frameSize === 0)
    throw new PorticoError('NOT_ACCEPTABLE', 'deflated object without native pixel data');
  if (n > px.numberOfFrames || n * frameSize > px.valueLength) throw new PorticoError('NOT_FOUND', `frame ${n} does not exist`);
  const meta = readFileMetaInformation(await readRange(store, inst.objectKey, 0, Math.min(inst.objectSize, 64 * 1024)));
  const body = (await openObject(store, inst.objectKey, { start: meta.datasetOffset, end: inst.objectSize - 1 })) as Readable;
  const it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const firstChunk = await it.next();
  const head: Buffer = firstChunk.done ? Buffer.alloc(0) : firstChunk.value;
  // Raw deflate as PS3.5 §A.5 says, or zlib-wrapped as some writers produce (the parser's test).
  const zlibWrapped = head.length >= 2 && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
  const inflater = zlibWrapped ? createInflate() : createInflateRaw();
  const src = Readable.from(
    (async function* () {
      yield head;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    })(),
  );
  const inflatedStream = src.pipe(inflater);
  let pos = 0;
  const start = px.valueOffset + (n - 1) * frameSize;
  const out = Buffer.alloc(frameSize);
  let got = 0;
  try {
    for await (const chunk of inflatedStream as AsyncIterable<Buffer>) {
      const from = Math.max(0, start - pos);
      if (from < chunk.length) {
        const take = chunk.subarray(from, from + (frameSize - got));
        take.copy(out, got);
        got += take.length;
      }
      pos += chunk.length;
      if (got === frameSize) break;
    }
  } finally {
    inflatedStream.destroy();
    body.destroy();
  }
  if (got < frameSize) throw new PorticoError('PROCESSING_FAILURE', `deflated data set of ${inst.sopInstanceUid} ended inside frame ${n}`);
  return out;
}

const WHOLE_OBJECT_LIMIT = 256 * 1024 * 1024;

/** Plans the Explicit VR Little Endian copy of a stored instance (reads its header now, its frames later). */
export async function decompressStored(store: ObjectStore, inst: PixelInstance): Promise<DecompressedInstance> {
  let module;
  try {
    module = inst.json['7FE00010'] ? pixelModuleFromJson(inst.json) : undefined;
  } catch {
    module = undefined;
  }
  const pixel = inst.bulkData['7FE00010'];
  const deflated = inst.transferSyntaxUid === TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian;
  const implicit = inst.transferSyntaxUid === TRANSFER_SYNTAX.ImplicitVRLittleEndian;
  let headerEnd: number;
  if (module && pixel && !deflated) headerEnd = pixel.offset - (implicit ? 8 : 12);
  else {
    if (inst.objectSize > WHOLE_OBJECT_LIMIT) throw new PorticoError('NOT_ACCEPTABLE', `instance ${inst.sopInstanceUid} is too large to decompress`);
    headerEnd = inst.objectSize;
  }
  if (module && !deflated && !pixel) throw new PorticoError('NOT_ACCEPTABLE', `the pixel data of instance ${inst.sopInstanceUid} is not located`);
  const header = await readRange(store, inst.objectKey, 0, headerEnd);
  const frameCount = module ? (inst.frames.length > 0 ? inst.frames.length : module.numberOfFrames) : 0;
  return decompressInstance({ transferSyntaxUid: inst.transferSyntaxUid, header, module, frameCount, readFrame: (n) => readFrame(store, inst, n) });
}
