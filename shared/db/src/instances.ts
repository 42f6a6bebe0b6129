/**
 * Instance repository: the idempotent upsert the ingest job runs, and lookups.
 *
 * Re-sending an instance replaces it. Two ingest jobs for one SOP Instance UID can run at once (the
 * sender re-sent while the first was queued), so {@link upsertInstance} serialises per SOP Instance UID
 * with a transaction advisory lock and lets the most recently *received* copy win: a job whose copy is
 * older than the indexed one does nothing.
 */
import type { Db, NamedStatement, Queryable } from './pool.ts';
import { normalizePersonName } from './normalize.ts';

export interface InstanceRecord {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  /** Flat index values by DICOM keyword ('' when absent). */
  readonly attrs: Readonly<Record<string, string>>;
  readonly studyJson: object;
  readonly seriesJson: object;
  readonly json: object;
  readonly frames: ReadonlyArray<ReadonlyArray<{ offset: number; length: number }>>;
  readonly bulkData: Readonly<Record<string, { offset: number; length: number } | undefined>>;
  readonly pixelDataEncapsulated: boolean;
  readonly objectKey: string;
  readonly objectSize: number;
  readonly source: 'dimse' | 'stow-rs' | 'import';
  readonly callingAeTitle?: string | undefined;
  readonly calledAeTitle?: string | undefined;
  readonly receivedAt: Date;
}

export interface StoredInstance {
  readonly instancePk: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  readonly objectKey: string;
  readonly objectSize: number;
  readonly numberOfFrames: number;
  readonly frames: Array<Array<{ offset: number; length: number }>>;
  readonly bulkData: Record<string, { offset: number; length: number } | undefined>;
  readonly pixelDataEncapsulated: boolean;
  readonly receivedAt: Date;
}

const STUDY_COLUMNS = [
  'patient_name',
  'patient_name_norm',
  'patient_id',
  'issuer_of_patient_id',
  'patient_birth_date',
  'patient_sex',
  'study_date',
  'study_time',
  'accession_number',
  'study_id',
  'study_description',
  'referring_physician_name',
  'referring_physician_name_norm',
  'json',
];
const SERIES_COLUMNS = ['study_pk', 'modality', 'series_number', 'series_description', 'performed_procedure_step_start_date', 'json'];
const INSTANCE_COLUMNS = [
  'series_pk',
  'study_pk',
  'sop_class_uid',
  'instance_number',
  'number_of_frames',
  'rows',
  'columns',
  'transfer_syntax_uid',
  'object_key',
  'object_size',
  'json',
  'frames',
  'bulk_data',
  'pixel_data_encapsulated',
  'source',
  'calling_ae_title',
  'called_ae_title',
  'received_at',
];
const set = (cols: readonly string[]): string => cols.map((c) => `${c} = EXCLUDED.${c}`).join(', ');
const changed = (table: string, cols: readonly string[]): string =>
  `(${cols.map((c) => `${table}.${c}`).join(', ')}) IS DISTINCT FROM (${cols.map((c) => `EXCLUDED.${c}`).join(', ')})`;

/** `(a, b) IS NOT DISTINCT FROM ($n, $n+1)`: the row already holds exactly these values. */
const same = (table: string, cols: readonly string[], firstParam: number, casts: Readonly<Record<string, string>> = {}): string =>
  `(${cols.map((c) => `${table}.${c}`).join(', ')}) IS NOT DISTINCT FROM (${cols.map((c, i) => `$${firstParam + i}${casts[c] ?? ''}`).join(', ')})`;
const params = (first: number, n: number, casts: Readonly<Record<number, string>> = {}): string =>
  Array.from({ length: n }, (_, i) => `$${first + i}${casts[first + i] ?? ''}`).join(', ');

