/**
 * ingest-instance: turns a staged object into an indexed instance.
 *
 * Idempotent and crash-safe at every step, because BullMQ may run it again after a crash:
 * 1. Parse the staged object's header (streaming; pixel data is skipped, frame ranges recorded).
 * 2. Under the per-instance lock (see upsertInstance): copy the object to its final key and upsert the
 *    study/series/instance rows, in one database transaction. A copy received earlier than the indexed
 *    one is stale and changes nothing.
 * 3. After the commit, delete the staging object. If we crash before that, the retry repeats 1-2 (same
 *    bytes, same result); if the staging object is already gone, a previous attempt committed.
 * A data set that cannot be parsed is not retried (UnrecoverableError); its staging object is kept for
 * inspection and the failure is recorded in the event table.
 */
import { parseInstance, indexAttributes, DicomParseError } from '@portico/dicom';
import { upsertInstance, recordEvent, pickTags, STUDY_LEVEL_TAGS, SERIES_LEVEL_TAGS, type Db } from '@portico/db';
import type { ObjectStore } from '@portico/storage';
import { UnrecoverableError, type IngestInstancePayload } from '@portico/jobs';
import type { Logger } from '@portico/logging';

export interface IngestDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly log: Logger;
}

/** UIDs become object key segments: anything but a well-formed UID is refused rather than escaped. */
const UID_RE = /^[0-9]+(\.[0-9]+)*$/;

export function instanceKey(studyUid: string, seriesUid: string, sopUid: string): string {
  return `studies/${studyUid}/series/${seriesUid}/instances/${sopUid}.dcm`;
}

export async function ingestInstance(deps: IngestDeps, payload: IngestInstancePayload): Promise<'inserted' | 'replaced' | 'stale' | 'gone'> {
  const { db, store } = deps;
  const log = deps.log.child({ sopInstanceUid: payload.sopInstanceUid, stagingKey: payload.stagingKey });
  const stat = await store.stat(payload.stagingKey);
  if (!stat) {
    log.info('staging object already gone: a previous attempt completed');
    return 'gone';
  }
  let parsed;
  try {
    parsed = await parseInstance((await store.get(payload.stagingKey)) as AsyncIterable<Buffer>);
  } catch (err) {
    if (err instanceof DicomParseError) {
      await recordEvent(db, 'ingest-failed', { sopInstanceUid: payload.sopInstanceUid }, { stagingKey: payload.stagingKey, reason: err.message });
      throw new UnrecoverableError(`cannot parse ${payload.stagingKey}: ${err.message}`);
    }
    throw err;
  }
  for (const [name, uid] of [
    ['StudyInstanceUID', parsed.studyInstanceUid],
    ['SeriesInstanceUID', parsed.seriesInstanceUid],
    ['SOPInstanceUID', parsed.sopInstanceUid],
  ] as const) {
    if (!UID_RE.test(uid) || uid.length > 64) {
      await recordEvent(db, 'ingest-failed', { sopInstanceUid: payload.sopInstanceUid }, { stagingKey: payload.stagingKey, reason: `invalid ${name}` });
      throw new UnrecoverableError(`invalid ${name} in ${payload.stagingKey}`);
    }
  }
  const finalKey = instanceKey(parsed.studyInstanceUid, parsed.seriesInstanceUid, parsed.sopInstanceUid);
  const json = parsed.json as Record<string, unknown>;
  const outcome = await upsertInstance(
    db,
    {
      studyInstanceUid: parsed.studyInstanceUid,
      seriesInstanceUid: parsed.seriesInstanceUid,
      sopInstanceUid: parsed.sopInstanceUid,
      sopClassUid: parsed.sopClassUid,
      transferSyntaxUid: parsed.transferSyntaxUid,
      attrs: indexAttributes(parsed),
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
    () => store.copy(payload.stagingKey, finalKey),
  );
  await store.delete(payload.stagingKey);
  if (outcome !== 'stale') {
    await recordEvent(
      db,
      'stored',
      { sopInstanceUid: parsed.sopInstanceUid, studyInstanceUid: parsed.studyInstanceUid },
      { source: payload.source, callingAet: payload.callingAeTitle, outcome },
    );
  }
  log.debug({ outcome, objectKey: finalKey }, 'instance ingested');
  return outcome;
}
