/**
 * Conversion of element values to the DICOM JSON Model. Only value-level rules live here; structure
 * (sequences, bulk data, paths) belongs to the parser.
 * @see PS3.18 §F.2
 */
import type { CharsetDecoder } from './charset.ts';

/** A Person Name value: one string per component group. @see PS3.18 §F.2.2 */
export interface DicomJsonPersonName {
  Alphabetic?: string;
  Ideographic?: string;
  Phonetic?: string;
}

/** One value of a multi-valued element; `null` stands for an empty value between delimiters. @see PS3.18 §F.2.5 */
export type DicomJsonValue = string | number | DicomJsonPersonName | DicomJsonDataset | null;

/** One attribute in the DICOM JSON Model. @see PS3.18 §F.2.2 */
export interface DicomJsonElement {
  vr: string;
  Value?: DicomJsonValue[];
  /** base64 of the value, little endian for multi-byte VRs @see PS3.18 §F.2.7 */
  InlineBinary?: string;
  /** where the value can be fetched; relative here (a tag path), made absolute by the web layer @see PS3.18 §F.2.6 */
  BulkDataURI?: string;
}

/** A data set (or sequence item): 8-hex-digit upper-case tag -> attribute. @see PS3.18 §F.2.1 */
export type DicomJsonDataset = Record<string, DicomJsonElement>;

/** VRs whose values are opaque bytes; large ones become bulk data. @see PS3.18 §F.2.6 */
export const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);

/** Text VRs holding a single value in which `\` is an ordinary character. @see PS3.5 §6.4 */
const SINGLE_VALUED_TEXT = new Set(['ST', 'LT', 'UT', 'UR']);
/** String VRs whose leading spaces are significant (only trailing padding is removed). @see PS3.5 Table 6.2-1 */
const KEEP_LEADING = new Set(['ST', 'LT', 'UT', 'UR', 'UC', 'PN']);

const DS_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const IS_PATTERN = /^[+-]?\d+$/;

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function trimValue(text: string, vr: string): string {
  // NUL padding is not allowed outside UI but is common; it is never content.
  const end = text.replace(/[\0 ]+$/, '');
  return KEEP_LEADING.has(vr) ? end : end.replace(/^[\0 ]+/, '');
}

function splitValues(text: string, vr: string): string[] {
  return SINGLE_VALUED_TEXT.has(vr) ? [text] : text.split('\\');
}

/**
 * IS and DS become JSON numbers, as PS3.18 §F.2.3 requires. A value that is not a number (junk such as
 * "n/a", or out of double range) becomes `null`: emitting it as a string would break clients that rely on
 * the number type, and the original bytes remain available in the stored object.
 */
