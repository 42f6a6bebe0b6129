/**
 * STOW-RS metadata + bulk data (PS3.18 §10.5.1.1, Table 10.5.1-1): turns one DICOM JSON data set (PS3.18
 * Annex F) and the bulk data parts its BulkDataURIs name into a Part-10 instance, which the route then
 * stores exactly like an `application/dicom` part.
 *
 * Encoding decisions:
 * - Transfer syntax: Explicit VR Little Endian, unless the top-level Pixel Data arrives as a compressed
 *   bulk data part (an image media type from PS3.18 Table 8.7.3-2, or any part with a `transfer-syntax`
 *   parameter naming a compressed syntax). Then Pixel Data is encapsulated (PS3.5 §A.4): a Basic Offset
 *   Table, then one fragment per frame, one part per frame in order, all with the same Content-Location.
 * - JSON text is Unicode. When any text value is non-ASCII the values are written as UTF-8 and Specific
 *   Character Set (0008,0005) becomes ISO_IR 192 (in nested items that declare one, too); the sender's
 *   own value would no longer describe the bytes. @see PS3.18 §F.2, PS3.5 §6.1.2.5
 * - Values: PN component groups joined by '=' (PS3.18 §F.2.2), IS/DS from JSON numbers (DS shortened to its
 *   16 characters), US/SS/UL/SL/FL/FD/SV/UV and AT binary little endian (PS3.18 §F.2.3), binary VRs from
 *   InlineBinary (base64, little endian: PS3.18 §F.2.7) or BulkDataURI, sequences recursively. The element
 *   writer is the one the export transform uses (`writeDataset` of @portico/imaging): tag order, odd
 *   lengths padded, sequences of undefined length, group 0002 and group lengths left out (the File Meta
 *   group is written by `writeFileMetaInformation`), and so are Data Set Trailing Padding and an Extended
 *   Offset Table (PS3.5 §A.4: it would describe the sender's fragments, not ours).
 * Everything that cannot be encoded is a PorticoError CANNOT_UNDERSTAND (0xC000) or MISSING_ATTRIBUTE
 * naming the tag, never the value (details reach logs).
 */
import { writeFileMetaInformation } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { writeDataset, type RawElement } from '@portico/imaging';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, canonicalType, type MediaType } from './media-types.ts';

/** One received bulk data part. */
export interface BulkPart {
  readonly mediaType: MediaType;
  readonly body: Buffer;
}

/** Bulk data parts by Content-Location (several parts may share one: the frames of compressed Pixel Data). */
export type BulkParts = ReadonlyMap<string, readonly BulkPart[]>;

export interface BuiltInstance {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly transferSyntaxUid: string;
  /** the Part-10 file: preamble, File Meta Information, data set */
  readonly bytes: Buffer;
  /** the Content-Locations this instance used */
  readonly used: ReadonlySet<string>;
}

/** Transfer syntax of a compressed bulk data media type without a `transfer-syntax` parameter. @see PS3.18 Table 8.7.3-5 */
const DEFAULT_TRANSFER_SYNTAX: Readonly<Record<string, string>> = {
  'image/jpeg': '1.2.840.10008.1.2.4.50',
  'image/jls': '1.2.840.10008.1.2.4.80',
  'image/jp2': '1.2.840.10008.1.2.4.90',
  'image/jpx': '1.2.840.10008.1.2.4.92',
  'image/jphc': '1.2.840.10008.1.2.4.201',
  'image/dicom-rle': '1.2.840.10008.1.2.5',
};
/** Native syntaxes a bulk data part may name: their pixel bytes are the same little-endian samples. */
const NATIVE = new Set([EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]);
const UID = /^[0-9]+(\.[0-9]+)*$/;
const TAG = /^[0-9A-Fa-f]{8}$/;

const TEXT_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DT', 'LO', 'LT', 'SH', 'ST', 'TM', 'UC', 'UR', 'UT', 'UI']);
const SINGLE_VALUED = new Set(['LT', 'ST', 'UT', 'UR']);
const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const PIXEL_DATA = '7FE00010';
const SPECIFIC_CHARACTER_SET = '00080005';

type Json = Record<string, unknown>;

