/**
 * Instance repository: the idempotent upsert the ingest job runs, and lookups.
 *
 * Re-sending an instance replaces it. Two ingest jobs for one SOP Instance UID can run at once (the
 * sender re-sent while the first was queued), so {@link upsertInstance} serialises per SOP Instance UID
 * with a transaction advisory lock and lets the most recently *received* copy win: a job whose copy is
 * older than the indexed one does nothing.
 */
import type { Db, Queryable } from './pool.ts';
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
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`instance.${rec.sopInstanceUid}`]);
      const existing = await tx.query<{ received_at: Date; series_pk: string; study_pk: string; object_key: string }>(
        'SELECT received_at, series_pk, study_pk, object_key FROM instance WHERE sop_instance_uid = $1',
        [rec.sopInstanceUid],
      );
      const prev = existing.rows[0];
      if (prev && prev.received_at.getTime() > rec.receivedAt.getTime()) return { outcome: 'stale' };
      if (apply) await apply();

      const a = rec.attrs;
      // One statement for study, series, instance and audit event: on this path every round trip to the
      // database costs CPU on both sides, and ingest runs once per instance.
      const res = await tx.query<{ series_pk: string; study_pk: string }>(
        `WITH st AS (
         INSERT INTO study (study_instance_uid, patient_name, patient_name_norm, patient_id, issuer_of_patient_id,
           patient_birth_date, patient_sex, study_date, study_time, accession_number, study_id, study_description,
           referring_physician_name, referring_physician_name_norm, json)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
         ON CONFLICT ON CONSTRAINT study_study_instance_uid_key DO UPDATE SET
           patient_name = EXCLUDED.patient_name, patient_name_norm = EXCLUDED.patient_name_norm,
           patient_id = EXCLUDED.patient_id, issuer_of_patient_id = EXCLUDED.issuer_of_patient_id,
           patient_birth_date = EXCLUDED.patient_birth_date, patient_sex = EXCLUDED.patient_sex,
           study_date = EXCLUDED.study_date, study_time = EXCLUDED.study_time,
           accession_number = EXCLUDED.accession_number, study_id = EXCLUDED.study_id,
           study_description = EXCLUDED.study_description, referring_physician_name = EXCLUDED.referring_physician_name,
           referring_physician_name_norm = EXCLUDED.referring_physician_name_norm, json = EXCLUDED.json, updated_at = now()
         RETURNING study_pk
       ), se AS (
         INSERT INTO series (series_instance_uid, study_pk, modality, series_number, series_description,
           performed_procedure_step_start_date, json)
         SELECT $16, st.study_pk, $17, $18, $19, $20, $21 FROM st
         ON CONFLICT ON CONSTRAINT series_series_instance_uid_key DO UPDATE SET
           study_pk = EXCLUDED.study_pk, modality = EXCLUDED.modality, series_number = EXCLUDED.series_number,
           series_description = EXCLUDED.series_description,
           performed_procedure_step_start_date = EXCLUDED.performed_procedure_step_start_date,
           json = EXCLUDED.json, updated_at = now()
         RETURNING series_pk, study_pk
       ), ins AS (
         INSERT INTO instance (sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number, number_of_frames,
           rows, columns, transfer_syntax_uid, object_key, object_size, json, frames, bulk_data, pixel_data_encapsulated,
           source, calling_ae_title, called_ae_title, received_at)
         SELECT $22, se.series_pk, se.study_pk, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38 FROM se
         ON CONFLICT ON CONSTRAINT instance_sop_instance_uid_key DO UPDATE SET
           series_pk = EXCLUDED.series_pk, study_pk = EXCLUDED.study_pk, sop_class_uid = EXCLUDED.sop_class_uid,
           instance_number = EXCLUDED.instance_number, number_of_frames = EXCLUDED.number_of_frames,
           rows = EXCLUDED.rows, columns = EXCLUDED.columns, transfer_syntax_uid = EXCLUDED.transfer_syntax_uid,
           object_key = EXCLUDED.object_key, object_size = EXCLUDED.object_size, json = EXCLUDED.json,
           frames = EXCLUDED.frames, bulk_data = EXCLUDED.bulk_data,
           pixel_data_encapsulated = EXCLUDED.pixel_data_encapsulated, source = EXCLUDED.source,
           calling_ae_title = EXCLUDED.calling_ae_title, called_ae_title = EXCLUDED.called_ae_title,
           received_at = EXCLUDED.received_at, updated_at = now()
         RETURNING series_pk, study_pk
       ), ev AS (
         INSERT INTO event (kind, sop_instance_uid, study_instance_uid, detail) VALUES ('stored', $22, $1, $39)
       )
       SELECT series_pk, study_pk FROM ins`,
        [
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
        ],
      );
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
