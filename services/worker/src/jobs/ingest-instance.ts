/**
 * ingest-instance: turns a staged object into an indexed instance at its final key.
 *
 * Idempotent and crash-safe at every step, because BullMQ may run it again after a crash:
 * 1. Parse the header of the staged object (streaming; pixel data skipped, frame ranges recorded).
 * 2. Under the per-instance lock (see upsertInstance), in one database transaction: copy the object to
 *    `studies/<study>/series/<series>/instances/<sop>.dcm`, upsert the study/series/instance rows and
 *    write the routing's export rows; after the commit, delete the staged object and enqueue exports.
 *    A copy received earlier than the indexed one is stale: it is dropped and changes nothing.
 * 3. A retry that finds the staging object gone while the final object exists (the commit happened, the
 *    job's completion did not) parses the final object and indexes it again. The receivers put the Study and Series
 *    Instance UIDs in the payload (UIDs only, never patient data) so the final key is known without the
 *    staging object.
 * A data set that cannot be parsed is not retried (UnrecoverableError); its object is moved to
 * `failed/<uuid>.dcm` for inspection and the failure is recorded in the event table.
 *
 * Instances without a Study or Series Instance UID (a Type 1 violation seen in real files) are kept,
 * not refused: they are indexed under a UID derived from their SOP Instance UID (2.25 form, PS3.5 §B.2),
 * the same on every re-send, and the metadata shows the derived value.
 */
import { parseInstance, receivedHeaders, indexAttributes, hierarchyUids, isValidUid, DicomParseError, type ParsedInstance } from '@portico/dicom';

export { derivedUid, hierarchyUids } from '@portico/dicom';
import { upsertInstance, recordEvent, pickTags, planExports, STUDY_LEVEL_TAGS, SERIES_LEVEL_TAGS, type Db, type ExportPlan, type ExportRef } from '@portico/db';
import { seekableObject, type ObjectStore } from '@portico/storage';
import { UnrecoverableError, type IngestInstancePayload } from '@portico/jobs';
import type { Logger } from '@portico/logging';

export interface IngestDeps {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly log: Logger;
  /**
   * Store-and-forward. `plan` (pure) says where the indexed instance goes; its export rows are written in
   * the index transaction, so an instance is never indexed without them (a crash, a lost job), and
   * `enqueue` adds their jobs after the commit (a lost enqueue is the export reconciler's job). Routing
   * the same received copy again asks for no second delivery.
   */
  readonly routing?: {
    readonly plan: (indexed: IndexedInstance) => readonly ExportPlan[];
    readonly enqueue: (refs: readonly ExportRef[]) => Promise<void>;
  };
}

/** What routing needs of an indexed instance: its UIDs, its DICOM JSON and who sent it. */
export interface IndexedInstance {
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly json: Record<string, unknown>;
  readonly source: IngestInstancePayload['source'];
  readonly callingAeTitle?: string;
  readonly calledAeTitle?: string;
  readonly receivedAt: Date;
}

export function instanceKey(studyUid: string, seriesUid: string, sopUid: string): string {
  return `studies/${studyUid}/series/${seriesUid}/instances/${sopUid}.dcm`;
}

export type IngestOutcome = 'inserted' | 'replaced' | 'stale' | 'gone';

/**
 * How a staged object arrived, when its job was lost and the reconciler re-ingests it ('import'): STOW-RS
 * parts are staged as `staging/stow-<uuid>.dcm`; DIMSE receptions carry the association's calling and
 * called AE titles in their File Meta group ((0002,0017) Sending, (0002,0018) Receiving Application Entity
 * Title). Routing by AE title or source keeps working for them.
 */
export function recoveredArrival(
  stagingKey: string,
  parsed: Pick<ParsedInstance, 'fileMeta'>,
): Pick<IngestInstancePayload, 'source' | 'callingAeTitle' | 'calledAeTitle'> {
  if (/(^|\/)stow-[^/]*$/.test(stagingKey)) return { source: 'stow-rs' };
  const meta = parsed.fileMeta;
  if (meta?.receivingApplicationEntityTitle) {
    const calling = meta.sendingApplicationEntityTitle ?? meta.sourceApplicationEntityTitle;
    return { source: 'dimse', calledAeTitle: meta.receivingApplicationEntityTitle, ...(calling ? { callingAeTitle: calling } : {}) };
  }
  return { source: 'import' };
}

export async function ingestInstance(deps: IngestDeps, payload: IngestInstancePayload): Promise<IngestOutcome> {
  const { db, store } = deps;
  // Created only when something is logged: a pino child with redaction costs ~30 µs, per instance.
  let child: Logger | undefined;
  const log = (): Logger => (child ??= deps.log.child({ sopInstanceUid: payload.sopInstanceUid, stagingKey: payload.stagingKey }));
  const expected = hierarchyUids(payload.sopInstanceUid, payload.studyInstanceUid ?? '', payload.seriesInstanceUid ?? '');
  const expectedKey = payload.studyInstanceUid !== undefined ? instanceKey(expected.study, expected.series, payload.sopInstanceUid) : undefined;

  // Parsed on receipt in this process (see receivedHeaders): the same bytes, written moments ago, so the
  // same result, and no need to look the object up (were it gone, the copy below fails and the retry
  // finds out).
  const handedOff = receivedHeaders.take(payload.stagingKey);
  let sourceKey = payload.stagingKey;
  let stat = handedOff ? { size: handedOff.size } : await store.stat(sourceKey);
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
  if (handedOff) {
    parsed = handedOff.parsed;
  } else {
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
  const arrival = payload.source === 'import' ? recoveredArrival(payload.stagingKey, parsed) : payload;
  const indexed: IndexedInstance = {
    sopInstanceUid: parsed.sopInstanceUid,
    studyInstanceUid: uids.study,
    json,
    source: arrival.source,
    ...(arrival.callingAeTitle ? { callingAeTitle: arrival.callingAeTitle } : {}),
    ...(arrival.calledAeTitle ? { calledAeTitle: arrival.calledAeTitle } : {}),
    receivedAt: new Date(payload.receivedAt),
  };
  const plans = deps.routing?.plan(indexed) ?? [];
  let routed: ExportRef[] = [];
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
      source: arrival.source,
      callingAeTitle: arrival.callingAeTitle,
      calledAeTitle: arrival.calledAeTitle,
      receivedAt: new Date(payload.receivedAt),
    },
    // Copied, not moved, inside the transaction: until the commit the staged object stays where the
    // staging reconciler finds it, so a crash here with the job lost too (a queue backend that lost its
    // data) cannot leave an acknowledged instance at its final key but not indexed. The folder store
    // copies with a hard link.
    sourceKey === finalKey ? undefined : () => store.copy(sourceKey, finalKey),
    plans.length > 0
      ? async (tx) => {
          routed = await planExports(tx, indexed, plans);
        }
      : undefined,
  );
  // The staged copy is let go once the index points at the final one (or, when stale, is not kept).
  if (sourceKey !== finalKey) await store.delete(sourceKey);
  if (result.outcome !== 'stale' && result.previousObjectKey) {
    // The re-sent instance moved to another series or study; its previous object is no longer indexed.
    await store.delete(result.previousObjectKey);
  }
  const toSend = routed.filter((r) => r.status === 'queued' || r.status === 'failed' || r.status === 'sending');
  if (result.outcome !== 'stale' && toSend.length > 0) await deps.routing!.enqueue(toSend);
  if (deps.log.isLevelEnabled('debug')) log().debug({ outcome: result.outcome, objectKey: finalKey }, 'instance ingested');
  return result.outcome;
}