/**
 * Study, series, instance and audit event in one statement: on this path every round trip to the database
 * costs CPU on both sides, and ingest runs once per instance.
 *
 * The study and series rows are written only when a value changed: every instance of a study carries the
 * same study attributes. An unchanged row is found by a plain read (`st_same`, `se_same`) and the INSERT
 * is not even attempted: INSERT … ON CONFLICT DO UPDATE locks the conflicting row even when its WHERE
 * rejects the update (a tuple lock, with its WAL record, held to commit), so concurrent ingest jobs of one
 * study queued behind each other on the study and series rows. The last `UNION ALL` branch reads a row
 * that changed under us and that the INSERT's WHERE left as it was (another job wrote the same values).
 */
const UPSERT: NamedStatement = {
  name: 'ingest_upsert',
  text: `WITH st_same AS (
   SELECT study_pk FROM study WHERE study_instance_uid = $1 AND ${same('study', STUDY_COLUMNS, 2, { json: '::jsonb' })}
 ), st_w AS (
   INSERT INTO study (study_instance_uid, ${STUDY_COLUMNS.join(', ')})
   SELECT ${params(1, 15, { 15: '::jsonb' })} WHERE NOT EXISTS (SELECT 1 FROM st_same)
   ON CONFLICT ON CONSTRAINT study_study_instance_uid_key DO UPDATE SET ${set(STUDY_COLUMNS)}, updated_at = now()
   WHERE ${changed('study', STUDY_COLUMNS)}
   RETURNING study_pk
 ), st AS (
   SELECT study_pk FROM st_same
   UNION ALL
   SELECT study_pk FROM st_w
   UNION ALL
   SELECT study_pk FROM study WHERE study_instance_uid = $1 AND NOT EXISTS (SELECT 1 FROM st_same) AND NOT EXISTS (SELECT 1 FROM st_w)
 ), se_same AS (
   SELECT s.series_pk, s.study_pk FROM series s JOIN st ON st.study_pk = s.study_pk
    WHERE s.series_instance_uid = $16 AND ${same('s', SERIES_COLUMNS.slice(1), 17, { json: '::jsonb' })}
 ), se_w AS (
   INSERT INTO series (series_instance_uid, ${SERIES_COLUMNS.join(', ')})
   SELECT $16, st.study_pk, ${params(17, 5, { 21: '::jsonb' })} FROM st WHERE NOT EXISTS (SELECT 1 FROM se_same)
   ON CONFLICT ON CONSTRAINT series_series_instance_uid_key DO UPDATE SET ${set(SERIES_COLUMNS)}, updated_at = now()
   WHERE ${changed('series', SERIES_COLUMNS)}
   RETURNING series_pk, study_pk
 ), se AS (
   SELECT series_pk, study_pk FROM se_same
   UNION ALL
   SELECT series_pk, study_pk FROM se_w
   UNION ALL
   SELECT s.series_pk, s.study_pk FROM series s JOIN st ON st.study_pk = s.study_pk
    WHERE s.series_instance_uid = $16 AND NOT EXISTS (SELECT 1 FROM se_same) AND NOT EXISTS (SELECT 1 FROM se_w)
 ), ins AS (
   INSERT INTO instance (sop_instance_uid, ${INSTANCE_COLUMNS.join(', ')})
   SELECT $22, se.series_pk, se.study_pk, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38 FROM se
   ON CONFLICT ON CONSTRAINT instance_sop_instance_uid_key DO UPDATE SET ${set(INSTANCE_COLUMNS)}, updated_at = now()
   RETURNING series_pk, study_pk
 ), ev AS (
   INSERT INTO event (kind, sop_instance_uid, study_instance_uid, detail) VALUES ('stored', $22, $1, $39)
 )
 SELECT series_pk, study_pk FROM ins`,
};
const LOCK_INSTANCE: NamedStatement = { name: 'ingest_lock', text: 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))' };
const EXISTING_INSTANCE: NamedStatement = {
  name: 'ingest_existing',
  text: 'SELECT received_at, series_pk, study_pk, object_key FROM instance WHERE sop_instance_uid = $1',
};