function bad(path: string, why: string): PorticoError {
  return new PorticoError('CANNOT_UNDERSTAND', `${path}: ${why}`);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The first string Value of a top-level attribute, '' when absent. */
function firstString(ds: Json, tag: string): string {
  const el = ds[tag];
  const v = isObject(el) && Array.isArray(el['Value']) ? (el['Value'] as unknown[])[0] : undefined;
  return typeof v === 'string' ? v.trim() : '';
}

/** SOP Class and Instance UID of a data set, for failure reporting before (or without) encoding it. */
export function datasetUids(ds: unknown): { sopClassUid: string; sopInstanceUid: string } {
  if (!isObject(ds)) return { sopClassUid: '', sopInstanceUid: '' };
  const uid = (tag: string): string => {
    const s = firstString(ds, tag);
    return UID.test(s) ? s : '';
  };
  return { sopClassUid: uid('00080016'), sopInstanceUid: uid('00080018') };
}

/** True when a text value anywhere in the data set is outside US-ASCII. */
function needsUtf8(ds: Json): boolean {
  for (const el of Object.values(ds)) {
    if (!isObject(el) || !Array.isArray(el['Value'])) continue;
    for (const v of el['Value'] as unknown[]) {
      if (typeof v === 'string' && /[^\x00-\x7f]/.test(v)) return true;
      if (isObject(v)) {
        if (el['vr'] === 'SQ' ? needsUtf8(v) : Object.values(v).some((s) => typeof s === 'string' && /[^\x00-\x7f]/.test(s))) return true;
      }
    }
  }
  return false;
}

/**
 * A DS value of at most 16 characters (PS3.5 Table 6.2-1): the shortest round-trip form when it fits,
 * else as many significant digits as fit.
 */
export function formatDs(n: number): string {
  const s = String(n);
  if (s.length <= 16) return s;
  // "0.5" may be written ".5": one more significant digit in 16 characters.
  const short = (t: string): string => t.replace(/^(-?)0\./, '$1.');
  for (let p = 15; p >= 1; p--) {
    const t = short(Number(n.toPrecision(p)).toString());
    if (t.length <= 16) return t;
    const e = n.toExponential(Math.max(0, p - 1)).replace('e+', 'E');
    if (e.length <= 16) return e;
  }
  throw new RangeError(`${n} cannot be written as DS`);
}

function numbersToBytes(vr: string, values: readonly unknown[], path: string): Buffer {
  const size = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, SV: 8, UV: 8, AT: 4 }[vr]!;
  const out = Buffer.alloc(size * values.length);
  values.forEach((v, i) => {
    const o = i * size;
    if (vr === 'AT') {
      if (typeof v !== 'string' || !TAG.test(v)) throw bad(path, 'AT values are 8 hex digits (PS3.18 §F.2.3)');
      out.writeUInt16LE(Number.parseInt(v.slice(0, 4), 16), o);
      out.writeUInt16LE(Number.parseInt(v.slice(4), 16), o + 2);
      return;
    }
    if (vr === 'SV' || vr === 'UV') {
      // 64-bit integers beyond 2^53 travel as strings (PS3.18 §F.2.3.1).
      if (!(typeof v === 'number' && Number.isInteger(v)) && !(typeof v === 'string' && /^[+-]?\d+$/.test(v))) throw bad(path, `${vr} value is not an integer`);
      const big = BigInt(v);
      if (vr === 'SV') out.writeBigInt64LE(big, o);
      else out.writeBigUInt64LE(big, o);
      return;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(path, `${vr} values are JSON numbers (PS3.18 §F.2.3)`);
    try {
      if (vr === 'US') out.writeUInt16LE(v, o);
      else if (vr === 'SS') out.writeInt16LE(v, o);
      else if (vr === 'UL') out.writeUInt32LE(v, o);
      else if (vr === 'SL') out.writeInt32LE(v, o);
      else if (vr === 'FL') out.writeFloatLE(v, o);
      else out.writeDoubleLE(v, o);
    } catch {
      throw bad(path, `${vr} value out of range`);
    }
  });
  return out;
}

function personName(v: unknown, path: string): string {
  if (v === null) return '';
  if (!isObject(v)) throw bad(path, 'PN values are objects with Alphabetic/Ideographic/Phonetic (PS3.18 §F.2.2)');
  const groups = ['Alphabetic', 'Ideographic', 'Phonetic'].map((k) => {
    const g = v[k];
    if (g !== undefined && typeof g !== 'string') throw bad(path, `PN ${k} is not a string`);
    return g ?? '';
  });
  while (groups.length > 1 && groups[groups.length - 1] === '') groups.pop();
  return groups.join('=');
}

function stringValue(vr: string, values: readonly unknown[], path: string): string {
  const strings = values.map((v) => {
    if (v === null) return '';
    if (vr === 'PN') return personName(v, path);
    if (vr === 'IS') {
      if (typeof v === 'number' && Number.isInteger(v)) return String(v);
      if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) return v.trim();
      throw bad(path, 'IS value is not an integer');
    }
    if (vr === 'DS') {
      if (typeof v === 'number' && Number.isFinite(v)) return formatDs(v);
      if (typeof v === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)) return v.trim();
      throw bad(path, 'DS value is not a number');
    }
    if (typeof v !== 'string') throw bad(path, `${vr} values are strings`);
    if (vr !== 'UT' && vr !== 'ST' && vr !== 'LT' && vr !== 'UR' && v.includes('\\')) throw bad(path, `a ${vr} value contains a backslash`);
    return v;
  });
  if (SINGLE_VALUED.has(vr) && strings.length > 1) throw bad(path, `${vr} has a single value`);
  return strings.join('\\');
}

