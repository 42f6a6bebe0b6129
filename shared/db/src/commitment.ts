/**
 * Storage commitment asked of export destinations (PS3.4 Annex J), recorded on the `export_request` row
 * of each delivery (migrations/0006_storage_commitment.sql).
 *
 * The request is recorded (`requested`, with its Transaction UID) before the N-ACTION goes out, so a
 * report arriving at once on another association, or in another process (the `dimse` role), finds it; a
 * request that never got out (the sender died) ends as `timeout`. A failed commitment means the
 * destination does not have the instance: the delivery is queued again (a new generation) up to
 * `maxResends` times, then it is dead, where an operator sees it and can retry it.
 */
import type { ExportRef } from './exports.ts';
import type { Queryable } from './pool.ts';

export type CommitmentStatus = 'requested' | 'committed' | 'failed' | 'refused' | 'timeout';
export const COMMITMENT_STATUSES: readonly CommitmentStatus[] = ['requested', 'committed', 'failed', 'refused', 'timeout'];

/**
 * Marks delivered rows as having commitment requested under `transactionUid`. Only rows still delivered
 * in the given generation are marked. Returns the SOP Instance UIDs marked (what the N-ACTION references).
 */
export async function markCommitmentRequested(
  db: Queryable,
  transactionUid: string,
  rows: ReadonlyArray<{ readonly exportPk: string; readonly generation: number }>,
): Promise<string[]> {
  if (rows.length === 0) return [];
  const { rows: marked } = await db.query<{ sop_instance_uid: string }>(
    `UPDATE export_request e SET commitment_status = 'requested', commitment_transaction_uid = $1, commitment_requested_at = now(),
       commitment_answered_at = NULL, commitment_error = NULL, updated_at = now()
     FROM unnest($2::bigint[], $3::int[]) AS r(export_pk, generation)
     WHERE e.export_pk = r.export_pk AND e.generation = r.generation AND e.status = 'delivered'
     RETURNING e.sop_instance_uid`,
    [transactionUid, rows.map((r) => r.exportPk), rows.map((r) => r.generation)],
  );
  return marked.map((r) => r.sop_instance_uid);
}

/** The N-ACTION was not taken (no context, a failure status, unreachable): recorded, deliveries stay delivered. */
export async function markCommitmentRefused(db: Queryable, transactionUid: string, error: string): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE export_request SET commitment_status = 'refused', commitment_error = $2, commitment_answered_at = now(), updated_at = now()
      WHERE commitment_transaction_uid = $1 AND commitment_status = 'requested'`,
    [transactionUid, error.slice(0, 1000)],
  );
  return rowCount ?? 0;
}

/** What an N-EVENT-REPORT said (PS3.4 Table J.3-2): committed instances, and failed ones with their Failure Reason. */
export interface CommitmentReportRecord {
  readonly transactionUid: string;
  readonly committed: readonly string[];
  readonly failed: ReadonlyArray<{ readonly sopInstanceUid: string; readonly reason: number }>;
}

export interface CommitmentReportOutcome {
  /** Rows of the transaction the report changed (0: unknown transaction, or another destination's). */
  readonly matched: number;
  readonly committed: number;
  readonly failed: number;
  /** Failed deliveries queued again: enqueue these. */
  readonly resend: ExportRef[];
  /** Failed deliveries out of resends: now dead. */
  readonly dead: number;
}

const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Records a report on the rows of its transaction (those still holding its Transaction UID, requested
 * or timed out: a late report is still the truth). With `destination`, only rows of that destination
 * change — a report on a new association must come from the AE the request went to.
 */
export async function recordCommitmentReport(
  db: Queryable,
  report: CommitmentReportRecord,
  opts: { readonly maxResends: number; readonly destination?: string },
): Promise<CommitmentReportOutcome> {
  const items = [
    ...report.committed.map((sop) => ({ sop, reason: null as number | null, error: null as string | null })),
    ...report.failed.map((f) => ({ sop: f.sopInstanceUid, reason: f.reason, error: `storage commitment failed: Failure Reason ${hex(f.reason)}` })),
  ];
  if (items.length === 0) return { matched: 0, committed: 0, failed: 0, resend: [], dead: 0 };
  // An instance listed as both committed and failed counts as failed: the safe reading.
  // Resend: a failed commitment of a row still delivered, with resends left, becomes a new queued
  // generation (attempts reset, like an operator's retry); out of resends it is dead.
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string; status: string; commitment_status: string }>(
    `WITH r AS (SELECT DISTINCT ON (sop) sop, reason, error FROM jsonb_to_recordset($2::jsonb) AS r(sop text, reason int, error text) ORDER BY sop, reason NULLS LAST),
     m AS (SELECT e.export_pk, r.reason, r.error,
                  (r.reason IS NOT NULL AND e.status = 'delivered' AND e.commitment_resends < $3) AS resend,
                  (r.reason IS NOT NULL AND e.status = 'delivered' AND e.commitment_resends >= $3) AS give_up
             FROM export_request e JOIN r ON r.sop = e.sop_instance_uid
            WHERE e.commitment_transaction_uid = $1 AND e.commitment_status IN ('requested', 'timeout')
              AND ($4::text IS NULL OR e.destination = $4)
            FOR UPDATE OF e)
     UPDATE export_request e SET
       commitment_status = CASE WHEN m.reason IS NULL THEN 'committed' ELSE 'failed' END,
       commitment_error = m.error,
       commitment_answered_at = now(),
       commitment_resends = e.commitment_resends + CASE WHEN m.resend THEN 1 ELSE 0 END,
       status = CASE WHEN m.resend THEN 'queued' WHEN m.give_up THEN 'dead' ELSE e.status END,
       generation = e.generation + CASE WHEN m.resend THEN 1 ELSE 0 END,
       attempts = CASE WHEN m.resend THEN 0 ELSE e.attempts END,
       last_error = CASE WHEN m.resend OR m.give_up THEN m.error ELSE e.last_error END,
       queued_at = CASE WHEN m.resend THEN now() ELSE e.queued_at END,
       delivered_at = CASE WHEN m.resend THEN NULL ELSE e.delivered_at END,
       next_attempt_at = CASE WHEN m.resend THEN NULL ELSE e.next_attempt_at END,
       updated_at = now()
     FROM m WHERE e.export_pk = m.export_pk
     RETURNING e.export_pk::text, e.generation, e.destination, e.status, e.commitment_status`,
    [report.transactionUid, JSON.stringify(items), opts.maxResends, opts.destination ?? null],
  );
  return {
    matched: rows.length,
    committed: rows.filter((r) => r.commitment_status === 'committed').length,
    failed: rows.filter((r) => r.commitment_status === 'failed').length,
    resend: rows
      .filter((r) => r.commitment_status === 'failed' && r.status === 'queued')
      .map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: 'queued' as const })),
    dead: rows.filter((r) => r.commitment_status === 'failed' && r.status === 'dead').length,
  };
}

/** Requests without a report for `timeoutMs` become `timeout`. Returns how many rows changed. */
export async function expireCommitments(db: Queryable, timeoutMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE export_request SET commitment_status = 'timeout', commitment_error = $2, updated_at = now()
      WHERE commitment_status = 'requested' AND commitment_requested_at < now() - $1 * interval '1 millisecond'`,
    [timeoutMs, `no N-EVENT-REPORT within ${timeoutMs} ms`],
  );
  return rowCount ?? 0;
}