function toInt(v: string | undefined): number | null {
  if (v === undefined || v.trim() === '') return null;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) && n >= 0 && n <= 2 ** 31 - 1 ? n : null;
}

/**
 * Runs `apply` (e.g. moving the object to its final key) and the index upsert under the per-instance lock,
 * unless a copy received later is already indexed. Returns 'stale' in that case.
 */
export interface UpsertResult {
  readonly outcome: 'inserted' | 'replaced' | 'stale';
  /** The object the index pointed at before, when it differs from the new one (the caller deletes it). */
  readonly previousObjectKey?: string;
}

export async function upsertInstance(
  db: Db,
  rec: InstanceRecord,
  apply?: () => Promise<void>,
  /** More writes in the same transaction, after the upsert (routing's export rows): all or nothing. */
  within?: (tx: Queryable) => Promise<void>,
): Promise<UpsertResult> {
  return db.transaction(
    async (tx) => {
      await tx.query(LOCK_INSTANCE, [`instance.${rec.sopInstanceUid}`]);
      const existing = await tx.query<{ received_at: Date; series_pk: string; study_pk: string; object_key: string }>(EXISTING_INSTANCE, [rec.sopInstanceUid]);
      const prev = existing.rows[0];
      if (prev && prev.received_at.getTime() > rec.receivedAt.getTime()) return { outcome: 'stale' };
      if (apply) await apply();

      const a = rec.attrs;
      const params = [
        rec.studyInstanceUid,
        a['PatientName'] ?? '',
        normalizePersonName(a['PatientName'] ?? ''),
        a['PatientID'] ?? '',
        a['IssuerOfPatientID'] ?? '',
        a['PatientBirthDate'] ?? '',
        a['PatientSex'] ?? '',
        a['StudyDate'] ?? '',
        a['StudyTime'] ?? '',
        a['AccessionNumber'] ?? '',
        a['StudyID'] ?? '',
        a['StudyDescription'] ?? '',
        a['ReferringPhysicianName'] ?? '',
        normalizePersonName(a['ReferringPhysicianName'] ?? ''),
        JSON.stringify(rec.studyJson),
        rec.seriesInstanceUid,
        a['Modality'] ?? '',
        a['SeriesNumber'] ?? '',
        a['SeriesDescription'] ?? '',
        a['PerformedProcedureStepStartDate'] ?? '',
        JSON.stringify(rec.seriesJson),
        rec.sopInstanceUid,
        rec.sopClassUid,
        a['InstanceNumber'] ?? '',
        toInt(a['NumberOfFrames']) ?? 1,
        toInt(a['Rows']),
        toInt(a['Columns']),
        rec.transferSyntaxUid,
        rec.objectKey,
        rec.objectSize,
        JSON.stringify(rec.json),
        JSON.stringify(rec.frames.map((f) => f.map((r) => [r.offset, r.length]))),
        JSON.stringify(
          Object.fromEntries(
            Object.entries(rec.bulkData)
              .filter(([, v]) => v)
              .map(([k, v]) => [k, [v!.offset, v!.length]]),
          ),
        ),
        rec.pixelDataEncapsulated,
        rec.source,
        rec.callingAeTitle ?? null,
        rec.calledAeTitle ?? null,
        rec.receivedAt,
        JSON.stringify({ source: rec.source, callingAet: rec.callingAeTitle, replaced: !!prev }),
      ];
      let res = await tx.query<{ series_pk: string; study_pk: string }>(UPSERT, params);
      // No row: the study or series row was inserted by a transaction that committed while this statement
      // ran (two instances of a new study indexed at once), unchanged, so the statement neither updated it
      // nor could see it in its snapshot. Once more sees it: each statement takes a new snapshot.
      if (res.rows.length === 0) res = await tx.query<{ series_pk: string; study_pk: string }>(UPSERT, params);
      if (res.rows.length === 0) throw new Error('index upsert returned no row twice');
      const seriesPk = res.rows[0]!.series_pk;
      // A re-sent instance may have moved to another series or study: drop what it left empty.
      if (prev && prev.series_pk !== seriesPk) await dropIfEmpty(tx, prev.series_pk, prev.study_pk);
      if (within) await within(tx);
      return prev ? { outcome: 'replaced', ...(prev.object_key !== rec.objectKey ? { previousObjectKey: prev.object_key } : {}) } : { outcome: 'inserted' };
      // Losing this commit in a crash is recoverable: the ingest job that wrote it is marked done only later
      // in the WAL, so it runs again. Not waiting for the WAL flush halves the worker's fsyncs.
    },
    { asyncCommit: true },
  );
}

