/**
 * QIDO-RS query parameters → a {@link QidoQuery} plus what to return. Pure, unit-tested.
 *
 * What we do with each parameter (PS3.18 §8.3.4):
 * - `{attributeID}={value}` with attributeID a keyword (`PatientName`) or tag (`00100010`): a matching key
 *   from {@link MATCHING_KEYS}. A key we do not support, an unknown keyword, a sequence path, or a key
 *   given twice is answered with 400 naming it. PS3.18 lets a server ignore keys it does not support; we
 *   refuse instead, because silently ignoring a filter returns more patients' data than was asked for.
 *   Matching keys are also returned (C-FIND semantics).
 * - `includefield`: repeated and/or comma-separated keywords or tags, or `all`. Sequence paths
 *   (`00400275.00401001`) return the whole top-level sequence. Unknown keywords → 400.
 * - `limit` (default PORTICO_QIDO_DEFAULT_LIMIT, capped at PORTICO_QIDO_MAX_LIMIT with a Warning),
 *   `offset`, `fuzzymatching` (`true`/`false`).
 */
import { keywordToTag, lookupTag } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { matchingKeyByTag, type MatchingKeyValue } from '@portico/db';

export interface QidoParams {
  readonly keys: MatchingKeyValue[];
  /** `includefield=all`. */
  readonly includeAll: boolean;
  /** Extra top-level tags to return (includefield, plus the matching keys). */
  readonly includeTags: string[];
  readonly limit: number;
  readonly offset: number;
  readonly fuzzy: boolean;
  /** The client asked for more than the maximum; a Warning header is due. */
  readonly limitCapped: boolean;
}

const TAG_RE = /^[0-9A-Fa-f]{8}$/;
const RESERVED = new Set(['limit', 'offset', 'fuzzymatching', 'includefield']);

/** A keyword or 8-hex-digit tag → upper-case tag, or undefined when it names no attribute. */
export function resolveAttribute(id: string): string | undefined {
  if (TAG_RE.test(id)) return id.toUpperCase();
  const tag = keywordToTag(id);
  return tag?.toUpperCase();
}

function single(name: string, v: string | string[] | undefined): string | undefined {
  if (Array.isArray(v)) {
    if (v.length > 1) throw new PorticoError('BAD_REQUEST', `query parameter ${name} is given more than once`);
    return v[0];
  }
  return v;
}

function nonNegativeInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,9}$/.test(v)) throw new PorticoError('BAD_REQUEST', `${name} must be a non-negative integer`);
  return Number(v);
}

export function parseQidoParams(
  query: Readonly<Record<string, string | string[] | undefined>>,
  limits: { readonly defaultLimit: number; readonly maxLimit: number },
): QidoParams {
  const keys: MatchingKeyValue[] = [];
  const includeTags = new Set<string>();
  let includeAll = false;

  for (const [name, raw] of Object.entries(query)) {
    if (raw === undefined) continue;
    if (RESERVED.has(name.toLowerCase())) continue;
    if (name.includes('.')) throw new PorticoError('BAD_REQUEST', `matching on sequence attributes (${name}) is not supported`);
    const tag = resolveAttribute(name);
    if (!tag) throw new PorticoError('BAD_REQUEST', `unknown query parameter or attribute: ${name}`);
    const key = matchingKeyByTag(tag);
    if (!key) {
      const kw = lookupTag(tag)?.keyword ?? tag;
      throw new PorticoError('BAD_REQUEST', `${kw} (${tag}) is not a supported matching key; supported keys are listed in services/dicomweb/README.md`);
    }
    const value = single(name, raw) ?? '';
    if (keys.some((k) => k.tag === tag)) throw new PorticoError('BAD_REQUEST', `matching key ${key.keyword} is given more than once`);
    keys.push({ tag, value });
    includeTags.add(tag);
  }

  const lower = (n: string): string | string[] | undefined => {
    for (const [k, v] of Object.entries(query)) if (k.toLowerCase() === n) return v;
    return undefined;
  };

  const includes = lower('includefield');
  for (const item of (Array.isArray(includes) ? includes : includes === undefined ? [] : [includes]).flatMap((s) => s.split(','))) {
    const id = item.trim();
    if (id === '') continue;
    if (id.toLowerCase() === 'all') {
      includeAll = true;
      continue;
    }
    const top = id.split('.')[0]!;
    const tag = resolveAttribute(top);
    if (!tag) throw new PorticoError('BAD_REQUEST', `includefield: unknown attribute ${id}`);
    includeTags.add(tag);
  }

  const fuzzyRaw = single('fuzzymatching', lower('fuzzymatching'));
  if (fuzzyRaw !== undefined && fuzzyRaw !== 'true' && fuzzyRaw !== 'false' && fuzzyRaw !== '') {
    throw new PorticoError('BAD_REQUEST', 'fuzzymatching must be true or false');
  }
  const asked = nonNegativeInt('limit', single('limit', lower('limit')));
  const offset = nonNegativeInt('offset', single('offset', lower('offset'))) ?? 0;
  let limit = asked === undefined || asked === 0 ? limits.defaultLimit : asked;
  const limitCapped = limit > limits.maxLimit;
  if (limitCapped) limit = limits.maxLimit;

  return { keys, includeAll, includeTags: [...includeTags], limit, offset, fuzzy: fuzzyRaw === 'true', limitCapped };
}
