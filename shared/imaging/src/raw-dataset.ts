/**
 * A byte-faithful data set model for the export transform: elements keep their value bytes as read, so an
 * element nobody changes is written back with exactly the bytes it arrived with. That matters for text:
 * dcmjs decodes every string to UTF-16 and writes UTF-8 whatever Specific Character Set (0008,0005) says,
 * which turns an ISO_IR 100 "Jérôme" into mojibake. Only what a mutation touches is re-encoded here.
 *
 * Reads Explicit/Implicit VR Little Endian and Explicit VR Big Endian (values of binary VRs are swapped to
 * little endian on read), sequences and items of defined or undefined length, UN of undefined length
 * (an Implicit VR Little Endian sequence, PS3.5 §6.2.2), encapsulated Pixel Data (PS3.5 §A.4). Writes
 * Explicit or Implicit VR Little Endian: sequences and items with undefined length, group lengths
 * (retired, and wrong once anything changes) dropped, odd values padded (PS3.5 §7.1).
 * @see PS3.5 §7.1, §7.5, §A.1–A.4
 */
import { implicitVr } from '@portico/dicom';
import { PorticoError } from '@portico/errors';

/** One element. Exactly one of `value`, `items`, `fragments` is set (an empty value is a zero-length Buffer). */
export interface RawElement {
  readonly tag: number;
  vr: string;
  /** value bytes, little endian */
  value?: Buffer;
  /** sequence items */
  items?: RawElement[][];
  /** encapsulated Pixel Data: Basic Offset Table first, then the fragments */
  fragments?: Buffer[];
}

export interface DatasetEncoding {
  readonly explicitVr: boolean;
  readonly littleEndian: boolean;
}

