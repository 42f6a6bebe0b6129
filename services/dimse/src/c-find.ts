/**
 * C-FIND SCP, Patient Root and Study Root Query/Retrieve information models (PS3.4 Annex C).
 *
 * Answers from the index QIDO-RS uses (@portico/db buildQidoQuery): keys the index has columns for are
 * matched in SQL; any other key with a value (including sequence matching) is matched against the
 * stored DICOM JSON of each candidate (find-match.ts). Results stream in pages of {@link PAGE} rows
 * (keyset paging on the primary key), one pending response each, so no result set is ever held whole;
 * the socket's write buffer paces the paging. A C-CANCEL ends the stream with status Cancel (0xFE00).
 *
 * Relational queries are allowed: the unique keys of the levels above the query level may be absent
 * (the search then spans all of them), as Orthanc and dcm4chee do.
 *
 * Statuses (PS3.4 Table C.4-1): 0xFF00 pending per match, 0x0000 when done, 0xFE00 cancelled,
 * 0xA900 identifier does not match SOP class (bad level, key below the level, malformed value),
 * 0xA700 out of resources (index unreachable), 0xC001 unable to process.
 */
import {
  buildPatientQuery,
  buildQidoQuery,
  withoutComputedAttributes,
  type Db,
  type MatchingKeyValue,
  type QidoInstanceRow,
  type QidoSeriesRow,
  type QidoStudyRow,
  type PatientRow,
} from '@portico/db';
import { PorticoError } from '@portico/errors';
import { computedFor, planFind, responseIdentifier, matchElement, TAGS, type FindPlan, type JsonDataset, type JsonElement } from './find-match.ts';

export const PATIENT_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.1.1';
export const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';

/** Rows fetched per query round trip. */
const PAGE = 200;
/** Matches sent between two turns of the event loop, so a C-CANCEL PDU is read while results stream. */
const YIELD_EVERY = 8;

export type FindOutcome =
  { readonly status: 0x0000 | 0xfe00; readonly matches: number } | { readonly status: number; readonly matches: number; readonly errorComment: string };

export interface FindRun {
  readonly db: Db;
  readonly aeTitle: string;
  /** Sends one pending response; resolves when the caller may send the next (back-pressure). */
  readonly onMatch: (identifier: JsonDataset) => Promise<void>;
  readonly cancelled: () => boolean;
}

const LEVEL_TEXT = { patient: 'PATIENT', study: 'STUDY', series: 'SERIES', instance: 'IMAGE' } as const;

function num(n: number): JsonElement {
  return { vr: 'IS', Value: [n] };
}

/** Runs one C-FIND; never rejects. */
export async function runFind(run: FindRun, model: 'patient' | 'study', identifier: JsonDataset): Promise<FindOutcome> {
  let plan: FindPlan;
  try {
    plan = planFind(identifier, model);
  } catch (err) {
    return { status: 0xa900, matches: 0, errorComment: (err as Error).message.slice(0, 64) };
  }
  let matches = 0;
  const emit = async (json: JsonDataset, computed: Record<string, JsonElement>): Promise<void> => {
    if (!plan.filters.every((f) => matchElement(json[f.tag], f.key))) return;
    matches++;
    if (matches % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
    await run.onMatch(responseIdentifier(plan, { json, computed }, LEVEL_TEXT[plan.level], run.aeTitle));
  };
  try {
    if (plan.level === 'patient') {
      for (let offset = 0; ; offset += PAGE) {
        const q = buildPatientQuery({ keys: plan.indexed, limit: PAGE, offset });
        const { rows } = await run.db.query<PatientRow>(q.sql, q.params);
        for (const r of rows) {
          if (run.cancelled()) return { status: 0xfe00, matches };
          await emit(r.json as JsonDataset, {
            [TAGS.NumberOfPatientRelatedStudies]: num(r.number_of_studies),
            [TAGS.NumberOfPatientRelatedSeries]: num(r.number_of_series),
            [TAGS.NumberOfPatientRelatedInstances]: num(r.number_of_instances),
          });
        }
        if (rows.length < PAGE) break;
      }
      return { status: 0x0000, matches };
    }
    const level = plan.level;
    // Instance level selects only the tags it needs from the (possibly large) instance json.
    const instanceTags = [...new Set([...plan.returnTags, ...plan.filters.map((f) => f.tag)])];
    // Related-entity counts and modalities are computed per row only when the identifier asks for one:
    // counting a 500-instance study's instances was most of a study-level query's time.
    const computed = computedFor(level).some((tag) => plan.returnTags.includes(tag));
    for (let after: string | undefined; ;) {
      const built = buildQidoQuery({ level, keys: plan.indexed as MatchingKeyValue[], limit: PAGE, offset: 0, after, instanceTags });
      const q = computed ? built : withoutComputedAttributes(built);
      // A named prepared statement: each pooled connection parses the text once (its values are parameters).
      const { rows } = await run.db.queryPrepared(q.sql, q.params);
      for (const row of rows) {
        if (run.cancelled()) return { status: 0xfe00, matches };
        if (level === 'study') {
          const r = row as QidoStudyRow;
          after = r.study_pk;
          await emit(r.json as JsonDataset, {
            [TAGS.NumberOfStudyRelatedSeries]: num(r.number_of_series),
            [TAGS.NumberOfStudyRelatedInstances]: num(r.number_of_instances),
            [TAGS.ModalitiesInStudy]: { vr: 'CS', Value: r.modalities },
          });
        } else if (level === 'series') {
          const r = row as QidoSeriesRow;
          after = r.series_pk;
          await emit({ ...(r.study_json as JsonDataset), ...(r.json as JsonDataset) }, { [TAGS.NumberOfSeriesRelatedInstances]: num(r.number_of_instances) });
        } else {
          const r = row as QidoInstanceRow;
          after = r.instance_pk;
          await emit({ ...(r.study_json as JsonDataset), ...(r.series_json as JsonDataset), ...(r.json as JsonDataset) }, {});
        }
      }
      if (rows.length < PAGE) break;
    }
    return { status: 0x0000, matches };
  } catch (err) {
    if (err instanceof PorticoError && err.code === 'BAD_REQUEST') return { status: 0xa900, matches, errorComment: err.message.slice(0, 64) };
    const unreachable = /ECONNREFUSED|ECONNRESET|timeout|terminat|Connection/i.test((err as Error).message);
    return { status: unreachable ? 0xa700 : 0xc001, matches, errorComment: (unreachable ? 'index unavailable' : 'unable to process').slice(0, 64) };
  }
}
