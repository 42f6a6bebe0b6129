/**
 * Streaming reader of a stored DICOM instance (Part-10 file, or a bare data set) for ingest: it reads the
 * stream once, builds the DICOM JSON of the header and records where Pixel Data and other large binary
 * values lie, without holding them.
 *
 * Design notes
 * - Memory is bounded by the non-bulk part of the data set (`maxHeaderBytes`): Pixel Data and binary
 *   values above `inlineBinaryMax` are skipped chunk by chunk and only their byte ranges are kept, so a
 *   2 GB whole-slide image costs the same memory as its header.
 * - Offsets are positions in the stored object exactly as given, which is what lets WADO-RS answer frame
 *   and bulk data requests with ranged reads of the object store. A deflated data set has no such
 *   positions (they would be inside the compressed stream); its ranges are reported as unknown.
 * - Real files break rules; the parser accepts what has one reasonable reading (odd lengths, missing
 *   group lengths, implicit VR elements inside an explicit VR data set, UN sequences, stray delimiters)
 *   and rejects what would need guessing (lengths that cross their container, missing delimiters at end of
 *   stream) with `DicomParseError`, never another error type and never by hanging.
 * @see PS3.5 §7 (data set encoding), PS3.10 §7 (Part-10 file), PS3.18 §F.2 (DICOM JSON)
 */
import { Readable, pipeline } from 'node:stream';
import { createInflate, createInflateRaw } from 'node:zlib';
import { ByteReader, SourceFailure } from './byte-reader.ts';
import { createCharsetDecoder, DEFAULT_CHARSET_DECODER } from './charset.ts';
import type { CharsetDecoder } from './charset.ts';
import { BINARY_VRS, elementToJson, hex8 } from './dicom-json.ts';
import type { DicomJsonDataset } from './dicom-json.ts';
import { implicitVr } from './dictionary.ts';
import { DicomParseError } from './errors.ts';
import { hasPart10Preamble, KNOWN_VRS, LONG_LENGTH_VRS, PART10_HEADER_LENGTH, scanFileMeta } from './file-meta.ts';
import type { FileMetaInformation } from './file-meta.ts';
import { encapsulatedFrames, nativeFrames } from './frames.ts';
import type { FrameLocation, Fragment } from './frames.ts';
import { datasetEncoding, TRANSFER_SYNTAX } from './transfer-syntax.ts';

export type { FrameLocation } from './frames.ts';

export interface ParseInstanceOptions {
  /**
   * Memory budget for the part of the data set kept in memory (everything except bulk values). A data set
   * that needs more is rejected with `HEADER_TOO_LARGE`. Default 64 MiB.
   */
  maxHeaderBytes?: number;
  /** Binary values (OB, OD, OF, OL, OV, OW, UN) longer than this become bulk data. Default 1024 bytes. */
  inlineBinaryMax?: number;
}

/** Where the pixel data of the instance lies. @see PS3.5 §8 */
export interface PixelDataLocation {
  /** '7FE00010' (Pixel Data), '7FE00008' (Float Pixel Data) or '7FE00009' (Double Float Pixel Data) */
  tag: string;
  /** pixel data is a sequence of fragments (PS3.5 §A.4) */
  encapsulated: boolean;
  /** the data set was deflated: offsets below are positions in the inflated data set, not in the stored object */
  deflated: boolean;
  /** offset of the value (after the element header) */
  valueOffset: number;
  /** value length; null when undefined (encapsulated) */
  valueLength: number | null;
  /** Number of Frames (0028,0008), 1 when absent */
  numberOfFrames: number;
  /**
   * One entry per frame, each listing the byte ranges that make up the frame: one range for native data,
   * one per fragment value (item header excluded) for encapsulated data. Empty when frames cannot be
   * located without decoding (deflated data sets; multi-fragment frames without a usable offset table).
   * For Bits Allocated 1 see `nativeFrames` about frames that start inside a byte.
   */
  frames: FrameLocation[][];
}

