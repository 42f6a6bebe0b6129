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
import { writeDataset, type RawElement } from '@portico/imaging';
import type { JsonDataset } from './find-match.ts';

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
