/**
 * Where each frame of a Pixel Data value lies in the stored object, so WADO-RS can serve
 * `/frames/{n}` with ranged reads instead of parsing the object again.
 * @see PS3.5 §8.1.1 (native), §A.4 (encapsulated)
 * @see PS3.18 §9.5.1.2.1 (frame retrieval)
 */
import { frameStartMarker } from './transfer-syntax.ts';

/** A byte range in the stored object: absolute offset and length. */
export interface FrameLocation {
  offset: number;
  length: number;
}

/** One item of an encapsulated Pixel Data sequence, as the parser saw it. */
export interface Fragment {
  /** absolute offset of the fragment value (after its 8-byte item header) */
  offset: number;
  length: number;
  /** first two bytes of the value as a big-endian number, -1 when the fragment is shorter */
  head: number;
}

/** Image Pixel attributes that size native frames. @see PS3.3 §C.7.6.3 */
export interface FrameGeometry {
  numberOfFrames: number;
  rows: number | undefined;
  columns: number | undefined;
  samplesPerPixel: number | undefined;
  bitsAllocated: number | undefined;
}

/**
 * Frame ranges of native (uncompressed) pixel data. Frames follow each other without padding (PS3.5
 * §8.1.1). With Bits Allocated 1 (binary segmentations) frames are bit-packed and frame `i` starts at bit
 * `i × Rows × Columns × SamplesPerPixel` of the value: when that is not a multiple of 8, the returned range
 * covers the bytes holding the frame and the consumer must shift by `(start bit) mod 8`. Frames that do not
 * fit inside the value (an over-stated Number of Frames) are left out.
 */
export function nativeFrames(valueOffset: number, valueLength: number, g: FrameGeometry): FrameLocation[][] {
  const { rows, columns, bitsAllocated } = g;
  const samples = g.samplesPerPixel ?? 1;
  if (!rows || !columns || !bitsAllocated || !samples) return [];
  const frameBits = rows * columns * samples * (bitsAllocated === 1 ? 1 : Math.ceil(bitsAllocated / 8) * 8);
  const frames: FrameLocation[][] = [];
  for (let i = 0; i < g.numberOfFrames; i++) {
    const start = Math.floor((i * frameBits) / 8);
    const end = Math.ceil(((i + 1) * frameBits) / 8);
    if (end > valueLength) break;
    frames.push([{ offset: valueOffset + start, length: end - start }]);
  }
  return frames;
}

/** Offsets in a Basic or Extended Offset Table -> index of the fragment each frame starts with. */
function framesFromOffsets(fragments: readonly Fragment[], offsets: readonly number[]): FrameLocation[][] | undefined {
  if (fragments.length === 0 || offsets.length === 0) return undefined;
  // Table offsets count from the first byte of the first fragment's item tag (PS3.5 §A.4).
  const base = fragments[0]!.offset - 8;
  const indexByOffset = new Map<number, number>();
  fragments.forEach((f, i) => indexByOffset.set(f.offset - 8 - base, i));
  const starts: number[] = [];
  for (const off of offsets) {
    const idx = indexByOffset.get(off);
    if (idx === undefined || (starts.length > 0 && idx <= starts[starts.length - 1]!)) return undefined;
    starts.push(idx);
  }
  return group(fragments, starts);
}

function group(fragments: readonly Fragment[], starts: readonly number[]): FrameLocation[][] {
  return starts.map((s, k) => fragments.slice(s, starts[k + 1] ?? fragments.length).map((f) => ({ offset: f.offset, length: f.length })));
}

/** Inputs for mapping encapsulated fragments to frames. */
export interface EncapsulatedFrameInput {
  fragments: readonly Fragment[];
  /** Basic Offset Table values (the first item), empty when the table is empty */
  basicOffsetTable: readonly number[];
  /** Extended Offset Table (7FE0,0001) values, when present @see PS3.3 §C.7.6.3.1.8 */
  extendedOffsetTable?: readonly number[];
  numberOfFrames: number;
  transferSyntaxUid: string;
}

/**
 * Groups the fragments of encapsulated pixel data into frames, trying in order (PS3.5 §A.4):
 * the Extended Offset Table; one fragment per frame when the counts match; the Basic Offset Table;
 * all fragments as the single frame of a single-frame image; for JPEG-family syntaxes, frame starts found
 * by the codestream's first marker at a fragment start (used only when exactly Number of Frames starts are
 * found). Otherwise the frames cannot be known without decoding and the list is empty.
 */
export function encapsulatedFrames(input: EncapsulatedFrameInput): FrameLocation[][] {
  const { fragments, numberOfFrames } = input;
  if (fragments.length === 0) return [];
  if (input.extendedOffsetTable && input.extendedOffsetTable.length === numberOfFrames) {
    const viaEot = framesFromOffsets(fragments, input.extendedOffsetTable);
    if (viaEot) return viaEot;
  }
  if (fragments.length === numberOfFrames) return fragments.map((f) => [{ offset: f.offset, length: f.length }]);
  if (input.basicOffsetTable.length === numberOfFrames) {
    const viaBot = framesFromOffsets(fragments, input.basicOffsetTable);
    if (viaBot) return viaBot;
  }
  if (numberOfFrames === 1) return [fragments.map((f) => ({ offset: f.offset, length: f.length }))];
  const marker = frameStartMarker(input.transferSyntaxUid);
  if (marker !== undefined) {
    const starts: number[] = [];
    fragments.forEach((f, i) => {
      if (f.head === marker) starts.push(i);
    });
    if (starts.length === numberOfFrames && starts[0] === 0) return group(fragments, starts);
  }
  return [];
}