/** What ingest needs to know about a stored instance. */
export interface ParsedInstance {
  /** the input had a Part-10 File Meta group */
  hasFileMeta: boolean;
  /** (0002,0010), or the guessed encoding of a bare data set (1.2.840.10008.1.2 or …1.2.1) */
  transferSyntaxUid: string;
  /** (0008,0016), falling back to (0002,0002); '' when neither exists */
  sopClassUid: string;
  /** (0008,0018), falling back to (0002,0003); '' when neither exists */
  sopInstanceUid: string;
  /** (0020,000D); '' if absent */
  studyInstanceUid: string;
  /** (0020,000E); '' if absent */
  seriesInstanceUid: string;
  /** (0008,0005) values as stored (an empty value 1 stays ''); [] when absent */
  specificCharacterSet: string[];
  /**
   * DICOM JSON model (PS3.18 §F.2) of the whole data set excluding group 0002 and group lengths
   * (gggg,0000), text decoded per Specific Character Set. Binary values (OB, OD, OF, OL, OV, OW, UN)
   * longer than `inlineBinaryMax` and all pixel data are `{ vr, BulkDataURI: '<tagPath>' }` where tagPath is
   * e.g. '7FE00010' or '00540016/0/00181072' (relative; the web layer makes it absolute); shorter binary
   * values are InlineBinary. PN values are {Alphabetic, Ideographic, Phonetic}; IS/DS are numbers, with
   * unparsable values as null; AT values are 8-hex-digit strings; empty elements are `{ vr }`. UN elements
   * whose tag the dictionary knows carry the dictionary VR; UN sequences are `SQ`. Key order is not
   * significant (JavaScript orders keys such as '54000100' that look like integers first).
   */
  json: DicomJsonDataset;
  /**
   * Byte range of every bulk value referenced from `json`, by tagPath, absolute in the stored object;
   * undefined when the data set is deflated. For encapsulated values the range spans the whole item
   * sequence including its delimiter.
   */
  bulkData: Record<string, { offset: number; length: number } | undefined>;
  pixelData?: PixelDataLocation;
  /** the File Meta group, when there was one */
  fileMeta?: FileMetaInformation;
}

const DEFAULT_MAX_HEADER_BYTES = 64 * 1024 * 1024;
const DEFAULT_INLINE_BINARY_MAX = 1024;

const ITEM = 0xfffee000;
const ITEM_DELIMITATION = 0xfffee00d;
const SEQUENCE_DELIMITATION = 0xfffee0dd;
const UNDEFINED_LENGTH = 0xffffffff;
const PIXEL_DATA_TAGS: ReadonlySet<number> = new Set([0x7fe00010, 0x7fe00008, 0x7fe00009]);
const SPECIFIC_CHARACTER_SET = 0x00080005;
const PIXEL_REPRESENTATION = 0x00280103;
const EXTENDED_OFFSET_TABLE = 0x7fe00001;
const EXTENDED_OFFSET_TABLE_LENGTHS = 0x7fe00002;
/**
 * Deepest sequence nesting accepted. Real data stays far below (deep SR trees reach a few dozen levels);
 * the limit turns a hostile million-level nesting into a clean rejection instead of a stack overflow.
 */
const MAX_SEQUENCE_DEPTH = 256;

interface Syntax {
  explicit: boolean;
  little: boolean;
}
const IMPLICIT_LE: Syntax = { explicit: false, little: true };

/** State inherited by nested items unless the item sets its own. */
interface Scope {
  decoder: CharsetDecoder;
  pixelRepresentation: number | undefined;
}

interface ElementHeader {
  tag: number;
  /** VR as encoded; undefined for implicit VR and for items/delimiters */
  vr: string | undefined;
  length: number;
  /** offset of the element's first byte */
  offset: number;
}

interface PixelRecord {
  tag: number;
  encapsulated: boolean;
  valueOffset: number;
  valueLength: number | null;
  fragments: Fragment[];
  basicOffsetTable: number[];
}

class DatasetParser {
  readonly reader: ByteReader;
  readonly maxHeaderBytes: number;
  readonly inlineBinaryMax: number;
  readonly deflated: boolean;
  readonly bulkData: Record<string, { offset: number; length: number } | undefined> = {};
  headerBytes = 0;
  pixel: PixelRecord | undefined;
  extendedOffsetTable: number[] | undefined;

  constructor(reader: ByteReader, opts: { maxHeaderBytes: number; inlineBinaryMax: number; deflated: boolean }) {
    this.reader = reader;
    this.maxHeaderBytes = opts.maxHeaderBytes;
    this.inlineBinaryMax = opts.inlineBinaryMax;
    this.deflated = opts.deflated;
  }

