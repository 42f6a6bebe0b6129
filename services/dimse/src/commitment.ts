/**
 * Storage Commitment Push Model SCP (PS3.4 Annex J).
 *
 * N-ACTION (action type 1) names a transaction and the instances (SOP class + instance UIDs) the
 * requester wants us to take responsibility for. We answer the N-ACTION at once, then decide: an
 * instance is committed when it is in the index with that SOP class — indexed means its bytes are
 * durably at their final key. An instance acknowledged moments ago may still be in the ingest queue, so
 * missing instances are looked up again for a while (`dimse.commitmentWaitMs`) before they fail.
 * The outcome goes back as N-EVENT-REPORT (event type 1: all committed, 2: some failed, PS3.4
 * Table J.3-1), on the requesting association while it is open, else on a new association to the
 * requester's address from the nodes file (we take the SCP role for the SOP class there).
 *
 * Failure reasons (PS3.4 Table J.3-2 / C.4.2.1.3.2): 0x0112 no such object instance, 0x0119 class /
 * instance conflict, 0x0110 processing failure (index unreachable).
 */
import { recordCommitmentReport, type Db } from '@portico/db';
import type { JobQueues } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import { keyString, type JsonDataset, type JsonElement } from './find-match.ts';

export const STORAGE_COMMITMENT_PUSH = '1.2.840.10008.1.20.1';
/** The well-known SOP Instance of the Storage Commitment Push Model (PS3.4 J.3.5). */
export const STORAGE_COMMITMENT_INSTANCE = '1.2.840.10008.1.20.1.1';

export interface CommitRef {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
}

export interface CommitRequest {
  readonly transactionUid: string;
  readonly refs: readonly CommitRef[];
}

export interface CommitResult {
  readonly committed: readonly CommitRef[];
  readonly failed: ReadonlyArray<CommitRef & { readonly reason: number }>;
}

const ui = (v: string): JsonElement => ({ vr: 'UI', Value: [v] });

/** An item of a Referenced / Failed SOP Sequence for one instance (PS3.4 Tables J.3-1, J.3-2). */
export function refItem(r: CommitRef): JsonDataset {
  return { '00081150': ui(r.sopClassUid), '00081155': ui(r.sopInstanceUid) };
}

/** The instance a Referenced / Failed SOP Sequence item names ('' for what it lacks). */
export function readRefItem(item: JsonDataset): CommitRef {
  return { sopClassUid: keyString(item['00081150']).trim(), sopInstanceUid: keyString(item['00081155']).trim() };
}

/** Reads an N-ACTION data set. @throws Error when the transaction UID or the references are missing */
export function parseCommitRequest(ds: JsonDataset): CommitRequest {
  const transactionUid = keyString(ds['00081195']).trim();
  if (!transactionUid) throw new Error('no Transaction UID (0008,1195)');
  const items = (ds['00081199']?.Value ?? []) as JsonDataset[];
  if (items.length === 0) throw new Error('no Referenced SOP Sequence (0008,1199)');
  const refs = items.map(readRefItem);
  if (refs.some((r) => !r.sopClassUid || !r.sopInstanceUid)) throw new Error('a Referenced SOP Sequence item lacks its SOP class or instance UID');
  return { transactionUid, refs };
}