async function dropIfEmpty(tx: Queryable, seriesPk: string, studyPk: string): Promise<void> {
  await tx.query('DELETE FROM series s WHERE s.series_pk = $1 AND NOT EXISTS (SELECT 1 FROM instance i WHERE i.series_pk = s.series_pk)', [seriesPk]);
  await tx.query('DELETE FROM study s WHERE s.study_pk = $1 AND NOT EXISTS (SELECT 1 FROM series x WHERE x.study_pk = s.study_pk)', [studyPk]);
}

export interface InstanceRow {
  instance_pk: string;
  sop_instance_uid: string;
  series_instance_uid: string;
  study_instance_uid: string;
  sop_class_uid: string;
  transfer_syntax_uid: string;
  object_key: string;
  object_size: string;
  number_of_frames: number;
  frames: Array<Array<[number, number]>>;
  bulk_data: Record<string, [number, number]>;
  pixel_data_encapsulated: boolean;
  received_at: Date;
}

/** The stored copy of one instance (object key, frame ranges), or null. */
export async function findInstance(db: Queryable, sopInstanceUid: string): Promise<StoredInstance | null> {
  const res = await db.query<InstanceRow>(
    `SELECT i.instance_pk, i.sop_instance_uid, se.series_instance_uid, st.study_instance_uid, i.sop_class_uid,
            i.transfer_syntax_uid, i.object_key, i.object_size, i.number_of_frames, i.frames, i.bulk_data,
            i.pixel_data_encapsulated, i.received_at
       FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
      WHERE i.sop_instance_uid = $1`,
    [sopInstanceUid],
  );
  const r = res.rows[0];
  return r ? rowToStored(r) : null;
}

export function rowToStored(r: InstanceRow): StoredInstance {
  return {
    instancePk: r.instance_pk,
    sopInstanceUid: r.sop_instance_uid,
    seriesInstanceUid: r.series_instance_uid,
    studyInstanceUid: r.study_instance_uid,
    sopClassUid: r.sop_class_uid,
    transferSyntaxUid: r.transfer_syntax_uid,
    objectKey: r.object_key,
    objectSize: Number(r.object_size),
    numberOfFrames: r.number_of_frames,
    frames: r.frames.map((f) => f.map(([offset, length]) => ({ offset, length }))),
    bulkData: Object.fromEntries(Object.entries(r.bulk_data).map(([k, [offset, length]]) => [k, { offset, length }])),
    pixelDataEncapsulated: r.pixel_data_encapsulated,
    receivedAt: r.received_at,
  };
}

/** Audit trail entry. `detail` must hold no patient attributes. */
export async function recordEvent(
  db: Queryable,
  kind: string,
  ids: { sopInstanceUid?: string; studyInstanceUid?: string },
  detail: object = {},
): Promise<void> {
  await db.query('INSERT INTO event (kind, sop_instance_uid, study_instance_uid, detail) VALUES ($1, $2, $3, $4)', [
    kind,
    ids.sopInstanceUid ?? null,
    ids.studyInstanceUid ?? null,
    JSON.stringify(detail),
  ]);
}