  /** Accounts for bytes about to be held in memory, before reading them. */
  charge(n: number): void {
    this.headerBytes += n;
    if (this.headerBytes > this.maxHeaderBytes) {
      throw new DicomParseError(
        'HEADER_TOO_LARGE',
        `data set needs more than maxHeaderBytes=${this.maxHeaderBytes} bytes outside bulk data`,
        this.reader.position,
      );
    }
  }

  async need(n: number, what: string): Promise<void> {
    if (this.reader.available < n) await this.reader.require(n, what);
  }

  async readHeader(syntax: Syntax): Promise<ElementHeader> {
    const r = this.reader;
    const offset = r.position;
    // Headers count against the budget too: a stream of zero bytes is an endless run of empty elements,
    // and must end in a rejection, not in reading a deflate bomb to its end.
    this.charge(12);
    await this.need(8, 'an element header');
    const b = r.peek(8);
    const group = syntax.little ? b.readUInt16LE(0) : b.readUInt16BE(0);
    const element = syntax.little ? b.readUInt16LE(2) : b.readUInt16BE(2);
    const tag = ((group << 16) | element) >>> 0;
    if (group === 0xfffe || !syntax.explicit) {
      const length = syntax.little ? b.readUInt32LE(4) : b.readUInt32BE(4);
      r.read(8);
      return { tag, vr: undefined, length, offset };
    }
    const vr = b.toString('latin1', 4, 6);
    if (!KNOWN_VRS.has(vr)) {
      // An implicit VR element inside an explicit VR data set (written by some old toolkits): the four
      // bytes after the tag are its length. Reading it so is what DCMTK does as well.
      const length = syntax.little ? b.readUInt32LE(4) : b.readUInt32BE(4);
      r.read(8);
      return { tag, vr: undefined, length, offset };
    }
    if (LONG_LENGTH_VRS.has(vr)) {
      await this.need(12, 'an element header');
      const h = r.read(12);
      return { tag, vr, length: syntax.little ? h.readUInt32LE(8) : h.readUInt32BE(8), offset };
    }
    r.read(8);
    return { tag, vr, length: syntax.little ? b.readUInt16LE(6) : b.readUInt16BE(6), offset };
  }

  /**
   * Reads elements into a JSON data set until `end` (defined-length item), an Item Delimitation Item
   * (undefined-length item) or the end of the stream (top level only).
   */
  async readDataset(syntax: Syntax, end: number | null, top: boolean, pathPrefix: string, parent: Scope, depth = 0): Promise<DicomJsonDataset> {
    const r = this.reader;
    const json: DicomJsonDataset = {};
    const scope: Scope = { ...parent };
    for (;;) {
      if (end !== null) {
        if (r.position === end) break;
        if (r.position > end) throw new DicomParseError('MALFORMED', 'element crosses the end of its item', r.position);
      } else if (top && r.available === 0 && !(await r.fill(1))) {
        break;
      }
      const header = await this.readHeader(syntax);
      if (header.tag === ITEM_DELIMITATION) {
        if (end === null && !top) return json;
        continue; // stray delimiter after a defined-length item: nothing to undo
      }
      if (header.tag === SEQUENCE_DELIMITATION) {
        if (top) continue; // stray trailing delimiter written by some toolkits
        throw new DicomParseError('MALFORMED', 'sequence delimiter inside an item', header.offset);
      }
      if (header.tag === ITEM) throw new DicomParseError('MALFORMED', 'item outside a sequence', header.offset);
      await this.readElement(syntax, header, json, pathPrefix, scope, top, depth);
    }
    if (end === null && !top) throw new DicomParseError('TRUNCATED', 'stream ended inside an item', r.position);
    return json;
  }

