/**
 * QIDO-RS and C-FIND → SQL. Pure: a level, matching keys by tag and the scope UIDs in; one
 * parameterised SELECT out. Every value travels as a bind parameter; only fixed column names and
 * operators are spliced into the text.
 *
 * Matching (PS3.4 §C.2.2.2, PS3.18 §8.3.4):
 * - universal: an empty value, or `*` for keys that take wildcards, adds no condition;
 * - single value: `=`; Person Names compare normalised (upper case, accents stripped) so they are
 *   case-insensitive, and a name matches when its trailing empty components or further component groups
 *   (`=ideographic=phonetic`) are the only difference;
 * - wildcard: `*` → any run, `?` → one character, via LIKE with `%`, `_` and `\` escaped;
 * - UID list: `,` or `\` separated → `= ANY(…)`;
 * - range: `a-b`, `-b`, `a-` on DA/TM, compared as text (DICOM date and time strings order correctly);
 *   an open range never matches an empty value. StudyDate and StudyTime are matched independently (no
 *   combined date-time range matching);
 * - fuzzy (`fuzzymatching=true`): Person Name words match word prefixes of the stored name, in any
 *   component (`joh` matches `Doe^John`).
 *
 * The queries ride on the indexes of migration 0001: unique UIDs, `*_norm text_pattern_ops` (exact and
 * prefix PN), patient_id, (study_date, study_time), accession_number, series(study_pk), series(modality),
 * instance(series_pk, instance_pk), instance(study_pk); results are ordered by primary key.
 */
import { PorticoError } from '@portico/errors';
import { normalizePersonName } from '../normalize.ts';
import { LEVEL_DEPTH, matchingKeyByTag, type Level, type MatchingKey } from './attributes.ts';
import { isValidUid } from '@portico/dicom';

export interface MatchingKeyValue {
  /** 8 hex digits. */
  readonly tag: string;
  readonly value: string;
}

export interface QidoQuery {
  readonly level: Level;
  readonly keys: readonly MatchingKeyValue[];
  readonly scope?: { readonly studyInstanceUid?: string; readonly seriesInstanceUid?: string };
  readonly fuzzy?: boolean;
  readonly limit: number;
  readonly offset: number;
  /** Keyset paging (C-FIND streams in pages): only rows whose primary key is greater than this. */
  readonly after?: string;
  /**
   * Instance level only: which top-level tags of `instance.json` to return (`'all'`: the whole data set).
   * Default: none. Selecting a subset in SQL keeps large data sets (RT structures, SR) off the wire.
   */
  readonly instanceTags?: readonly string[] | 'all';
}

export interface SqlQuery {
  readonly sql: string;
  readonly params: unknown[];
}

/** Row shapes returned by {@link buildQidoQuery}, per level. */
export interface StudyRow {
  study_pk: string;
  study_instance_uid: string;
  json: Record<string, unknown>;
  number_of_series: number;
  number_of_instances: number;
  modalities: string[];
}
export interface SeriesRow {
  series_pk: string;
  series_instance_uid: string;
  json: Record<string, unknown>;
  study_instance_uid: string;
  study_json: Record<string, unknown>;
  number_of_instances: number;
}
export interface InstanceRow {
  instance_pk: string;
  sop_instance_uid: string;
  sop_class_uid: string;
  number_of_frames: number;
  json: Record<string, unknown>;
  series_instance_uid: string;
  series_json: Record<string, unknown>;
  study_instance_uid: string;
  study_json: Record<string, unknown>;
}

const DATE_RE = /^\d{8}$/;
const TIME_RE = /^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$/;
const INTEGER_RE = /^[+-]?\d{1,10}$/;

