/**
 * Look-ups in the generated PS3.6 data dictionary. The parser needs the VR of every element of an
 * Implicit VR data set, and other packages need keyword <-> tag; both live here so the generated file
 * stays a plain table.
 */
import { DICTIONARY, DICTIONARY_RANGES, US_OR_SS_TAGS } from './generated/dictionary.ts';

export { DICTIONARY_SNAPSHOT } from './generated/dictionary.ts';

/** A dictionary entry: the VR to assume when the encoding does not carry one, and the PS3.6 keyword. */
export interface DictionaryEntry {
  vr: string;
  keyword: string;
}

/**
 * The PS3.6 entry for `tag` (8 hex digits, any case), including repeating-group entries such as
 * Overlay Data (60xx,3000). Group lengths (gggg,0000) resolve to UL and private creators (odd group,
 * element 0010–00FF) to LO, as PS3.5 §7.2 and §7.8.1 define them for every group.
 * @see PS3.6 §6
 */
export function lookupTag(tag: string): DictionaryEntry | undefined {
  const id = tag.toUpperCase();
  const hit = DICTIONARY[id];
  if (hit) return { vr: hit[0], keyword: hit[1] };
  const group = Number.parseInt(id.slice(0, 4), 16);
  const element = Number.parseInt(id.slice(4, 8), 16);
  if (element === 0) return { vr: 'UL', keyword: 'GenericGroupLength' };
  if (group % 2 === 1) {
    return element >= 0x10 && element <= 0xff ? { vr: 'LO', keyword: 'PrivateCreator' } : undefined;
  }
  for (const [pattern, vr, keyword] of DICTIONARY_RANGES) {
    if (matchesPattern(pattern, id)) return { vr, keyword };
  }
  return undefined;
}

function matchesPattern(pattern: string, id: string): boolean {
  for (let i = 0; i < 8; i++) {
    const p = pattern.charCodeAt(i);
    if (p !== 0x78 /* x */ && p !== id.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * VR for an element read without an explicit VR. Unknown elements are UN (PS3.5 §6.2.2); "US or SS"
 * elements are SS when the governing Pixel Representation (0028,0103) is 1 (two's complement).
 * @see PS3.5 §A.1
 */
export function implicitVr(tag: string, pixelRepresentation?: number): string {
  const entry = lookupTag(tag);
  if (!entry) return 'UN';
  if (pixelRepresentation === 1 && US_OR_SS_TAGS.has(tag.toUpperCase())) return 'SS';
  return entry.vr;
}

/** PS3.6 keyword of a tag, `undefined` when the tag is private or unknown. @see PS3.6 §6 */
export function tagToKeyword(tag: string): string | undefined {
  const entry = lookupTag(tag);
  return entry && entry.keyword !== 'PrivateCreator' && entry.keyword !== 'GenericGroupLength' ? entry.keyword : undefined;
}

let keywordIndex: Map<string, string> | undefined;

/**
 * Tag (8 upper-case hex digits) of a PS3.6 keyword, e.g. `keywordToTag('PatientName') === '00100010'`.
 * Repeating-group keywords resolve to their first group (OverlayData -> 60003000).
 * @see PS3.6 §6
 */
export function keywordToTag(keyword: string): string | undefined {
  if (!keywordIndex) {
    const index = new Map<string, string>();
    for (const [tag, [, kw]] of Object.entries(DICTIONARY)) index.set(kw, tag);
    for (const [pattern, , kw] of DICTIONARY_RANGES) if (!index.has(kw)) index.set(kw, pattern.replace(/x/g, '0'));
    keywordIndex = index;
  }
  return keywordIndex.get(keyword);
}