function parseNumberString(text: string, vr: 'IS' | 'DS'): number | null {
  if (text === '') return null;
  // IS values with a fraction ("12.0") are invalid but common; read them as DS rather than losing them.
  if (!(vr === 'IS' ? IS_PATTERN.test(text) || DS_PATTERN.test(text) : DS_PATTERN.test(text))) return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

function personName(text: string): DicomJsonPersonName | null {
  const [alphabetic = '', ideographic = '', phonetic = ''] = text.split('=');
  const out: DicomJsonPersonName = {};
  const a = alphabetic.replace(/[\0 ]+$/, '');
  const i = ideographic.replace(/[\0 ]+$/, '');
  const p = phonetic.replace(/[\0 ]+$/, '');
  if (a !== '') out.Alphabetic = a;
  if (i !== '') out.Ideographic = i;
  if (p !== '') out.Phonetic = p;
  return a === '' && i === '' && p === '' ? null : out;
}

/** 64-bit integers are numbers while exact, strings beyond 2^53 (PS3.18 §F.2.3.1). */
function bigToJson(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

function finiteOrNull(v: number): number | null {
  return Number.isFinite(v) ? v : null;
}

function readNumbers(vr: string, b: Buffer, little: boolean): DicomJsonValue[] {
  const out: DicomJsonValue[] = [];
  switch (vr) {
    case 'US':
      for (let o = 0; o + 2 <= b.length; o += 2) out.push(little ? b.readUInt16LE(o) : b.readUInt16BE(o));
      break;
    case 'SS':
      for (let o = 0; o + 2 <= b.length; o += 2) out.push(little ? b.readInt16LE(o) : b.readInt16BE(o));
      break;
    case 'UL':
      for (let o = 0; o + 4 <= b.length; o += 4) out.push(little ? b.readUInt32LE(o) : b.readUInt32BE(o));
      break;
    case 'SL':
      for (let o = 0; o + 4 <= b.length; o += 4) out.push(little ? b.readInt32LE(o) : b.readInt32BE(o));
      break;
    case 'FL':
      for (let o = 0; o + 4 <= b.length; o += 4) out.push(finiteOrNull(little ? b.readFloatLE(o) : b.readFloatBE(o)));
      break;
    case 'FD':
      for (let o = 0; o + 8 <= b.length; o += 8) out.push(finiteOrNull(little ? b.readDoubleLE(o) : b.readDoubleBE(o)));
      break;
    case 'SV':
      for (let o = 0; o + 8 <= b.length; o += 8) out.push(bigToJson(little ? b.readBigInt64LE(o) : b.readBigInt64BE(o)));
      break;
    case 'UV':
      for (let o = 0; o + 8 <= b.length; o += 8) out.push(bigToJson(little ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)));
      break;
    case 'AT':
      for (let o = 0; o + 4 <= b.length; o += 4) {
        const g = little ? b.readUInt16LE(o) : b.readUInt16BE(o);
        const e = little ? b.readUInt16LE(o + 2) : b.readUInt16BE(o + 2);
        out.push(hex8((g << 16) | e));
      }
      break;
  }
  return out;
}

/** Tag as 8 upper-case hex digits, the key format of the DICOM JSON Model. @see PS3.18 §F.2.1.1 */
export function hex8(tag: number): string {
  return (tag >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/** Size of the unit that PS3.5 §7.3 byte-swaps in big endian, per binary VR. */
const SWAP_UNIT: Readonly<Record<string, number>> = { OW: 2, OF: 4, OL: 4, OD: 8, OV: 8 };

/**
 * Base64 of a binary value in little endian, whatever the transfer syntax, because InlineBinary is
 * defined on the little-endian encoding. @see PS3.18 §F.2.7
 */
export function inlineBinary(vr: string, bytes: Buffer, little: boolean): string {
  const unit = SWAP_UNIT[vr];
  if (little || unit === undefined || bytes.length % unit !== 0) return bytes.toString('base64');
  const copy = Buffer.from(bytes);
  if (unit === 2) copy.swap16();
  else if (unit === 4) copy.swap32();
  else copy.swap64();
  return copy.toString('base64');
}

/**
 * DICOM JSON for one element whose value is in memory. `decoder` applies to the text VRs that
 * Specific Character Set governs; the rest are read as ISO 8859-1, a superset of the default repertoire.
 * Empty values give `{ vr }` without `Value` (PS3.18 §F.2.5).
 * @see PS3.18 §F.2.3
 */
export function elementToJson(vr: string, bytes: Buffer, little: boolean, decoder: CharsetDecoder): DicomJsonElement {
  if (bytes.length === 0) return { vr };
  if (BINARY_VRS.has(vr)) return { vr, InlineBinary: inlineBinary(vr, bytes, little) };
  switch (vr) {
    case 'US':
    case 'SS':
    case 'UL':
    case 'SL':
    case 'FL':
    case 'FD':
    case 'SV':
    case 'UV':
    case 'AT': {
      const values = readNumbers(vr, bytes, little);
      return values.length > 0 ? { vr, Value: values } : { vr };
    }
  }
  const decoded =
    vr === 'SH' || vr === 'LO' || vr === 'ST' || vr === 'LT' || vr === 'UT' || vr === 'PN' || vr === 'UC' ? decoder.decode(bytes, vr) : latin1(bytes);
  const raw = splitValues(decoded, vr);
  let values: DicomJsonValue[];
  if (vr === 'PN') {
    values = raw.map((v) => personName(v));
  } else if (vr === 'IS' || vr === 'DS') {
    values = raw.map((v) => parseNumberString(trimValue(v, vr), vr));
  } else if (vr === 'UI') {
    values = raw.map((v) => {
      const t = v.replace(/[\0 ]+$/, '').trim();
      return t === '' ? null : t;
    });
  } else {
    values = raw.map((v) => {
      const t = trimValue(v, vr);
      return t === '' ? null : t;
    });
  }
  // A value that is only padding is an empty element, not one empty value.
  if (values.every((v) => v === null)) return { vr };
  return { vr, Value: values };
}