/** Builds the parameterised SQL for one QIDO-RS query. @throws PorticoError BAD_REQUEST naming the key */
export function buildQidoQuery(q: QidoQuery): SqlQuery {
  const params: unknown[] = [];
  const p = (v: unknown): string => {
    params.push(v);
    return `$${params.length}`;
  };
  const where: string[] = [];
  // Instance level: the json subset is selected by a bind parameter that comes first in the text.
  const instanceTags = q.instanceTags ?? [];
  const instanceJson =
    q.level !== 'instance' || instanceTags === 'all'
      ? 'i.json'
      : `COALESCE((SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(i.json) e WHERE e.key = ANY(${p(instanceTags)}::text[])), '{}'::jsonb)`;

  if (q.scope?.studyInstanceUid !== undefined) where.push(`st.study_instance_uid = ${p(q.scope.studyInstanceUid)}`);
  if (q.scope?.seriesInstanceUid !== undefined) {
    if (q.level === 'study') throw new Error('series scope on a study-level query');
    where.push(`se.series_instance_uid = ${p(q.scope.seriesInstanceUid)}`);
  }

  for (const { tag, value } of q.keys) {
    const key = matchingKeyByTag(tag);
    if (!key) throw new PorticoError('BAD_REQUEST', `${tag} is not a supported matching key`);
    if (LEVEL_DEPTH[key.level] > LEVEL_DEPTH[q.level]) {
      throw new PorticoError(
        'BAD_REQUEST',
        `${key.keyword} is a ${key.level}-level attribute: it cannot be matched in a ${q.level}-level query${key.keyword === 'Modality' ? ' (use ModalitiesInStudy)' : ''}`,
      );
    }
    const cond = condition(key, value, q.fuzzy === true, p);
    if (cond) where.push(cond);
  }

  if (q.after !== undefined) {
    if (!/^\d{1,19}$/.test(q.after)) throw new Error(`keyset position ${q.after} is not a primary key`);
    where.push(`${PK[q.level]} > ${p(q.after)}::bigint`);
  }

  if (!Number.isInteger(q.limit) || q.limit < 0 || !Number.isInteger(q.offset) || q.offset < 0) {
    throw new PorticoError('BAD_REQUEST', 'limit and offset must be non-negative integers');
  }
  const whereSql = where.length > 0 ? `\nWHERE ${where.join('\n  AND ')}` : '';
  const page = `\nLIMIT ${p(q.limit)} OFFSET ${p(q.offset)}`;

  const shape = LEVEL_SQL[q.level];
  if (q.offset === 0) {
    // Plain form: PostgreSQL evaluates the select list's subqueries after the sort and limit.
    return { sql: `SELECT ${shape.columns(instanceJson)}\nFROM ${shape.from}${whereSql}\nORDER BY ${PK[q.level]}${page}`, params };
  }
  // With an offset, the page is picked first, on primary keys only, and the select list (computed
  // attributes, the json subset) is evaluated for the rows kept. With LIMIT/OFFSET above the full select
  // list, PostgreSQL evaluated it for every skipped row too: study-level `offset=5000` ran the count and
  // modality subqueries 5,025 times (177-205 ms at 1M instances; 1 ms this way). The kept keys come back
  // as an array (`= ANY (ARRAY(…))`), which the planner answers with primary-key index scans; a join with
  // the page as a subquery was planned as a hash join over a sequential scan of the table at series level.
  // Without an offset the plain form is kept: there is nothing to skip (and C-FIND, which pages by key,
  // never by offset, runs the same SQL as before).
  // The page is known here, so the study's series aggregate can be a lateral join: it runs for the kept
  // rows only (in the plain form, a join would run before the sort, for every matching row).
  const pk = PK[q.level];
  const paged = shape.paged ?? shape;
  return {
    sql: `SELECT ${paged.columns(instanceJson)}\nFROM ${shape.from}${paged.joins ?? ''}\nWHERE ${pk} = ANY (ARRAY(SELECT ${pk} FROM ${shape.from}${whereSql}\nORDER BY ${pk}${page}))\nORDER BY ${pk}`,
    params,
  };
}

/** A study's series count and distinct non-empty modalities, in order (ModalitiesInStudy). */
const SERIES_AGGREGATE =
  "CROSS JOIN LATERAL (SELECT count(*)::int AS number_of_series, COALESCE(array_agg(DISTINCT x.modality ORDER BY x.modality) FILTER (WHERE x.modality <> ''), '{}') AS modalities FROM series x WHERE x.study_pk = st.study_pk) sx";