  async readElement(syntax: Syntax, h: ElementHeader, json: DicomJsonDataset, pathPrefix: string, scope: Scope, top: boolean, depth: number): Promise<void> {
    const r = this.reader;
    const { tag, length } = h;
    const key = hex8(tag);
    const group = tag >>> 16;
    const path = pathPrefix + key;
    const isPixel = PIXEL_DATA_TAGS.has(tag);
    let vr = h.vr ?? implicitVr(key, scope.pixelRepresentation);
    let valueSyntax = syntax;

    if (h.vr === 'UN') {
      // PS3.5 §6.2.2: a UN element of undefined length is a sequence encoded in Implicit VR Little Endian;
      // one with a known public tag was written by an application that did not know it, so it is read
      // with the VR the dictionary gives (as Implicit VR LE when it is a sequence).
      const known = group % 2 === 0 ? implicitVr(key, scope.pixelRepresentation) : 'UN';
      if (length === UNDEFINED_LENGTH || known === 'SQ') {
        vr = 'SQ';
        valueSyntax = IMPLICIT_LE;
      } else if (known !== 'UN') {
        vr = known;
      }
    }

    if (length === UNDEFINED_LENGTH) {
      if (isPixel || (syntax.explicit && (vr === 'OB' || vr === 'OW'))) {
        await this.readEncapsulated(tag, path, json, top && isPixel);
        return;
      }
      if (vr === 'SQ' || vr === 'UN' || !syntax.explicit) {
        // Implicit VR: an undefined length can only be a sequence (PS3.5 §7.5.1), whatever the dictionary says.
        const items = await this.readSequence(vr === 'UN' ? IMPLICIT_LE : valueSyntax, null, path, scope, depth + 1);
        json[key] = items.length > 0 ? { vr: 'SQ', Value: items } : { vr: 'SQ' };
        return;
      }
      throw new DicomParseError('MALFORMED', `undefined length on a ${vr} element (${key})`, h.offset);
    }

    const valueOffset = r.position;
    if (vr === 'SQ') {
      const items = await this.readSequence(valueSyntax, valueOffset + length, path, scope, depth + 1);
      json[key] = items.length > 0 ? { vr: 'SQ', Value: items } : { vr: 'SQ' };
      return;
    }

    const isOffsetTable = top && (tag === EXTENDED_OFFSET_TABLE || tag === EXTENDED_OFFSET_TABLE_LENGTHS);
    if (isPixel || (BINARY_VRS.has(vr) && length > this.inlineBinaryMax && !isOffsetTable)) {
      if (!(await r.skip(length))) {
        throw new DicomParseError('TRUNCATED', `stream ended inside the value of ${key}`, r.position);
      }
      this.bulkData[path] = this.deflated ? undefined : { offset: valueOffset, length };
      json[key] = { vr, BulkDataURI: path };
      if (top && isPixel && !this.pixel) {
        this.pixel = { tag, encapsulated: false, valueOffset, valueLength: length, fragments: [], basicOffsetTable: [] };
      }
      return;
    }

    this.charge(length);
    await this.need(length, `the value of ${key}`);
    const bytes = r.read(length);

    if (tag === SPECIFIC_CHARACTER_SET) {
      const terms = bytes
        .toString('latin1')
        .split('\\')
        .map((t) => t.replace(/[\0 ]+$/, '').trim());
      scope.decoder = terms.every((t) => t === '') ? DEFAULT_CHARSET_DECODER : createCharsetDecoder(terms);
    } else if (tag === PIXEL_REPRESENTATION && length >= 2) {
      scope.pixelRepresentation = syntax.little ? bytes.readUInt16LE(0) : bytes.readUInt16BE(0);
    } else if (isOffsetTable) {
      const values: number[] = [];
      for (let o = 0; o + 8 <= bytes.length; o += 8) {
        values.push(Number(syntax.little ? bytes.readBigUInt64LE(o) : bytes.readBigUInt64BE(o)));
      }
      if (tag === EXTENDED_OFFSET_TABLE) this.extendedOffsetTable = values;
    }

    // Group lengths are retired outside group 0002 and stale after any change; group 0002 belongs to the
    // File Meta Information, not the data set (PS3.18 §F.2 describes the data set).
    if ((tag & 0xffff) === 0 || group === 0x0002) return;
    if (isOffsetTable && length > this.inlineBinaryMax) {
      // Kept in memory for frame mapping but presented like any other large binary value.
      this.bulkData[path] = this.deflated ? undefined : { offset: valueOffset, length };
      json[key] = { vr, BulkDataURI: path };
      return;
    }
    json[key] = elementToJson(vr, bytes, valueSyntax.little, scope.decoder);
  }

