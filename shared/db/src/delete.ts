/**
 * Removing instances from the index: a study, a series or one instance. One transaction deletes the
 * instance rows, then the series and study rows left without instances, and records the deletion in the
 * event table (UIDs and counts only). It returns the object keys, which the caller deletes from the
 * object store after the commit: a crash in between leaves unreferenced objects (garbage), never an
 * index row pointing at a missing object.
 */
import type { Db } from './pool.ts';

export interface DeleteScope {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid?: string;
  readonly sopInstanceUid?: string;
}

export async function deleteInstances(db: Db, scope: DeleteScope): Promise<{ instances: number; objectKeys: string[] }> {
  return db.transaction(async (client) => {
    const { rows } = await client.query<{ object_key: string; series_pk: string; study_pk: string }>(
      `DELETE FROM instance i
        USING series se, study st
        WHERE se.series_pk = i.series_pk AND st.study_pk = i.study_pk
          AND st.study_instance_uid = $1
          AND ($2::text IS NULL OR se.series_instance_uid = $2)
          AND ($3::text IS NULL OR i.sop_instance_uid = $3)
        RETURNING i.object_key, i.series_pk, i.study_pk`,
      [scope.studyInstanceUid, scope.seriesInstanceUid ?? null, scope.sopInstanceUid ?? null],
    );
    if (rows.length === 0) return { instances: 0, objectKeys: [] };
    const series = [...new Set(rows.map((r) => r.series_pk))];
    const studies = [...new Set(rows.map((r) => r.study_pk))];
    await client.query(
      'DELETE FROM series se WHERE se.series_pk = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM instance i WHERE i.series_pk = se.series_pk)',
      [series],
    );
    await client.query('DELETE FROM study st WHERE st.study_pk = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM series se WHERE se.study_pk = st.study_pk)', [
      studies,
    ]);
    await client.query('INSERT INTO event (kind, study_instance_uid, sop_instance_uid, detail) VALUES ($1, $2, $3, $4)', [
      'deleted',
      scope.studyInstanceUid,
      scope.sopInstanceUid ?? null,
      { seriesInstanceUid: scope.seriesInstanceUid, instances: rows.length },
    ]);
    return { instances: rows.length, objectKeys: rows.map((r) => r.object_key) };
  });
}