interface Columns {
  /** The select list, given the instance json expression. */
  readonly columns: (instanceJson: string) => string;
  /** Joins the select list needs. */
  readonly joins?: string;
}

/**
 * Per level: the select list and the FROM; `paged`, a select list for the form that picks the page of
 * keys first. There a study's series count and its modalities come from one pass over its series (a
 * lateral aggregate): as two subqueries they read the series twice per row, ~40 % of PostgreSQL's CPU
 * time for a 26-study page (pgbench, 0.89-0.97 -> 0.48-0.62 ms per query).
 */
const LEVEL_SQL: Readonly<Record<Level, Columns & { from: string; paged?: Columns }>> = {
  study: {
    columns: () => `st.study_pk, st.study_instance_uid, st.json,
  (SELECT count(*) FROM series x WHERE x.study_pk = st.study_pk)::int AS number_of_series,
  (SELECT count(*) FROM instance y WHERE y.study_pk = st.study_pk)::int AS number_of_instances,
  ARRAY(SELECT DISTINCT x.modality FROM series x WHERE x.study_pk = st.study_pk AND x.modality <> '' ORDER BY 1) AS modalities`,
    from: 'study st',
    paged: {
      columns: () => `st.study_pk, st.study_instance_uid, st.json,
  sx.number_of_series,
  (SELECT count(*) FROM instance y WHERE y.study_pk = st.study_pk)::int AS number_of_instances,
  sx.modalities`,
      joins: `\n${SERIES_AGGREGATE}`,
    },
  },
  series: {
    columns: () => `se.series_pk, se.series_instance_uid, se.json, st.study_instance_uid, st.json AS study_json,
  (SELECT count(*) FROM instance y WHERE y.series_pk = se.series_pk)::int AS number_of_instances`,
    from: 'series se JOIN study st ON st.study_pk = se.study_pk',
  },
  instance: {
    columns: (instanceJson) => `i.instance_pk, i.sop_instance_uid, i.sop_class_uid, i.number_of_frames, ${instanceJson} AS json,
  se.series_instance_uid, se.json AS series_json, st.study_instance_uid, st.json AS study_json`,
    from: 'instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk',
  },
};

const PK: Readonly<Record<Level, string>> = { study: 'st.study_pk', series: 'se.series_pk', instance: 'i.instance_pk' };

/** Patient attributes: the study-level keys a PATIENT-level C-FIND (Patient Root) may match on. */
export const PATIENT_KEY_TAGS: ReadonlySet<string> = new Set(['00100010', '00100020', '00100021', '00100030', '00100040']);

/** One row per patient (PatientID + IssuerOfPatientID) of {@link buildPatientQuery}. */
export interface PatientRow {
  patient_id: string;
  issuer_of_patient_id: string;
  /** Study json of the patient's most recently indexed study (patient attributes live there). */
  json: Record<string, unknown>;
  number_of_studies: number;
  number_of_series: number;
  number_of_instances: number;
}

/**
 * PATIENT level (C-FIND Patient Root): patients are not a table of their own; studies are grouped by
 * PatientID and IssuerOfPatientID, with the patient attributes of the latest study and the PS3.4
 * C.3.1 computed counts. Matching keys must be patient attributes ({@link PATIENT_KEY_TAGS}).
 */