  /** Items of a sequence until `end` (defined length) or the Sequence Delimitation Item. @see PS3.5 §7.5 */
  async readSequence(syntax: Syntax, end: number | null, path: string, scope: Scope, depth: number): Promise<DicomJsonDataset[]> {
    const r = this.reader;
    if (depth > MAX_SEQUENCE_DEPTH) throw new DicomParseError('MALFORMED', `sequences nested deeper than ${MAX_SEQUENCE_DEPTH}`, r.position);
    const items: DicomJsonDataset[] = [];
    for (;;) {
      if (end !== null) {
        if (r.position === end) break;
        if (r.position > end) throw new DicomParseError('MALFORMED', 'item crosses the end of its sequence', r.position);
      }
      const offset = r.position;
      this.charge(8);
      await this.need(8, 'a sequence');
      const b = r.read(8);
      const tag = (((syntax.little ? b.readUInt16LE(0) : b.readUInt16BE(0)) << 16) | (syntax.little ? b.readUInt16LE(2) : b.readUInt16BE(2))) >>> 0;
      const length = syntax.little ? b.readUInt32LE(4) : b.readUInt32BE(4);
      if (tag === SEQUENCE_DELIMITATION) {
        if (end === null) break;
        continue; // delimiter inside a defined-length sequence: harmless, the length governs
      }
      if (tag === ITEM_DELIMITATION) continue; // stray, after a defined-length item
      if (tag !== ITEM) throw new DicomParseError('MALFORMED', `expected an item in sequence ${path}, found ${hex8(tag)}`, offset);
      const itemEnd = length === UNDEFINED_LENGTH ? null : r.position + length;
      if (itemEnd !== null && end !== null && itemEnd > end) {
        throw new DicomParseError('MALFORMED', `item of sequence ${path} crosses the end of the sequence`, offset);
      }
      items.push(await this.readDataset(syntax, itemEnd, false, `${path}/${items.length}/`, scope, depth));
    }
    return items;
  }

  /**
   * Encapsulated (fragmented) value: Basic Offset Table item, fragment items, Sequence Delimitation Item.
   * Fragments are skipped after peeking at their first two bytes (enough to recognise a frame start).
   * @see PS3.5 §A.4
   */
  async readEncapsulated(tag: number, path: string, json: DicomJsonDataset, recordPixel: boolean): Promise<void> {
    const r = this.reader;
    const valueOffset = r.position;
    const fragments: Fragment[] = [];
    const basicOffsetTable: number[] = [];
    let first = true;
    for (;;) {
      const offset = r.position;
      await this.need(8, 'encapsulated pixel data');
      const b = r.read(8);
      const itemTag = ((b.readUInt16LE(0) << 16) | b.readUInt16LE(2)) >>> 0;
      const length = b.readUInt32LE(4);
      if (itemTag === SEQUENCE_DELIMITATION) break;
      if (itemTag !== ITEM) throw new DicomParseError('MALFORMED', `expected a fragment item in ${path}, found ${hex8(itemTag)}`, offset);
      if (length === UNDEFINED_LENGTH) throw new DicomParseError('MALFORMED', `fragment of undefined length in ${path}`, offset);
      if (first) {
        first = false;
        this.charge(length);
        await this.need(length, 'the Basic Offset Table');
        const table = r.read(length);
        for (let o = 0; o + 4 <= table.length; o += 4) basicOffsetTable.push(table.readUInt32LE(o));
        continue;
      }
      let head = -1;
      if (length >= 2) {
        await this.need(2, 'a fragment');
        head = r.peek(2).readUInt16BE(0);
      }
      const fragmentOffset = r.position;
      if (!(await r.skip(length))) throw new DicomParseError('TRUNCATED', `stream ended inside a fragment of ${path}`, r.position);
      fragments.push({ offset: fragmentOffset, length, head });
      this.charge(32); // the fragment list itself is held in memory
    }
    this.bulkData[path] = this.deflated ? undefined : { offset: valueOffset, length: r.position - valueOffset };
    json[hex8(tag)] = { vr: 'OB', BulkDataURI: path };
    if (recordPixel && !this.pixel) {
      this.pixel = { tag, encapsulated: true, valueOffset, valueLength: null, fragments, basicOffsetTable };
    }
  }
}

