/**
 * The instances a C-MOVE or C-GET retrieves (PS3.4 §C.4.2.2.1, §C.4.3.2.1): selected by the unique keys
 * of the retrieve level and the levels above it — PatientID (Patient Root), Study, Series and SOP
 * Instance UIDs, each a single value or a list. Keys and object locations only, never attribute values.
 */
import type { Queryable } from '../pool.ts';

export interface RetrieveKeys {
  readonly patientId?: string;
  readonly studyInstanceUids?: readonly string[];
  readonly seriesInstanceUids?: readonly string[];
  readonly sopInstanceUids?: readonly string[];
}

export interface RetrieveItem {
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  readonly objectKey: string;
  readonly objectSize: number;
}

/** Refuses an empty selection (which would be "everything") by returning no rows. */
export async function findRetrieveSet(db: Queryable, keys: RetrieveKeys): Promise<RetrieveItem[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown): void => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (keys.patientId !== undefined) add('st.patient_id = ?', keys.patientId);
  if (keys.studyInstanceUids?.length) add('st.study_instance_uid = ANY(?::text[])', keys.studyInstanceUids);
  if (keys.seriesInstanceUids?.length) add('se.series_instance_uid = ANY(?::text[])', keys.seriesInstanceUids);
  if (keys.sopInstanceUids?.length) add('i.sop_instance_uid = ANY(?::text[])', keys.sopInstanceUids);
  if (where.length === 0) return [];
  const { rows } = await db.query<{ sop_instance_uid: string; sop_class_uid: string; transfer_syntax_uid: string; object_key: string; object_size: string }>(
    `SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.object_key, i.object_size
       FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
      WHERE ${where.join(' AND ')}
      ORDER BY st.study_pk, se.series_pk, i.instance_pk`,
    params,
  );
  return rows.map((r) => ({
    sopInstanceUid: r.sop_instance_uid,
    sopClassUid: r.sop_class_uid,
    transferSyntaxUid: r.transfer_syntax_uid,
    objectKey: r.object_key,
    objectSize: Number(r.object_size),
  }));
}