export function buildPatientQuery(q: { keys: readonly MatchingKeyValue[]; fuzzy?: boolean; limit: number; offset: number }): SqlQuery {
  const params: unknown[] = [];
  const p = (v: unknown): string => {
    params.push(v);
    return `$${params.length}`;
  };
  const where: string[] = [];
  for (const { tag, value } of q.keys) {
    const key = matchingKeyByTag(tag);
    if (!key || !PATIENT_KEY_TAGS.has(key.tag)) throw new PorticoError('BAD_REQUEST', `${tag} is not a patient-level matching key`);
    const cond = condition(key, value, q.fuzzy === true, p);
    if (cond) where.push(cond);
  }
  const whereSql = where.length > 0 ? `\n  WHERE ${where.join('\n    AND ')}` : '';
  return {
    sql: `SELECT s.patient_id, s.issuer_of_patient_id,
  (array_agg(s.json ORDER BY s.study_pk DESC))[1] AS json,
  count(*)::int AS number_of_studies, sum(s.number_of_series)::int AS number_of_series, sum(s.number_of_instances)::int AS number_of_instances
FROM (SELECT st.study_pk, st.patient_id, st.issuer_of_patient_id, st.json,
    (SELECT count(*) FROM series x WHERE x.study_pk = st.study_pk) AS number_of_series,
    (SELECT count(*) FROM instance y WHERE y.study_pk = st.study_pk) AS number_of_instances
  FROM study st${whereSql}) s
GROUP BY s.patient_id, s.issuer_of_patient_id
ORDER BY s.patient_id, s.issuer_of_patient_id
LIMIT ${p(q.limit)} OFFSET ${p(q.offset)}`,
    params,
  };
}

type Bind = (v: unknown) => string;

function condition(key: MatchingKey, rawValue: string, fuzzy: boolean, p: Bind): string | null {
  const value = rawValue.trim();
  if (value === '') return null; // universal matching (PS3.4 §C.2.2.2.3)
  switch (key.kind) {
    case 'pn':
      return personName(key, value, fuzzy, p);
    case 'text':
      return text(key.column!, value, p);
    case 'codes': {
      if (value === '*') return null;
      const values = value
        .split(/[,\\]/)
        .map((v) => v.trim())
        .filter((v) => v !== '');
      if (values.some(hasWildcard)) {
        if (values.length > 1) throw new PorticoError('BAD_REQUEST', `${key.keyword}: wildcards cannot be combined with a value list`);
        const like = `LIKE ${p(wildcardToLike(values[0]!))}`;
        return key.column ? `${key.column} ${like}` : `EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.study_pk AND x.modality ${like})`;
      }
      const cmp = values.length === 1 ? `= ${p(values[0])}` : `= ANY(${p(values)}::text[])`;
      return key.column ? `${key.column} ${cmp}` : `EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.study_pk AND x.modality ${cmp})`;
    }
    case 'uid': {
      const uids = value
        .split(/[,\\]/)
        .map((v) => v.trim())
        .filter((v) => v !== '');
      for (const u of uids) {
        if (!isValidUid(u))
          throw new PorticoError('BAD_REQUEST', `${key.keyword}: "${u.slice(0, 70)}" is not a UID (UID list matching takes UIDs separated by "," or "\\")`);
      }
      if (uids.length === 0) return null;
      return uids.length === 1 ? `${key.column} = ${p(uids[0])}` : `${key.column} = ANY(${p(uids)}::text[])`;
    }
    case 'date':
    case 'time':
      return range(key, value, p);
    case 'integer': {
      if (!INTEGER_RE.test(value)) throw new PorticoError('BAD_REQUEST', `${key.keyword}: "${value.slice(0, 20)}" is not an integer`);
      return `btrim(${key.column}) = ${p(String(Number.parseInt(value, 10)))}`;
    }
  }
}

function hasWildcard(v: string): boolean {
  return v.includes('*') || v.includes('?');
}

/** DICOM wildcard → LIKE pattern: escape the LIKE metacharacters, then `*` → `%`, `?` → `_`. */
export function wildcardToLike(v: string): string {
  return v
    .replace(/[\\%_]/g, (c) => `\\${c}`)
    .replace(/\*/g, '%')
    .replace(/\?/g, '_');
}