/** Decompresses the rest of `reader` (raw deflate, or zlib-wrapped as some writers wrongly produce). */
async function* inflated(reader: ByteReader): AsyncGenerator<Buffer> {
  await reader.fill(2);
  const head = reader.available >= 2 ? reader.peek(2) : undefined;
  const zlibWrapped = head !== undefined && (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
  const inflater = zlibWrapped ? createInflate() : createInflateRaw();
  const out = pipeline(Readable.from(reader.remainder()), inflater, () => {
    // Errors surface through the iteration below; the callback only keeps pipeline from throwing them unhandled.
  });
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } catch (err) {
    if (err instanceof DicomParseError || err instanceof SourceFailure) throw err;
    const code = (err as { code?: string }).code;
    throw new DicomParseError(code === 'Z_BUF_ERROR' ? 'TRUNCATED' : 'MALFORMED', `deflated data set: ${(err as Error).message}`);
  } finally {
    out.destroy();
  }
}

interface DatasetStart {
  hasFileMeta: boolean;
  meta: FileMetaInformation | undefined;
  transferSyntaxUid: string;
}

/** Reads the preamble and File Meta group, if any, leaving `reader` at the first data set byte. */
async function locateDataset(reader: ByteReader): Promise<DatasetStart> {
  await reader.fill(PART10_HEADER_LENGTH);
  if (reader.available === 0) throw new DicomParseError('NOT_DICOM', 'empty input', 0);
  const head = reader.peek(Math.min(reader.available, PART10_HEADER_LENGTH));
  let metaStart: number | undefined;
  if (hasPart10Preamble(head)) metaStart = PART10_HEADER_LENGTH;
  else if (head.length >= 8 && head.readUInt16LE(0) === 0x0002 && KNOWN_VRS.has(head.toString('latin1', 4, 6))) metaStart = 0; // File Meta without preamble

  if (metaStart === undefined) {
    return { hasFileMeta: false, meta: undefined, transferSyntaxUid: await guessBareDataset(reader) };
  }

  let want = metaStart + 12;
  let meta: FileMetaInformation;
  for (;;) {
    const complete = !(await reader.fill(want));
    const scan = scanFileMeta(reader.peek(Math.min(reader.available, want)), metaStart, complete);
    if ('meta' in scan) {
      meta = scan.meta;
      break;
    }
    want = scan.needBytes;
  }
  if (!(await reader.skip(meta.datasetOffset - reader.position))) {
    throw new DicomParseError('TRUNCATED', 'stream ended inside File Meta Information', reader.position);
  }
  let transferSyntaxUid = meta.transferSyntaxUid;
  if (transferSyntaxUid === '') transferSyntaxUid = (await sniffEncoding(reader)) ?? TRANSFER_SYNTAX.ExplicitVRLittleEndian;
  return { hasFileMeta: true, meta, transferSyntaxUid };
}

/** Explicit or implicit VR Little Endian, judged by whether bytes 4–5 of the first element are a VR. */
async function sniffEncoding(reader: ByteReader): Promise<string | undefined> {
  if (!(await reader.fill(8))) return undefined;
  const b = reader.peek(8);
  return KNOWN_VRS.has(b.toString('latin1', 4, 6)) ? TRANSFER_SYNTAX.ExplicitVRLittleEndian : TRANSFER_SYNTAX.ImplicitVRLittleEndian;
}

/**
 * A stream without preamble may still be a bare data set (ACR-NEMA style files, or exports of old
 * systems). It is accepted only when its first element is in the groups a data set starts with
 * (0008 Identifying … 0030), which rejects other formats (PNG starts "(5089,474E)", JPEG "(D8FF,E0FF)", PDF
 * "(5025,4644)") instead of reading them as garbage elements.
 */
async function guessBareDataset(reader: ByteReader): Promise<string> {
  if (!(await reader.fill(8))) throw new DicomParseError('NOT_DICOM', 'too short to be DICOM', 0);
  const b = reader.peek(8);
  const group = b.readUInt16LE(0);
  const explicit = KNOWN_VRS.has(b.toString('latin1', 4, 6));
  const implicitLength = b.readUInt32LE(4);
  const plausible = group >= 0x0008 && group <= 0x0030 && group % 2 === 0 && (explicit || implicitLength < 0x100000);
  if (!plausible) throw new DicomParseError('NOT_DICOM', 'no DICOM preamble and no recognisable data set', 0);
  return explicit ? TRANSFER_SYNTAX.ExplicitVRLittleEndian : TRANSFER_SYNTAX.ImplicitVRLittleEndian;
}

