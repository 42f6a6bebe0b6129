/**
 * C-FIND response identifiers written without dcmjs (PS3.5 §7.1): the handful of string attributes a
 * query returns, in Implicit or Explicit VR Little Endian.
 *
 * dcmjs-dimse writes a response's data set by naturalizing our DICOM JSON, denaturalizing it again and
 * running dcmjs's writer, about 0.1 ms of a one-match C-FIND's ~1 ms of CPU. {@link encodeIdentifier}
 * writes the same bytes (unit-tested against dcmjs) straight from the DICOM JSON; anything outside plain
 * ASCII strings, integer IS values and single-component person names (sequences, binary VRs, other
 * transfer syntaxes, non-ASCII text) returns undefined and the caller lets dcmjs write it. The element
 * encoding (headers, padding) is the raw data set writer's that transcoding uses.
 */
import dcmjs from 'dcmjs';
import { writeDataset, type RawElement } from '@portico/imaging';
import type { JsonDataset } from './find-match.ts';

const { DicomMetaDictionary } = dcmjs.data;

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** String VRs with a 2-byte length in Explicit VR (PS3.5 Table 7.1-2). */
const SHORT_STRING_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UI']);
/** String VRs with a 4-byte length in Explicit VR (PS3.5 Table 7.1-1). */
const LONG_STRING_VRS = new Set(['UC', 'UR', 'UT']);

/** The value of one element as the string it is written as, or undefined when it is not a simple one. */
function textOf(vr: string, values: readonly unknown[] | undefined): string | undefined {
  if (!values || values.length === 0) return '';
  const parts: string[] = [];
  for (const v of values) {
    if (typeof v === 'string') parts.push(v);
    else if (typeof v === 'number' && vr === 'IS' && Number.isInteger(v)) parts.push(String(v));
    else if (vr === 'PN' && v !== null && typeof v === 'object') {
      const pn = v as Record<string, unknown>;
      const keys = Object.keys(pn);
      if (keys.length !== 1 || keys[0] !== 'Alphabetic' || typeof pn['Alphabetic'] !== 'string') return undefined;
      parts.push(pn['Alphabetic']);
    } else return undefined;
  }
  const text = parts.join('\\');
  return /^[\x20-\x7e]*$/.test(text) ? text : undefined;
}

/** The identifier's bytes in the given transfer syntax, or undefined when dcmjs must write it. */
export function encodeIdentifier(identifier: JsonDataset, transferSyntaxUid: string): Buffer | undefined {
  const explicit = transferSyntaxUid === EXPLICIT_LE;
  if (!explicit && transferSyntaxUid !== IMPLICIT_LE) return undefined;
  const elements: RawElement[] = [];
  for (const [key, element] of Object.entries(identifier)) {
    // Group lengths and File Meta elements are not written by writeDataset: leave them to dcmjs too.
    if (!/^[0-9A-Fa-f]{8}$/.test(key) || key.startsWith('0002') || key.endsWith('0000')) return undefined;
    const vr = element.vr;
    if (!SHORT_STRING_VRS.has(vr) && !LONG_STRING_VRS.has(vr)) return undefined;
    const text = textOf(vr, element.Value as readonly unknown[] | undefined);
    // Too long for a 16-bit length, writeDataset would turn it into UN.
    if (text === undefined || (explicit && SHORT_STRING_VRS.has(vr) && text.length + (text.length % 2) > 0xffff)) return undefined;
    elements.push({ tag: parseInt(key, 16), vr, value: Buffer.from(text, 'latin1') });
  }
  elements.sort((a, b) => a.tag - b.tag);
  return Buffer.concat(writeDataset(elements, explicit));
}

/** What {@link decodeIdentifier} reads itself; any other VR goes to dcmjs. */
const READ_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'PN', 'SH', 'TM', 'UI']);

/** Implicit VR: the VR of a standard attribute ("(0010,0010)" → "PN"), as dcmjs looks it up. */
function dictionaryVr(group: number, element: number): string | undefined {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
  return DicomMetaDictionary.dictionary[`(${hex(group)},${hex(element)})`]?.vr;
}