/** Looks the instances up in the index, again for up to waitMs while some are missing. */
export async function checkCommitment(db: Db, refs: readonly CommitRef[], waitMs: number): Promise<CommitResult> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let found: Map<string, string>;
    try {
      const { rows } = await db.query<{ sop_instance_uid: string; sop_class_uid: string }>(
        'SELECT sop_instance_uid, sop_class_uid FROM instance WHERE sop_instance_uid = ANY($1::text[])',
        [refs.map((r) => r.sopInstanceUid)],
      );
      found = new Map(rows.map((r) => [r.sop_instance_uid, r.sop_class_uid]));
    } catch {
      return { committed: [], failed: refs.map((r) => ({ ...r, reason: 0x0110 })) };
    }
    const missing = refs.filter((r) => !found.has(r.sopInstanceUid));
    if (missing.length === 0 || Date.now() >= deadline) {
      const committed: CommitRef[] = [];
      const failed: Array<CommitRef & { reason: number }> = [];
      for (const r of refs) {
        const cls = found.get(r.sopInstanceUid);
        if (cls === undefined) failed.push({ ...r, reason: 0x0112 });
        else if (cls !== r.sopClassUid) failed.push({ ...r, reason: 0x0119 });
        else committed.push(r);
      }
      return { committed, failed };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The N-EVENT-REPORT data set (PS3.4 Table J.3-2) and its event type. */
export function eventReport(transactionUid: string, result: CommitResult, retrieveAeTitle: string): { eventTypeId: 1 | 2; dataset: JsonDataset } {
  const dataset: JsonDataset = { '00081195': ui(transactionUid), '00080054': { vr: 'AE', Value: [retrieveAeTitle] } };
  if (result.committed.length > 0) dataset['00081199'] = { vr: 'SQ', Value: result.committed.map(refItem) };
  if (result.failed.length > 0)
    dataset['00081198'] = {
      vr: 'SQ',
      Value: result.failed.map((r) => ({ ...refItem(r), '00081197': { vr: 'US', Value: [r.reason] } })),
    };
  return { eventTypeId: result.failed.length > 0 ? 2 : 1, dataset };
}

/** What recording a storage commitment report needs (the export role and the DIMSE SCP both do it). */
export interface ReportRecorderDeps {
  readonly db: Db;
  readonly queues: JobQueues;
  readonly log: Logger;
  /** Deliveries made again after a failed commitment, at most (export.commitmentMaxResends). */
  readonly maxResends: number;
  /** Retry policy of the re-enqueued deliveries. */
  readonly retry: { readonly attempts: number; readonly backoffMs: number };
}

/**
 * Records the N-EVENT-REPORT of a storage commitment we asked for (PS3.4 J.3.3) on the deliveries of its
 * transaction, and enqueues the deliveries sent again because their commitment failed. `fromAe`: the
 * calling AE of a report on a new association, which must be the destination the request went to.
 * Returns the N-EVENT-REPORT-RSP status: 0x0000 once recorded (an unknown transaction too: there is
 * nothing the reporter could do better), 0x0110 processing failure when the index is unreachable.
 */
export async function recordReport(
  deps: ReportRecorderDeps,
  report: {
    readonly transactionUid: string;
    readonly committed: readonly CommitRef[];
    readonly failed: ReadonlyArray<CommitRef & { readonly reason: number }>;
  },
  fromAe?: string,
): Promise<number> {
  const log = deps.log.child({ transactionUid: report.transactionUid, ...(fromAe ? { reportedBy: fromAe } : {}) });
  let outcome;
  try {
    outcome = await recordCommitmentReport(
      deps.db,
      {
        transactionUid: report.transactionUid,
        committed: report.committed.map((r) => r.sopInstanceUid),
        failed: report.failed.map((r) => ({ sopInstanceUid: r.sopInstanceUid, reason: r.reason })),
      },
      { maxResends: deps.maxResends, ...(fromAe ? { destination: fromAe } : {}) },
    );
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'storage commitment report could not be recorded');
    return 0x0110;
  }
  if (outcome.matched === 0) {
    log.warn('storage commitment report for no open request of ours (unknown transaction, or from another AE than the destination)');
    return 0x0000;
  }
  if (outcome.resend.length > 0) {
    // Queued in PostgreSQL already: a failed enqueue is caught up by the export reconciler.
    await deps.queues
      .enqueueExports(outcome.resend, deps.retry)
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not enqueue the deliveries to send again; the reconciler will'));
  }
  log.info(
    { committed: outcome.committed, failed: outcome.failed, resent: outcome.resend.length, dead: outcome.dead },
    outcome.failed > 0 ? 'storage commitment failed for some instances' : 'storage commitment recorded',
  );
  return 0x0000;
}
