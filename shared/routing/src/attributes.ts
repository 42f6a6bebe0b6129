/**
 * Attributes as routes.yml names them (keyword, `(gggg,eeee)` or `ggggeeee`, dotted into sequences) and as
 * conditions see their values in the DICOM JSON Model.
 * @see PS3.18 §F.2
 */
import { keywordToTag, lookupTag, type DicomJsonDataset, type DicomJsonElement, type DicomJsonPersonName } from '@portico/dicom';

/** One step of a parsed attribute path: the tag, and the VR the dictionary gives it (undefined: private or unknown). */
export interface PathStep {
  readonly tag: string;
  readonly vr: string | undefined;
  /** as written, for messages */
  readonly name: string;
}

const PAREN_TAG = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/;
const HEX_TAG = /^[0-9A-Fa-f]{8}$/;
const KEYWORD = /^[A-Za-z][A-Za-z0-9]*$/;

/** Numeric VRs: their DICOM JSON values are numbers (or, beyond 2^53, decimal strings). @see PS3.18 §F.2.3 */
export const NUMERIC_VRS: ReadonlySet<string> = new Set(['DS', 'IS', 'FD', 'FL', 'SL', 'SS', 'SV', 'UL', 'US', 'UV']);
/** VRs whose values are bytes: bulk data or InlineBinary in DICOM JSON, never text to compare. */
export const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
/** Every VR of PS3.5 Table 6.2-1. */
export const ALL_VRS: ReadonlySet<string> = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'PN',
  'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]); // prettier-ignore

/** Tag (8 upper-case hex digits) of `(gggg,eeee)` or `ggggeeee`; `undefined` when `text` is neither. */
export function parseTag(text: string): string | undefined {
  const paren = PAREN_TAG.exec(text);
  if (paren) return `${paren[1]}${paren[2]}`.toUpperCase();
  return HEX_TAG.test(text) ? text.toUpperCase() : undefined;
}

/**
 * Steps of an attribute path such as `RequestAttributesSequence.RequestedProcedureDescription` or
 * `(0040,0275).(0032,1060)`. Returns the reason as a string when the path is not usable: unknown keyword,
 * malformed tag, a step before the last that is not a sequence, or an element the data set never holds
 * (File Meta group 0002, group lengths, item delimiters).
 */
export function parseAttributePath(text: string): PathStep[] | string {
  const steps: PathStep[] = [];
  const parts = text.split('.');
  for (const [i, name] of parts.entries()) {
    let tag: string | undefined;
    if (KEYWORD.test(name) && !HEX_TAG.test(name)) {
      tag = keywordToTag(name);
      if (tag === undefined) return `unknown attribute keyword "${name}" (keywords are case-sensitive, as in PS3.6: PatientName)`;
    } else {
      tag = parseTag(name);
      if (tag === undefined && /^\([0-9A-Fa-f]{0,4}$|^[0-9A-Fa-f]{0,4}\)$/.test(name)) {
        return `"${name}" is half a tag: inside { } and [ ] a comma separates entries, so quote the tag ('(0009,1010)') or write it 00091010`;
      }
      if (tag === undefined) return `"${name}" is neither a PS3.6 keyword nor a tag written (gggg,eeee) or ggggeeee`;
    }
    const group = tag.slice(0, 4);
    if (group === '0002') return `${name} is File Meta Information (group 0002), which is not part of the data set routes see`;
    if (group === 'FFFE') return `${name} is an item delimiter, not an attribute`;
    if (tag.endsWith('0000')) return `${name} is a group length, which the data set routes see never holds`;
    const vr = lookupTag(tag)?.vr;
    if (i < parts.length - 1 && vr !== undefined && vr !== 'SQ') {
      return `${name} is not a sequence (VR ${vr}), so the path cannot go into it`;
    }
    steps.push({ tag, vr, name });
  }
  return steps;
}

/** Every element the path reaches: steps before the last go into every item of their sequence. */
export function reachElements(dataset: DicomJsonDataset, path: readonly string[], out: DicomJsonElement[] = [], depth = 0): DicomJsonElement[] {
  const element = dataset[path[depth]!];
  if (element === undefined) return out;
  if (depth === path.length - 1) {
    out.push(element);
    return out;
  }
  if (element.vr !== 'SQ' || !element.Value) return out;
  for (const item of element.Value) {
    if (item !== null && typeof item === 'object') reachElements(item as DicomJsonDataset, path, out, depth + 1);
  }
  return out;
}

/**
 * A Person Name value in its DICOM string form, `Alphabetic=Ideographic=Phonetic` without trailing empty
 * groups: `Doe^John` for the usual alphabetic-only name.
 * @see PS3.5 §6.2.1.2
 */
export function personNameText(pn: DicomJsonPersonName): string {
  return [pn.Alphabetic ?? '', pn.Ideographic ?? '', pn.Phonetic ?? ''].join('=').replace(/=+$/, '');
}

/**
 * The values conditions compare with, one per value of the element. A present element without a value
 * counts as one empty string; an empty value inside a multi-valued one (`null`) as an empty string; Person
 * Names as their string form; numbers stay numbers. Sequences and bulk data give nothing to compare.
 */
export function comparableValues(element: DicomJsonElement): (string | number)[] {
  if (element.vr === 'SQ' || element.BulkDataURI !== undefined || element.InlineBinary !== undefined) return [];
  if (!element.Value || element.Value.length === 0) return [''];
  const out: (string | number)[] = [];
  for (const v of element.Value) {
    if (v === null) out.push('');
    else if (typeof v === 'string' || typeof v === 'number') out.push(v);
    else if (element.vr === 'PN') out.push(personNameText(v as DicomJsonPersonName));
  }
  return out;
}