/**
 * The values of one string element as dcmjs 0.52 reads them (each VR trims and splits differently:
 * unit-tested against it), or undefined when it is not one of the plain cases.
 */
function readValues(vr: string, raw: string): unknown[] | null | undefined {
  switch (vr) {
    case 'AE':
    case 'LO':
    case 'SH':
      return raw.trim().split('\\');
    case 'CS':
      return raw.split('\\').map((v) => v.trim());
    case 'DA':
    case 'DT':
    case 'AS':
      return dropPadByte(raw.split('\\'));
    case 'TM':
      return dropPadByte(raw.replace(/\s*$/, '').split('\\'));
    case 'IS':
    case 'DS':
      // dcmjs reads an empty number as a null value; anything else as a string: leave that to it.
      return raw.trim() === '' ? null : undefined;
    case 'UI': {
      const uid = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
      return /^[0-9.\\]*$/.test(uid) ? uid.split('\\') : undefined;
    }
    case 'PN': {
      const name = raw.endsWith(' ') ? raw.slice(0, -1) : raw;
      // One component group per value; empty values are dropped, as dcmjs does.
      if (name.includes('=') || /^ | $|\\ | \\/.test(name)) return undefined;
      return name
        .split('\\')
        .filter((v) => v !== '')
        .map((v) => ({ Alphabetic: v }));
    }
    default:
      return undefined;
  }
}

/** dcmjs's dropPadByte: of several values, the last loses a trailing space that made the whole odd. */
function dropPadByte(values: string[]): string[] {
  const last = values[values.length - 1]!;
  if (values.length > 1 && last.length % 2 !== 0 && last.endsWith(' ')) values[values.length - 1] = last.slice(0, -1);
  return values;
}

/**
 * Reads a C-FIND-RQ identifier (Implicit or Explicit VR Little Endian) into the DICOM JSON that
 * dcmjs-dimse's parse followed by `denaturalizeDataset` gives (the C-FIND SCP's input), or undefined
 * when it holds anything but plain ASCII string elements of the standard dictionary — sequences, binary
 * VRs, private or group-length elements, Specific Character Set, non-ASCII text — which dcmjs then reads.
 *
 * dcmjs-dimse's parse of a three-key identifier (a memory stream, dcmjs's reader, naturalizing and
 * denaturalizing) was ~0.2 ms of CPU per query once warm, several times that in a fresh process.
 */
export function decodeIdentifier(bytes: Buffer, transferSyntaxUid: string): JsonDataset | undefined {
  const explicit = transferSyntaxUid === EXPLICIT_LE;
  if (!explicit && transferSyntaxUid !== IMPLICIT_LE) return undefined;
  const out: JsonDataset = {};
  for (let at = 0; at < bytes.length;) {
    if (at + 8 > bytes.length) return undefined;
    const group = bytes.readUInt16LE(at);
    const element = bytes.readUInt16LE(at + 2);
    if (group % 2 === 1 || group === 0x0002 || group === 0xfffe || element === 0x0000) return undefined;
    let vr: string | undefined;
    let length: number;
    if (explicit) {
      vr = bytes.toString('latin1', at + 4, at + 6);
      if (!READ_VRS.has(vr)) return undefined;
      length = bytes.readUInt16LE(at + 6);
      at += 8;
    } else {
      vr = dictionaryVr(group, element);
      length = bytes.readUInt32LE(at + 4);
      at += 8;
    }
    if (vr === undefined || !READ_VRS.has(vr) || at + length > bytes.length) return undefined;
    const tag = `${group.toString(16).padStart(4, '0')}${element.toString(16).padStart(4, '0')}`.toUpperCase();
    // Specific Character Set: dcmjs re-labels what it decodes (as ISO_IR 192); it reads those itself.
    if (tag === '00080005') return undefined;
    const raw = bytes.toString('latin1', at, at + length);
    at += length;
    // Printable ASCII only, a UID's NUL padding aside.
    if (!/^[\x20-\x7e]*\0?$/.test(raw) || (raw.endsWith('\0') && vr !== 'UI')) return undefined;
    const values = readValues(vr, raw);
    if (values === undefined) return undefined;
    out[tag] = { vr, Value: values as unknown[] };
  }
  return out;
}