interface BuildContext {
  readonly bulk: BulkParts;
  readonly used: Set<string>;
  readonly utf8: boolean;
  /** set when the top-level Pixel Data is encapsulated */
  transferSyntaxUid?: string;
  numberOfFrames: number;
}

function isCompressed(part: BulkPart): string | undefined {
  const type = canonicalType(part.mediaType.type);
  const ts = part.mediaType.params['transfer-syntax'];
  if (type === 'application/octet-stream') return ts !== undefined && !NATIVE.has(ts) ? ts : undefined;
  return ts ?? DEFAULT_TRANSFER_SYNTAX[type] ?? '';
}

function bulkParts(ctx: BuildContext, uri: unknown, path: string): readonly BulkPart[] {
  if (typeof uri !== 'string' || uri === '') throw bad(path, 'BulkDataURI is not a string');
  const parts = ctx.bulk.get(uri);
  if (!parts || parts.length === 0) throw bad(path, `no bulk data part has Content-Location ${JSON.stringify(uri)}`);
  ctx.used.add(uri);
  return parts;
}

/** Basic Offset Table + one fragment per frame. @see PS3.5 §A.4 */
function encapsulate(frames: readonly Buffer[]): Buffer[] {
  const bot = Buffer.alloc(4 * frames.length);
  let offset = 0;
  frames.forEach((f, i) => {
    bot.writeUInt32LE(offset, 4 * i);
    offset += 8 + f.length + (f.length % 2);
  });
  return [bot, ...frames];
}

function toElement(ctx: BuildContext, tag: string, el: unknown, path: string, top: boolean): RawElement {
  if (!isObject(el) || typeof el['vr'] !== 'string') throw bad(path, 'attribute without a vr');
  const vr = el['vr'];
  const t = Number.parseInt(tag, 16);
  const value = el['Value'];
  const hasValue = value !== undefined;
  const hasInline = el['InlineBinary'] !== undefined;
  const hasBulk = el['BulkDataURI'] !== undefined;
  if (Number(hasValue) + Number(hasInline) + Number(hasBulk) > 1) throw bad(path, 'more than one of Value, InlineBinary, BulkDataURI (PS3.18 §F.2.2)');
  if (hasValue && !Array.isArray(value)) throw bad(path, 'Value is not an array');
  const values = (value ?? []) as unknown[];

  if (vr === 'SQ') {
    if (hasInline || hasBulk) throw bad(path, 'a sequence has no binary value');
    return {
      tag: t,
      vr,
      items: values.map((item, i) => {
        if (!isObject(item)) throw bad(`${path}/${i}`, 'sequence item is not an object');
        return toElements(ctx, item, `${path}/${i}`, false);
      }),
    };
  }
  if (hasBulk) {
    const parts = bulkParts(ctx, el['BulkDataURI'], path);
    if (top && tag === PIXEL_DATA) {
      const syntaxes = new Set(parts.map(isCompressed));
      if (syntaxes.size > 1) throw bad(path, 'the Pixel Data parts disagree on their transfer syntax');
      const ts = [...syntaxes][0];
      if (ts === '') throw bad(path, `bulk data of type ${parts[0]!.mediaType.type} without a transfer-syntax parameter`);
      if (ts !== undefined) {
        if (!UID.test(ts) || ts === '1.2.840.10008.1.2.2' || ts === '1.2.840.10008.1.2.1.99')
          throw bad(path, `transfer syntax ${ts} is not an encapsulated syntax`);
        if (parts.length !== ctx.numberOfFrames) {
          throw bad(path, `compressed Pixel Data needs one part per frame: ${parts.length} parts for ${ctx.numberOfFrames} frames`);
        }
        ctx.transferSyntaxUid = ts;
        return { tag: t, vr: 'OB', fragments: encapsulate(parts.map((p) => p.body)) };
      }
    } else if (parts.some((p) => isCompressed(p) !== undefined)) {
      throw bad(path, 'only the top-level Pixel Data may be compressed');
    }
    if (!BINARY_VRS.has(vr) && !TEXT_VRS.has(vr)) throw bad(path, `BulkDataURI for a ${vr} attribute`);
    return { tag: t, vr, value: parts.length === 1 ? parts[0]!.body : Buffer.concat(parts.map((p) => p.body)) };
  }
  if (hasInline) {
    const b64 = el['InlineBinary'];
    if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64.replace(/\s+/g, ''))) throw bad(path, 'InlineBinary is not base64');
    return { tag: t, vr, value: Buffer.from(b64, 'base64') };
  }
  if (BINARY_VRS.has(vr)) {
    if (hasValue && values.length > 0) throw bad(path, `${vr} values travel as InlineBinary or BulkDataURI (PS3.18 §F.2.7)`);
    return { tag: t, vr, value: Buffer.alloc(0) };
  }
  switch (vr) {
    case 'US':
    case 'SS':
    case 'UL':
    case 'SL':
    case 'FL':
    case 'FD':
    case 'SV':
    case 'UV':
    case 'AT':
      return { tag: t, vr, value: numbersToBytes(vr, values, path) };
  }
  if (!TEXT_VRS.has(vr) && vr !== 'PN' && vr !== 'IS' && vr !== 'DS') throw bad(path, `unknown VR ${JSON.stringify(vr)}`);
  if (tag === SPECIFIC_CHARACTER_SET && ctx.utf8) return { tag: t, vr, value: Buffer.from('ISO_IR 192', 'latin1') };
  return { tag: t, vr, value: Buffer.from(stringValue(vr, values, path), 'utf8') };
}

