/**
 * ingest-instance: turns a staged object into an indexed instance at its final key.
 *
 * Idempotent and crash-safe at every step, because BullMQ may run it again after a crash:
 * 1. Parse the header of the staged object (streaming; pixel data skipped, frame ranges recorded).
 * 2. Under the per-instance lock (see upsertInstance), in one database transaction: move the object to
 *    `studies/<study>/series/<series>/instances/<sop>.dcm` and upsert the study/series/instance rows.
 *    A copy received earlier than the indexed one is stale: it is dropped and changes nothing.
 * 3. A retry that finds the staging object gone while the final object exists (the move happened, the
 *    commit did not) parses the final object and indexes it. The receivers put the Study and Series
 *    Instance UIDs in the payload (UIDs only, never patient data) so the final key is known without the
 *    staging object.
 * A data set that cannot be parsed is not retried (UnrecoverableError); its object is moved to
 * `failed/<uuid>.dcm` for inspection and the failure is recorded in the event table.
 *
 * Instances without a Study or Series Instance UID (a Type 1 violation seen in real files) are kept,
 * not refused: they are indexed under a UID derived from their SOP Instance UID (2.25 form, PS3.5 §B.2),
 * the same on every re-send, and the metadata shows the derived value.
 */
import { parseInstance, indexAttributes, hierarchyUids, isValidUid, DicomParseError, type ParsedInstance } from '@portico/dicom';

export { derivedUid, hierarchyUids } from '@portico/dicom';
import { upsertInstance, recordEvent, pickTags, STUDY_LEVEL_TAGS, SERIES_LEVEL_TAGS, type Db } from '@portico/db';
import { seekableObject, type ObjectStore } from '@portico/storage';
import { UnrecoverableError, type IngestInstancePayload } from '@portico/jobs';
import type { Logger } from '@portico/logging';

export interface IngestDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly log: Logger;
}

export function instanceKey(studyUid: string, seriesUid: string, sopUid: string): string {
  return `studies/${studyUid}/series/${seriesUid}/instances/${sopUid}.dcm`;
}

export type IngestOutcome = 'inserted' | 'replaced' | 'stale' | 'gone';

export async function ingestInstance(deps: IngestDeps, payload: IngestInstancePayload): Promise<IngestOutcome> {
  const { db, store } = deps;
  // Created only when something is logged: a pino child with redaction costs ~30 µs, per instance.
  let child: Logger | undefined;
  const log = (): Logger => (child ??= deps.log.child({ sopInstanceUid: payload.sopInstanceUid, stagingKey: payload.stagingKey }));
  const expected = hierarchyUids(payload.sopInstanceUid, payload.studyInstanceUid ?? '', payload.seriesInstanceUid ?? '');
  const expectedKey = payload.studyInstanceUid !== undefined ? instanceKey(expected.study, expected.series, payload.sopInstanceUid) : undefined;

  let sourceKey = payload.stagingKey;
  let stat = await store.stat(sourceKey);
  if (!stat && expectedKey) {
    // A previous attempt moved the object; whether it also committed, indexing again is harmless.
    sourceKey = expectedKey;
    stat = await store.stat(sourceKey);
  }
  if (!stat) {
    log().info('staged object gone and no final object: nothing to index');
    return 'gone';
  }

  let parsed: ParsedInstance;
  try {
    // Ranged reads: the parser seeks over pixel data, so only the header (and what follows the pixel
    // data) is fetched — "parse the header only", even from S3.
    parsed = await parseInstance(seekableObject(store, sourceKey, stat.size));
  } catch (err) {
    if (err instanceof DicomParseError) {
      // Kept for inspection under failed/, out of staging/ so the reconciler does not retry it forever.
      const failedKey = `failed/${sourceKey.replace(/^.*\//, '')}`;
      if (sourceKey === payload.stagingKey) await store.move(sourceKey, failedKey);
      await recordEvent(
        db,
        'ingest-failed',
        { sopInstanceUid: payload.sopInstanceUid || undefined },
        { stagingKey: payload.stagingKey, failedKey, reason: err.message },
      );
      throw new UnrecoverableError(`cannot parse ${sourceKey}: ${err.message}`);
    }
    throw err;
  }
  const uids = hierarchyUids(parsed.sopInstanceUid, parsed.studyInstanceUid, parsed.seriesInstanceUid);
  for (const [name, uid] of [
    ['StudyInstanceUID', uids.study],
    ['SeriesInstanceUID', uids.series],
    ['SOPInstanceUID', parsed.sopInstanceUid],
  ] as const) {
    // UIDs become object key segments: anything but a well-formed UID is refused rather than escaped.
    if (!isValidUid(uid)) {
      await recordEvent(db, 'ingest-failed', { sopInstanceUid: payload.sopInstanceUid }, { stagingKey: payload.stagingKey, reason: `invalid ${name}` });
      throw new UnrecoverableError(`invalid ${name} in ${sourceKey}`);
    }
  }
  const json = { ...(parsed.json as Record<string, unknown>) };
  if (uids.derived) {
    json['0020000D'] = { vr: 'UI', Value: [uids.study] };
    json['0020000E'] = { vr: 'UI', Value: [uids.series] };
    log().warn({ studyInstanceUid: uids.study, seriesInstanceUid: uids.series }, 'Study or Series Instance UID missing: indexed under derived UIDs');
  }
  const attrs = { ...indexAttributes(parsed), StudyInstanceUID: uids.study, SeriesInstanceUID: uids.series };
  const finalKey = instanceKey(uids.study, uids.series, parsed.sopInstanceUid);
  const result = await upsertInstance(
    db,
    {
      studyInstanceUid: uids.study,
      seriesInstanceUid: uids.series,
      sopInstanceUid: parsed.sopInstanceUid,
      sopClassUid: parsed.sopClassUid,
      transferSyntaxUid: parsed.transferSyntaxUid,
      attrs,
      studyJson: pickTags(json, STUDY_LEVEL_TAGS),
      seriesJson: pickTags(json, SERIES_LEVEL_TAGS),
      json,
      frames: parsed.pixelData?.frames ?? [],
      bulkData: parsed.bulkData,
      pixelDataEncapsulated: parsed.pixelData?.encapsulated ?? false,
      objectKey: finalKey,
      objectSize: stat.size,
      source: payload.source,
      callingAeTitle: payload.callingAeTitle,
      calledAeTitle: payload.calledAeTitle,
      receivedAt: new Date(payload.receivedAt),
    },
    sourceKey === finalKey ? undefined : () => store.move(sourceKey, finalKey),
  );
  if (result.outcome === 'stale') {
    // A later copy of this instance is already indexed: this older one is not kept.
    if (sourceKey !== finalKey) await store.delete(sourceKey);
  } else if (result.previousObjectKey) {
    // The re-sent instance moved to another series or study; its previous object is no longer indexed.
    await store.delete(result.previousObjectKey);
  }
  if (deps.log.isLevelEnabled('debug')) log().debug({ outcome: result.outcome, objectKey: finalKey }, 'instance ingested');
  return result.outcome;
}
