/**
 * C-FIND identifier handling that needs no database (pure, unit-tested): splitting an identifier into
 * index-backed matching keys, keys matched against the stored DICOM JSON, and return keys; matching one
 * stored element against one key; building a response identifier.
 *
 * Matching (PS3.4 §C.2.2.2): universal (empty value), single value, list (`\`), wildcard (`*`, `?`),
 * range (DA, TM, DT: `a-b`, `-b`, `a-`) and sequence matching (an item of non-empty keys matches when
 * some stored item matches all of them). Person Names compare case- and accent-insensitively, as
 * QIDO-RS does (the index stores normalised names), on the Alphabetic component group.
 */
import { LEVEL_DEPTH, matchingKeyByTag, normalizePersonName, type Level, type MatchingKeyValue } from '@portico/db';

/** A DICOM JSON element (PS3.18 Annex F). */
export interface JsonElement {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
export type JsonDataset = Record<string, JsonElement>;

export type FindLevel = 'patient' | Level;

export const TAGS = {
  SpecificCharacterSet: '00080005',
  QueryRetrieveLevel: '00080052',
  RetrieveAETitle: '00080054',
  InstanceAvailability: '00080056',
  ModalitiesInStudy: '00080061',
  NumberOfPatientRelatedStudies: '00201200',
  NumberOfPatientRelatedSeries: '00201202',
  NumberOfPatientRelatedInstances: '00201204',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
} as const;

/** Tags never matched or echoed from the index: set by the response itself. */
const RESPONSE_TAGS = new Set<string>([TAGS.SpecificCharacterSet, TAGS.QueryRetrieveLevel, TAGS.RetrieveAETitle, TAGS.InstanceAvailability]);

/** Computed attributes (PS3.4 C.3.x) and the levels that answer them. */
const COMPUTED: Readonly<Record<string, readonly FindLevel[]>> = {
  [TAGS.NumberOfPatientRelatedStudies]: ['patient'],
  [TAGS.NumberOfPatientRelatedSeries]: ['patient'],
  [TAGS.NumberOfPatientRelatedInstances]: ['patient'],
  [TAGS.NumberOfStudyRelatedSeries]: ['study'],
  [TAGS.NumberOfStudyRelatedInstances]: ['study'],
  [TAGS.ModalitiesInStudy]: ['study'],
  [TAGS.NumberOfSeriesRelatedInstances]: ['series'],
};

const PATIENT_LEVEL_TAGS = new Set(['00100010', '00100020', '00100021', '00100030', '00100040']);

export class IdentifierError extends Error {}

export interface FindPlan {
  readonly level: FindLevel;
  /** Keys the SQL query matches on (index-backed). */
  readonly indexed: MatchingKeyValue[];
  /** Keys matched in code against the stored JSON of each candidate row. */
  readonly filters: Array<{ readonly tag: string; readonly key: JsonElement }>;
  /** Top-level tags of the identifier, in order: what each response carries. */
  readonly returnTags: string[];
}

const LEVELS: Readonly<Record<string, FindLevel>> = { PATIENT: 'patient', STUDY: 'study', SERIES: 'series', IMAGE: 'instance' };

/** The string a key matches with: PN by its Alphabetic group, values joined by `\`. */
export function keyString(el: JsonElement | undefined): string {
  if (!el?.Value || el.Value.length === 0) return '';
  return el.Value.map((v) => {
    if (v === null || v === undefined) return '';
    if (typeof v === 'object') return String((v as { Alphabetic?: unknown }).Alphabetic ?? '');
    return String(v);
  }).join('\\');
}

function isEmptyKey(el: JsonElement): boolean {
  if (el.vr === 'SQ') return !(el.Value ?? []).some((item) => Object.values(item as JsonDataset).some((e) => !isEmptyKey(e)));
  return keyString(el).trim() === '';
}

/**
 * Splits an identifier. `model` limits the levels: Study Root has no PATIENT level.
 * @throws IdentifierError when the level is missing or not offered, or a key lies below the level
 */
export function planFind(identifier: JsonDataset, model: 'patient' | 'study'): FindPlan {
  const levelText = keyString(identifier[TAGS.QueryRetrieveLevel]).trim().toUpperCase();
  const level = LEVELS[levelText];
  if (!level) throw new IdentifierError(`Query/Retrieve Level "${levelText.slice(0, 16)}" is not PATIENT, STUDY, SERIES or IMAGE`);
  if (level === 'patient' && model === 'study') throw new IdentifierError('the Study Root model has no PATIENT level');
  const depth = level === 'patient' ? -1 : LEVEL_DEPTH[level];
  const indexed: MatchingKeyValue[] = [];
  const filters: Array<{ tag: string; key: JsonElement }> = [];
  const returnTags: string[] = [];
  for (const [rawTag, el] of Object.entries(identifier)) {
    const tag = rawTag.toUpperCase();
    if (tag.startsWith('0000') || tag.startsWith('0002')) continue;
    returnTags.push(tag);
    if (RESPONSE_TAGS.has(tag) || tag in COMPUTED) continue;
    if (isEmptyKey(el)) continue; // universal matching: a return key only
    const mk = matchingKeyByTag(tag);
    if (mk) {
      const keyDepth = level === 'patient' ? (PATIENT_LEVEL_TAGS.has(tag) ? -1 : LEVEL_DEPTH[mk.level]) : LEVEL_DEPTH[mk.level];
      if (keyDepth > depth) throw new IdentifierError(`${mk.keyword} is below the ${levelText} level`);
      if (el.vr !== 'SQ') {
        indexed.push({ tag, value: keyString(el) });
        continue;
      }
    }
    filters.push({ tag, key: el });
  }
  return { level, indexed, filters, returnTags };
}

const RANGE_VRS = new Set(['DA', 'TM', 'DT']);

function wildcardRegex(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, (c) => `\\${c}`)
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

/** Person Name as compared: normalised (upper case, no accents), trailing empty components dropped. */
function foldName(v: string): string {
  return normalizePersonName(v.trim()).replace(/[\^ ]+$/, '');
}

/** One stored value against one key value (no list). */
function matchValue(stored: string, key: string, vr: string): boolean {
  const isPn = vr === 'PN';
  const s = isPn ? foldName(stored) : stored.trim();
  const k = isPn ? foldName(key) : key.trim();
  if (RANGE_VRS.has(vr) && k.includes('-')) {
    const [a = '', b = ''] = k.split('-');
    if (s === '') return false;
    if (a !== '' && s < a) return false;
    // An upper bound covers every value it prefixes (1015 covers 101559.9).
    if (b !== '' && s > b && !s.startsWith(b)) return false;
    return true;
  }
  if (k.includes('*') || k.includes('?')) return wildcardRegex(k).test(s);
  return s === k;
}

/** Whether a stored element matches a key element (PS3.4 §C.2.2.2). An absent attribute never matches a non-universal key. */
export function matchElement(stored: JsonElement | undefined, key: JsonElement): boolean {
  if (isEmptyKey(key)) return true;
  if (!stored) return false;
  if (key.vr === 'SQ') {
    const items = (stored.Value ?? []) as JsonDataset[];
    return ((key.Value ?? []) as JsonDataset[]).every((keyItem) =>
      items.some((item) => Object.entries(keyItem).every(([tag, k]) => matchElement(item[tag] ?? item[tag.toUpperCase()], k))),
    );
  }
  const keyValues = keyString(key).split('\\');
  const storedValues = keyString(stored).split('\\');
  return keyValues.some((k) => storedValues.some((s) => matchValue(s, k, key.vr)));
}

export interface ResponseSource {
  /** Stored JSON of the matched entity and its parents, most specific last. */
  readonly json: JsonDataset;
  /** Computed attributes of this level, by tag. */
  readonly computed: Readonly<Record<string, JsonElement>>;
}

/**
 * The response identifier: every requested key, with the stored value or empty (PS3.4 §C.4.1.2.3:
 * zero-length when the SCP has no value), plus Query/Retrieve Level and Retrieve AE Title. Binary
 * attributes stored as bulk data references are returned empty.
 */
export function responseIdentifier(plan: FindPlan, src: ResponseSource, levelText: string, aeTitle: string): JsonDataset {
  const out: JsonDataset = {};
  let nonAscii = false;
  for (const tag of plan.returnTags) {
    if (tag === TAGS.SpecificCharacterSet) continue;
    if (tag === TAGS.QueryRetrieveLevel || tag === TAGS.RetrieveAETitle || tag === TAGS.InstanceAvailability) continue;
    const computed = src.computed[tag];
    const stored = computed ?? src.json[tag];
    if (!stored || stored.BulkDataURI !== undefined || stored.InlineBinary !== undefined) {
      out[tag] = { vr: stored?.vr ?? 'UN' };
      continue;
    }
    out[tag] = stored;
    if (!nonAscii && /[^\x20-\x7e]/.test(JSON.stringify(stored.Value ?? []))) nonAscii = true;
  }
  out[TAGS.QueryRetrieveLevel] = { vr: 'CS', Value: [levelText] };
  out[TAGS.RetrieveAETitle] = { vr: 'AE', Value: [aeTitle] };
  if (plan.returnTags.includes(TAGS.InstanceAvailability)) out[TAGS.InstanceAvailability] = { vr: 'CS', Value: ['ONLINE'] };
  // Strings are written as UTF-8 (PS3.5 §6.1.2.3, ISO_IR 192) whenever one is not plain ASCII.
  if (nonAscii) out[TAGS.SpecificCharacterSet] = { vr: 'CS', Value: ['ISO_IR 192'] };
  return out;
}

/** Tags of the computed attributes a level answers. */
export function computedFor(level: FindLevel): string[] {
  return Object.entries(COMPUTED)
    .filter(([, levels]) => levels.includes(level))
    .map(([tag]) => tag);
}