function toElements(ctx: BuildContext, ds: Json, path: string, top: boolean): RawElement[] {
  const entries = Object.entries(ds).map(([key, el]) => {
    if (!TAG.test(key)) throw bad(path || '/', `key ${JSON.stringify(key.slice(0, 20))} is not a tag (PS3.18 §F.2.1.1)`);
    return [key.toUpperCase(), el] as const;
  });
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return entries.map(([tag, el]) => toElement(ctx, tag, el, path ? `${path}/${tag}` : tag, top));
}

/**
 * Encodes one data set of a metadata + bulk data request as a Part-10 file.
 * @throws PorticoError MISSING_ATTRIBUTE without SOP Class/Instance UID, CANNOT_UNDERSTAND for anything
 *   that cannot be encoded (including a BulkDataURI no part answers)
 * @see PS3.18 §10.5.1.1, Annex F; PS3.10 §7.1; PS3.5 §7.1, §A.4
 */
export function buildInstance(ds: unknown, bulk: BulkParts): BuiltInstance {
  if (!isObject(ds)) throw new PorticoError('CANNOT_UNDERSTAND', 'a metadata array element is not a DICOM JSON data set');
  const { sopClassUid, sopInstanceUid } = datasetUids(ds);
  if (firstString(ds, '00080016') === '') throw new PorticoError('MISSING_ATTRIBUTE', 'the data set has no SOPClassUID (0008,0016)');
  if (firstString(ds, '00080018') === '') throw new PorticoError('MISSING_ATTRIBUTE', 'the data set has no SOPInstanceUID (0008,0018)');
  if (sopClassUid === '' || sopInstanceUid === '') throw new PorticoError('CANNOT_UNDERSTAND', 'SOPClassUID or SOPInstanceUID is not a valid UID');
  const frames = isObject(ds['00280008']) ? (ds['00280008']['Value'] as unknown[] | undefined)?.[0] : undefined;
  const utf8 = needsUtf8(ds);
  const ctx: BuildContext = {
    bulk,
    used: new Set(),
    utf8,
    numberOfFrames: typeof frames === 'number' && frames > 0 ? frames : typeof frames === 'string' && Number(frames) > 0 ? Number(frames) : 1,
  };
  // An Extended Offset Table (and its lengths) describes the sender's fragments, not the ones written
  // here (one per frame behind a Basic Offset Table), and means nothing for native data: never copied.
  const elements = toElements(ctx, ds, '', true).filter((e) => e.tag !== 0x7fe00001 && e.tag !== 0x7fe00002);
  if (utf8 && !elements.some((e) => e.tag === 0x00080005)) {
    elements.unshift({ tag: 0x00080005, vr: 'CS', value: Buffer.from('ISO_IR 192', 'latin1') });
    elements.sort((a, b) => a.tag - b.tag);
  }
  const transferSyntaxUid = ctx.transferSyntaxUid ?? EXPLICIT_VR_LITTLE_ENDIAN;
  let meta: Buffer;
  try {
    meta = writeFileMetaInformation({ sopClassUid, sopInstanceUid, transferSyntaxUid });
  } catch (err) {
    throw new PorticoError('CANNOT_UNDERSTAND', (err as Error).message);
  }
  return { sopClassUid, sopInstanceUid, transferSyntaxUid, bytes: Buffer.concat([meta, ...writeDataset(elements, true)]), used: ctx.used };
}