/** VRs with a 32-bit length in Explicit VR. @see PS3.5 Table 7.1-1 */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);
const KNOWN_VRS = new Set([
  ...LONG_VRS,
  ...['AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'PN', 'SH', 'SL', 'SS', 'ST', 'TM', 'UI', 'UL', 'US'],
]);
/** Bytes per word of binary VRs (swapped when reading big endian). @see PS3.5 §7.3 */
const WORD_SIZE: Readonly<Record<string, number>> = { US: 2, SS: 2, OW: 2, AT: 2, UL: 4, SL: 4, FL: 4, OF: 4, OL: 4, FD: 8, OD: 8, SV: 8, UV: 8, OV: 8 };
/** String VRs padded with a space (UI with NUL). @see PS3.5 §6.2 */
export const STRING_VRS: ReadonlySet<string> = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQUENCE_END = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
const UNDEFINED = 0xffffffff;

export function tagHex(tag: number): string {
  return tag.toString(16).toUpperCase().padStart(8, '0');
}

function truncated(at: number): PorticoError {
  return new PorticoError('CANNOT_UNDERSTAND', `the data set is truncated or malformed at byte ${at}`);
}

class Reader {
  pos: number;
  private readonly buf: Buffer;
  constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw truncated(this.pos);
  }
  u16(le: boolean): number {
    this.need(2);
    const v = le ? this.buf.readUInt16LE(this.pos) : this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(le: boolean): number {
    this.need(4);
    const v = le ? this.buf.readUInt32LE(this.pos) : this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  tag(le: boolean): number {
    return ((this.u16(le) << 16) | this.u16(le)) >>> 0;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  peekVr(): string {
    this.need(2);
    return this.buf.toString('latin1', this.pos, this.pos + 2);
  }
  get length(): number {
    return this.buf.length;
  }
}

function swapped(value: Buffer, size: number): Buffer {
  const out = Buffer.from(value);
  for (let i = 0; i + size <= out.length; i += size) out.subarray(i, i + size).reverse();
  return out;
}

/** Parses a data set (no File Meta) into elements. @throws CANNOT_UNDERSTAND when truncated or malformed */
export function readDataset(buf: Buffer, enc: DatasetEncoding): RawElement[] {
  const r = new Reader(buf, 0);
  return readElements(r, enc, buf.length, false);
}

function readElements(r: Reader, enc: DatasetEncoding, end: number, inItem: boolean): RawElement[] {
  const out: RawElement[] = [];
  let pixelRepresentation: number | undefined;
  while (r.pos < end) {
    // Trailing zero padding after the last element is tolerated (seen in real files), not parsed.
    if (!inItem && end - r.pos < 8) break;
    const tag = r.tag(enc.littleEndian);
    if (tag === ITEM_END) {
      r.u32(enc.littleEndian);
      if (inItem) return out;
      continue;
    }
    if (tag === ITEM || tag === SEQUENCE_END) throw truncated(r.pos - 4);
    let vr: string;
    let length: number;
    if (enc.explicitVr && KNOWN_VRS.has(r.peekVr())) {
      vr = r.peekVr();
      r.pos += 2;
      if (LONG_VRS.has(vr)) {
        r.pos += 2;
        length = r.u32(enc.littleEndian);
      } else length = r.u16(enc.littleEndian);
    } else {
      vr = implicitVr(tagHex(tag), pixelRepresentation);
      length = r.u32(enc.littleEndian);
    }
    if (tag === PIXEL_DATA && length === UNDEFINED) {
      out.push({ tag, vr: 'OB', fragments: readFragments(r, enc) });
      continue;
    }
    if (vr === 'SQ' || length === UNDEFINED) {
      // UN of undefined length holds an Implicit VR Little Endian sequence (PS3.5 §6.2.2).
      const itemEnc = vr === 'UN' ? { explicitVr: false, littleEndian: true } : enc;
      out.push({ tag, vr: 'SQ', items: readItems(r, itemEnc, length) });
      continue;
    }
    if (r.pos + length > r.length) throw truncated(r.pos);
    let value = r.bytes(length);
    const size = WORD_SIZE[vr];
    if (!enc.littleEndian && size) value = swapped(value, size);
    if (tag === 0x00280103 && value.length >= 2) pixelRepresentation = value.readUInt16LE(0);
    out.push({ tag, vr, value });
  }
  return out;
}

function readItems(r: Reader, enc: DatasetEncoding, length: number): RawElement[][] {
  const items: RawElement[][] = [];
  const end = length === UNDEFINED ? Number.MAX_SAFE_INTEGER : r.pos + length;
  if (end !== Number.MAX_SAFE_INTEGER && end > r.length) throw truncated(r.pos);
  while (r.pos < end) {
    const tag = r.tag(enc.littleEndian);
    const itemLength = r.u32(enc.littleEndian);
    if (tag === SEQUENCE_END) return items;
    if (tag !== ITEM) throw truncated(r.pos - 8);
    if (itemLength === UNDEFINED) items.push(readElements(r, enc, Number.MAX_SAFE_INTEGER, true));
    else {
      if (r.pos + itemLength > r.length) throw truncated(r.pos);
      items.push(readElements(r, enc, r.pos + itemLength, true));
    }
  }
  if (length === UNDEFINED) throw truncated(r.pos);
  return items;
}

function readFragments(r: Reader, enc: DatasetEncoding): Buffer[] {
  const fragments: Buffer[] = [];
  for (;;) {
    const tag = r.tag(enc.littleEndian);
    const length = r.u32(enc.littleEndian);
    if (tag === SEQUENCE_END) return fragments;
    if (tag !== ITEM || length === UNDEFINED) throw truncated(r.pos - 8);
    fragments.push(r.bytes(length));
  }
}

/** The element with `tag` in a list, if any. */
export function find(elements: readonly RawElement[], tag: number): RawElement | undefined {
  return elements.find((e) => e.tag === tag);
}

/** Inserts or replaces an element, keeping ascending tag order (PS3.5 §7.1). */
export function put(elements: RawElement[], el: RawElement): void {
  const i = elements.findIndex((e) => e.tag >= el.tag);
  if (i === -1) elements.push(el);
  else if (elements[i]!.tag === el.tag) elements[i] = el;
  else elements.splice(i, 0, el);
}

/** A string value without its padding. */
export function text(el: RawElement | undefined): string | undefined {
  return el?.value?.toString('latin1').replace(/[\0 ]+$/, '');
}

/** An unsigned 16-bit value. */
export function us(el: RawElement | undefined): number | undefined {
  return el?.value && el.value.length >= 2 ? el.value.readUInt16LE(0) : undefined;
}

function writeHeader(chunks: Buffer[], tag: number, vr: string, length: number, explicitVr: boolean): void {
  const long = !explicitVr || LONG_VRS.has(vr);
  const h = Buffer.alloc(explicitVr && long ? 12 : 8);
  h.writeUInt16LE(tag >>> 16, 0);
  h.writeUInt16LE(tag & 0xffff, 2);
  if (!explicitVr) h.writeUInt32LE(length >>> 0, 4);
  else {
    h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(length >>> 0, 8);
    else h.writeUInt16LE(length, 6);
  }
  chunks.push(h);
}

function delimiter(tag: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(tag >>> 16, 0);
  b.writeUInt16LE(tag & 0xffff, 2);
  return b;
}

/**
 * Encodes elements as Explicit or Implicit VR Little Endian. Group 0002 (File Meta, written separately),
 * group lengths and Data Set Trailing Padding are left out.
 */
export function writeDataset(elements: readonly RawElement[], explicitVr: boolean, chunks: Buffer[] = []): Buffer[] {
  for (const el of elements) {
    const group = el.tag >>> 16;
    if (group === 0x0002 || (el.tag & 0xffff) === 0 || el.tag === 0xfffcfffc) continue;
    if (el.items) {
      writeHeader(chunks, el.tag, 'SQ', UNDEFINED, explicitVr);
      for (const item of el.items) {
        const itemHead = delimiter(ITEM);
        itemHead.writeUInt32LE(UNDEFINED, 4);
        chunks.push(itemHead);
        writeDataset(item, explicitVr, chunks);
        chunks.push(delimiter(ITEM_END));
      }
      chunks.push(delimiter(SEQUENCE_END));
      continue;
    }
    if (el.fragments) {
      if (!explicitVr) throw new PorticoError('PROCESSING_FAILURE', 'encapsulated pixel data cannot be written in Implicit VR Little Endian');
      writeHeader(chunks, el.tag, 'OB', UNDEFINED, true);
      for (const f of el.fragments) {
        const head = delimiter(ITEM);
        head.writeUInt32LE(f.length + (f.length % 2), 4);
        chunks.push(head, f);
        if (f.length % 2) chunks.push(Buffer.alloc(1));
      }
      chunks.push(delimiter(SEQUENCE_END));
      continue;
    }
    const value = el.value ?? Buffer.alloc(0);
    const odd = value.length % 2 === 1;
    const length = value.length + (odd ? 1 : 0);
    // A value too long for a 16-bit length field (or a VR we do not know) can only travel as UN.
    let vr = KNOWN_VRS.has(el.vr) ? el.vr : 'UN';
    if (!LONG_VRS.has(vr) && length > 0xffff) vr = 'UN';
    writeHeader(chunks, el.tag, vr, length, explicitVr);
    chunks.push(value);
    if (odd) chunks.push(Buffer.from([STRING_VRS.has(el.vr) && el.vr !== 'UI' ? 0x20 : 0x00]));
  }
  return chunks;
}