function firstString(json: DicomJsonDataset, key: string): string {
  const v = json[key]?.Value?.[0];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

function firstNumber(json: DicomJsonDataset, key: string): number | undefined {
  const v = json[key]?.Value?.[0];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * Parses a stored instance from a byte stream in one pass.
 *
 * Accepts Part-10 files in every transfer syntax (Implicit/Explicit VR Little Endian, Explicit VR Big
 * Endian, Deflated, and all encapsulated syntaxes), and bare data sets without preamble or File Meta
 * (read as Implicit VR Little Endian, or Explicit when the first element carries a VR). Rejects with
 * `DicomParseError` when the input is not DICOM, is truncated, is malformed beyond a single reasonable
 * reading, or needs more than `maxHeaderBytes` outside bulk data. Errors thrown by `source` itself
 * propagate unchanged. A synchronous iterable (e.g. `[buffer]`) is accepted for convenience. The source is read to its end (or until the error) and then closed.
 * @see PS3.10 §7
 * @see PS3.5 §7, Annex A
 * @see PS3.18 §F.2
 */
export async function parseInstance(
  source: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  opts: ParseInstanceOptions = {},
): Promise<ParsedInstance> {
  const maxHeaderBytes = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const inlineBinaryMax = opts.inlineBinaryMax ?? DEFAULT_INLINE_BINARY_MAX;
  let reader: ByteReader | undefined;
  let inner: ByteReader | undefined;
  try {
    reader = new ByteReader(source);
    const start = await locateDataset(reader);
    const encoding = datasetEncoding(start.transferSyntaxUid);
    let datasetReader = reader;
    if (encoding.deflated) {
      inner = new ByteReader(inflated(reader), 0);
      datasetReader = inner;
    }
    const parser = new DatasetParser(datasetReader, { maxHeaderBytes, inlineBinaryMax, deflated: encoding.deflated });
    const syntax: Syntax = { explicit: encoding.explicitVr, little: encoding.littleEndian };
    const json = await parser.readDataset(syntax, null, true, '', { decoder: DEFAULT_CHARSET_DECODER, pixelRepresentation: undefined });

    const result: ParsedInstance = {
      hasFileMeta: start.hasFileMeta,
      transferSyntaxUid: start.transferSyntaxUid,
      sopClassUid: firstString(json, '00080016') || start.meta?.sopClassUid || '',
      sopInstanceUid: firstString(json, '00080018') || start.meta?.sopInstanceUid || '',
      studyInstanceUid: firstString(json, '0020000D'),
      seriesInstanceUid: firstString(json, '0020000E'),
      specificCharacterSet: (json['00080005']?.Value ?? []).map((v) => (typeof v === 'string' ? v : '')),
      json,
      bulkData: parser.bulkData,
    };
    if (start.meta) result.fileMeta = start.meta;
    if (parser.pixel) result.pixelData = pixelLocation(parser, json, start.transferSyntaxUid, encoding.deflated);
    return result;
  } catch (err) {
    if (err instanceof DicomParseError) throw err;
    if (err instanceof SourceFailure) throw err.original;
    throw new DicomParseError('MALFORMED', `unreadable data set: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await inner?.close();
    await reader?.close();
  }
}

function pixelLocation(parser: DatasetParser, json: DicomJsonDataset, transferSyntaxUid: string, deflated: boolean): PixelDataLocation {
  const p = parser.pixel!;
  const declaredFrames = firstNumber(json, '00280008');
  const numberOfFrames = declaredFrames !== undefined && declaredFrames >= 1 ? Math.floor(declaredFrames) : 1;
  let frames: FrameLocation[][] = [];
  if (!deflated) {
    frames = p.encapsulated
      ? encapsulatedFrames({
          fragments: p.fragments,
          basicOffsetTable: p.basicOffsetTable,
          ...(parser.extendedOffsetTable ? { extendedOffsetTable: parser.extendedOffsetTable } : {}),
          numberOfFrames,
          transferSyntaxUid,
        })
      : nativeFrames(p.valueOffset, p.valueLength ?? 0, {
          numberOfFrames,
          rows: firstNumber(json, '00280010'),
          columns: firstNumber(json, '00280011'),
          samplesPerPixel: firstNumber(json, '00280002'),
          bitsAllocated: firstNumber(json, '00280100'),
        });
  }
  return {
    tag: hex8(p.tag),
    encapsulated: p.encapsulated,
    deflated,
    valueOffset: p.valueOffset,
    valueLength: p.valueLength,
    numberOfFrames,
    frames,
  };
}