function escapeLike(v: string): string {
  return v.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function escapeRegex(v: string): string {
  return v.replace(/[\\^$.*+?()[\]{}|]/g, (c) => `\\${c}`);
}

function text(column: string, value: string, p: Bind): string | null {
  if (value === '*') return null;
  if (hasWildcard(value)) return `${column} LIKE ${p(wildcardToLike(value))}`;
  return `${column} = ${p(value)}`;
}

function personName(key: MatchingKey, value: string, fuzzy: boolean, p: Bind): string | null {
  const column = key.column!;
  const norm = normalizePersonName(value);
  if (/^\*+$/.test(norm)) return null;
  if (hasWildcard(norm)) return `${column} LIKE ${p(wildcardToLike(norm))}`;
  if (fuzzy) {
    const words = norm.split(/[\s^=,]+/).filter((w) => w !== '');
    if (words.length === 0) return null;
    return words.map((w) => `${column} ~ ${p(`(^|[\\s^=])${escapeRegex(w)}`)}`).join(' AND ');
  }
  // Exact, ignoring trailing empty components and further component groups. The LIKE prefix makes the
  // text_pattern_ops index usable; the regex then checks where the name ends.
  const base = norm.replace(/[\^ ]+$/, '');
  return `(${column} LIKE ${p(`${escapeLike(base)}%`)} AND ${column} ~ ${p(`^${escapeRegex(base)}[\\^ ]*(=|$)`)})`;
}

function range(key: MatchingKey, value: string, p: Bind): string {
  const isDate = key.kind === 'date';
  const clean = (v: string): string => (isDate ? v.replace(/\./g, '') : v.replace(/:/g, '')).trim();
  const valid = (v: string): boolean => (isDate ? DATE_RE.test(v) : TIME_RE.test(v));
  const bad = (): PorticoError =>
    new PorticoError(
      'BAD_REQUEST',
      `${key.keyword}: "${value.slice(0, 40)}" is not a ${isDate ? 'date (YYYYMMDD)' : 'time (HHMMSS.FFFFFF)'} or a range of them (a-b, -b, a-)`,
    );
  const column = key.column!;
  const parts = value.split('-');
  if (parts.length > 2) throw bad();
  // Upper bounds include every value they prefix: "1015" covers 10:15:59.999999 ("~" sorts after digits and ".").
  const upper = (v: string): string => (isDate ? `${column} <= ${p(v)}` : `${column} < ${p(`${v}~`)}`);
  if (parts.length === 1) {
    const v = clean(parts[0]!);
    if (!valid(v)) throw bad();
    return isDate ? `${column} = ${p(v)}` : `(${column} >= ${p(v)} AND ${upper(v)})`;
  }
  const a = clean(parts[0]!);
  const b = clean(parts[1]!);
  if ((a !== '' && !valid(a)) || (b !== '' && !valid(b)) || (a === '' && b === '')) throw bad();
  const conds: string[] = [];
  if (a !== '') conds.push(`${column} >= ${p(a)}`);
  else conds.push(`${column} <> ''`);
  if (b !== '') conds.push(upper(b));
  return conds.length === 1 ? conds[0]! : `(${conds.join(' AND ')})`;
}

/**
 * The same query without the computed attributes of study and series rows (related series and
 * instance counts, modalities): 0 and an empty list in their place. For a caller that returns none of
 * them — a C-FIND that does not ask for NumberOfStudyRelatedInstances and the like, where counting a
 * study's instances was most of the query's cost. Matching on ModalitiesInStudy is unaffected (it is a
 * WHERE condition of its own).
 */
export function withoutComputedAttributes(query: SqlQuery): SqlQuery {
  const sql = query.sql
    .replace(/\(SELECT count\(\*\) FROM (?:series|instance) [a-z]+ WHERE [^)]*\)::int AS (number_of_\w+)/g, '0 AS $1')
    .replace(/ARRAY\(SELECT DISTINCT [a-z]+\.modality FROM series [a-z]+ WHERE [^)]*\) AS modalities/g, "'{}'::text[] AS modalities")
    .replace('sx.number_of_series', '0 AS number_of_series')
    .replace('sx.modalities', "'{}'::text[] AS modalities")
    .replace(`\n${SERIES_AGGREGATE}`, '');
  return { sql, params: query.params };
}
