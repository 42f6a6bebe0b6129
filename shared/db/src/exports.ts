/**
 * Store-and-forward state: one `export_request` row per (instance, destination). The row is the truth;
 * queue jobs carry only (export_pk, generation), so every job is idempotent and a reconciler can rebuild
 * the queues from here. See migrations/0005_export.sql for the states.
 */
import type { Mutation } from '@portico/dicom';
import { COMMITMENT_STATUSES, type CommitmentStatus } from './commitment.ts';
import type { Queryable } from './pool.ts';

export type ExportStatus = 'queued' | 'sending' | 'delivered' | 'failed' | 'dead' | 'cancelled';
export const EXPORT_STATUSES: readonly ExportStatus[] = ['queued', 'sending', 'delivered', 'failed', 'dead', 'cancelled'];

/** What routing decided for one destination. */
export interface ExportPlan {
  readonly destination: string;
  readonly rule: string;
  readonly transferSyntaxUid?: string;
  readonly mutations: readonly Mutation[];
}

/** A delivery to enqueue: the queue job id is derived from these. */
export interface ExportRef {
  readonly exportPk: string;
  readonly generation: number;
  readonly destination: string;
  readonly status: ExportStatus;
}

/**
 * Records where a received copy of an instance goes. A newer copy (later received_at) asks for a new
 * delivery (generation + 1, attempts reset); the same copy routed again — an ingest job that ran twice —
 * changes nothing, and its refs come back so the caller re-adds the same jobs (which the queue ignores).
 */
export async function planExports(
  db: Queryable,
  instance: { readonly sopInstanceUid: string; readonly studyInstanceUid: string; readonly receivedAt: Date },
  plans: readonly ExportPlan[],
): Promise<ExportRef[]> {
  if (plans.length === 0) return [];
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string; status: ExportStatus }>(
    `INSERT INTO export_request AS e (sop_instance_uid, study_instance_uid, destination, rule, transfer_syntax_uid, mutations, status, copy_received_at)
     SELECT $1, $2, d.destination, d.rule, d.ts, d.mutations, 'queued', $3
       FROM jsonb_to_recordset($4::jsonb) AS d(destination text, rule text, ts text, mutations jsonb)
     ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET
       generation = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN e.generation + 1 ELSE e.generation END,
       status = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN 'queued' ELSE e.status END,
       attempts = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN 0 ELSE e.attempts END,
       next_attempt_at = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.next_attempt_at END,
       last_error = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.last_error END,
       rule = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN EXCLUDED.rule ELSE e.rule END,
       transfer_syntax_uid = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN EXCLUDED.transfer_syntax_uid ELSE e.transfer_syntax_uid END,
       mutations = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN EXCLUDED.mutations ELSE e.mutations END,
       study_instance_uid = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN EXCLUDED.study_instance_uid ELSE e.study_instance_uid END,
       queued_at = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN now() ELSE e.queued_at END,
       delivered_at = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.delivered_at END,
       commitment_status = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.commitment_status END,
       commitment_transaction_uid = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.commitment_transaction_uid END,
       commitment_resends = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN 0 ELSE e.commitment_resends END,
       commitment_requested_at = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.commitment_requested_at END,
       commitment_answered_at = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.commitment_answered_at END,
       commitment_error = CASE WHEN EXCLUDED.copy_received_at > e.copy_received_at THEN NULL ELSE e.commitment_error END,
       copy_received_at = GREATEST(EXCLUDED.copy_received_at, e.copy_received_at),
       updated_at = now()
     RETURNING export_pk::text, generation, destination, status`,
    [
      instance.sopInstanceUid,
      instance.studyInstanceUid,
      instance.receivedAt,
      JSON.stringify(plans.map((p) => ({ destination: p.destination, rule: p.rule, ts: p.transferSyntaxUid ?? null, mutations: p.mutations }))),
    ],
  );
  return rows.map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: r.status }));
}

/** A delivery an export process holds: the row and what it needs of the instance. */
export interface ClaimedExport {
  readonly exportPk: string;
  readonly generation: number;
  readonly destination: string;
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly attempts: number;
  readonly rule: string;
  readonly transferSyntaxUid?: string;
  readonly mutations: readonly Mutation[];
  readonly sopClassUid: string;
  readonly storedTransferSyntaxUid: string;
  readonly objectKey: string;
  readonly objectSize: number;
  readonly hasPixelData: boolean;
  readonly callingAeTitle?: string;
}

interface ClaimRow {
  export_pk: string;
  generation: number;
  destination: string;
  sop_instance_uid: string;
  study_instance_uid: string;
  attempts: number;
  rule: string;
  transfer_syntax_uid: string | null;
  mutations: Mutation[];
  sop_class_uid: string | null;
  stored_ts: string | null;
  object_key: string | null;
  object_size: string | null;
  has_pixel_data: boolean | null;
  calling_ae_title: string | null;
}

const CLAIM_RETURNING = `e.export_pk::text, e.generation, e.destination, e.sop_instance_uid, e.study_instance_uid, e.attempts, e.rule,
  e.transfer_syntax_uid, e.mutations, i.sop_class_uid, i.transfer_syntax_uid AS stored_ts, i.object_key, i.object_size::text,
  (jsonb_array_length(i.frames) > 0) AS has_pixel_data, i.calling_ae_title`;

/**
 * Takes a delivery for sending: the job's own row (when it is still this generation and not finished or
 * held by a live sender), then up to batchSize - 1 other waiting rows of the same study and destination,
 * oldest first, so a study goes over one association (or one STOW-RS request). Claimed rows are
 * `sending` until `leaseMs` from now (renew with {@link renewLease}); attempts count up. Rows whose
 * instance was deleted are cancelled, not claimed. Returns [] when the job's row is not claimable.
 */
export async function claimExports(
  db: Queryable,
  job: { readonly exportPk: string; readonly generation: number; readonly destination: string },
  opts: { readonly batchSize: number; readonly leaseMs: number },
): Promise<ClaimedExport[]> {
  const claimable = `(e.status IN ('queued', 'failed') OR (e.status = 'sending' AND e.lease_until < now()))`;
  // Batch-mates: not a failed delivery still in its backoff (else every batch would spend its attempts).
  const mateClaimable = `(e.status = 'queued' OR (e.status = 'failed' AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= now()))
    OR (e.status = 'sending' AND e.lease_until < now()))`;
  const own = await db.query<ClaimRow>(
    `UPDATE export_request e SET status = 'sending', lease_until = now() + $3 * interval '1 millisecond', attempts = e.attempts + 1,
       last_attempt_at = now(), updated_at = now()
     FROM export_request e0 LEFT JOIN instance i ON i.sop_instance_uid = e0.sop_instance_uid
     WHERE e.export_pk = $1 AND e.generation = $2 AND e0.export_pk = e.export_pk AND ${claimable}
     RETURNING ${CLAIM_RETURNING}`,
    [job.exportPk, job.generation, opts.leaseMs],
  );
  if (own.rows.length === 0) return [];
  const first = own.rows[0]!;
  const rows = [first];
  if (opts.batchSize > 1) {
    const more = await db.query<ClaimRow>(
      `WITH picked AS (
         SELECT export_pk FROM export_request e
          WHERE e.destination = $1 AND e.study_instance_uid = $2 AND e.export_pk <> $3 AND ${mateClaimable}
          ORDER BY e.queued_at, e.export_pk LIMIT $4 FOR UPDATE SKIP LOCKED)
       UPDATE export_request e SET status = 'sending', lease_until = now() + $5 * interval '1 millisecond', attempts = e.attempts + 1,
         last_attempt_at = now(), updated_at = now()
       FROM picked p, export_request e0 LEFT JOIN instance i ON i.sop_instance_uid = e0.sop_instance_uid
       WHERE e.export_pk = p.export_pk AND e0.export_pk = e.export_pk
       RETURNING ${CLAIM_RETURNING}`,
      [job.destination, first.study_instance_uid, job.exportPk, opts.batchSize - 1, opts.leaseMs],
    );
    rows.push(...more.rows);
  }
  const gone = rows.filter((r) => r.object_key === null);
  if (gone.length > 0) {
    await finishExports(
      db,
      gone.map((r) => ({ exportPk: r.export_pk, generation: r.generation, status: 'cancelled', error: 'the instance was deleted' })),
    );
  }
  return rows
    .filter((r) => r.object_key !== null)
    .map((r) => ({
      exportPk: r.export_pk,
      generation: r.generation,
      destination: r.destination,
      sopInstanceUid: r.sop_instance_uid,
      studyInstanceUid: r.study_instance_uid,
      attempts: r.attempts,
      rule: r.rule,
      ...(r.transfer_syntax_uid ? { transferSyntaxUid: r.transfer_syntax_uid } : {}),
      mutations: r.mutations,
      sopClassUid: r.sop_class_uid!,
      storedTransferSyntaxUid: r.stored_ts!,
      objectKey: r.object_key!,
      objectSize: Number(r.object_size),
      hasPixelData: r.has_pixel_data === true,
      ...(r.calling_ae_title ? { callingAeTitle: r.calling_ae_title } : {}),
    }));
}

/** Keeps held deliveries from being taken over while they are still being sent. */
export async function renewLease(db: Queryable, exportPks: readonly string[], leaseMs: number): Promise<void> {
  if (exportPks.length === 0) return;
  await db.query(`UPDATE export_request SET lease_until = now() + $2 * interval '1 millisecond' WHERE export_pk = ANY($1::bigint[]) AND status = 'sending'`, [
    exportPks,
    leaseMs,
  ]);
}

export interface ExportOutcome {
  readonly exportPk: string;
  readonly generation: number;
  readonly status: Extract<ExportStatus, 'delivered' | 'failed' | 'dead' | 'cancelled' | 'queued'>;
  readonly error?: string;
  /** For a failure: how long before it may be tried again in another delivery's batch. */
  readonly retryAfterMs?: number;
}

/**
 * Records the outcome of held deliveries. Only a row still `sending` in that generation changes: an
 * operator's cancel, retry or replay meanwhile wins.
 */
export async function finishExports(db: Queryable, outcomes: readonly ExportOutcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  await db.query(
    `UPDATE export_request e SET status = o.status, last_error = o.error, lease_until = NULL, updated_at = now(),
       delivered_at = CASE WHEN o.status = 'delivered' THEN now() ELSE e.delivered_at END,
       next_attempt_at = CASE WHEN o.retry_ms IS NULL THEN NULL ELSE now() + o.retry_ms * interval '1 millisecond' END
     FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::int[]) AS o(export_pk, generation, status, error, retry_ms)
     WHERE e.export_pk = o.export_pk AND e.generation = o.generation AND e.status = 'sending'`,
    [
      outcomes.map((o) => o.exportPk),
      outcomes.map((o) => o.generation),
      outcomes.map((o) => o.status),
      outcomes.map((o) => o.error ?? null),
      outcomes.map((o) => (o.retryAfterMs === undefined ? null : Math.round(o.retryAfterMs))),
    ],
  );
}

/**
 * Unfinished deliveries that may have lost their queue job: queued or failed and untouched for
 * `olderThanMs`, or sending past their lease (the sender died).
 */
export async function findStrandedExports(db: Queryable, olderThanMs: number, limit = 10000): Promise<ExportRef[]> {
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string; status: ExportStatus }>(
    `SELECT export_pk::text, generation, destination, status FROM export_request
      WHERE (status IN ('queued', 'failed') AND updated_at < now() - $1 * interval '1 millisecond')
         OR (status = 'sending' AND lease_until < now())
      ORDER BY export_pk LIMIT $2`,
    [olderThanMs, limit],
  );
  return rows.map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: r.status }));
}

/** Which rows an operator acts on. At least one of the keys must be given. */
export interface ExportFilter {
  readonly destination?: string;
  readonly studyInstanceUid?: string;
  readonly sopInstanceUid?: string;
  readonly status?: readonly ExportStatus[];
}

function filterSql(f: ExportFilter, first: number): { where: string; values: unknown[] } {
  const clauses: string[] = [];
  const values: unknown[] = [];
  const add = (sql: string, v: unknown): void => {
    values.push(v);
    clauses.push(sql.replace('?', `$${first + values.length - 1}`));
  };
  if (f.destination !== undefined) add('destination = ?', f.destination);
  if (f.studyInstanceUid !== undefined) add('study_instance_uid = ?', f.studyInstanceUid);
  if (f.sopInstanceUid !== undefined) add('sop_instance_uid = ?', f.sopInstanceUid);
  if (f.status !== undefined) add('status = ANY(?::text[])', f.status);
  return { where: clauses.length ? clauses.join(' AND ') : 'true', values };
}

export interface ExportRow {
  readonly exportPk: string;
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly destination: string;
  readonly rule: string;
  readonly transferSyntaxUid: string | null;
  readonly status: ExportStatus;
  readonly generation: number;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly queuedAt: Date;
  readonly lastAttemptAt: Date | null;
  readonly deliveredAt: Date | null;
  readonly updatedAt: Date;
  /** Storage commitment of this delivery (DIMSE destinations with `storageCommitment`), null when never asked. */
  readonly commitmentStatus: CommitmentStatus | null;
  readonly commitmentTransactionUid: string | null;
  readonly commitmentRequestedAt: Date | null;
  readonly commitmentAnsweredAt: Date | null;
  readonly commitmentError: string | null;
  readonly commitmentResends: number;
}

const ROW_COLUMNS = `export_pk::text AS "exportPk", sop_instance_uid AS "sopInstanceUid", study_instance_uid AS "studyInstanceUid", destination, rule,
  transfer_syntax_uid AS "transferSyntaxUid", status, generation, attempts, last_error AS "lastError", queued_at AS "queuedAt",
  last_attempt_at AS "lastAttemptAt", delivered_at AS "deliveredAt", updated_at AS "updatedAt",
  commitment_status AS "commitmentStatus", commitment_transaction_uid AS "commitmentTransactionUid", commitment_requested_at AS "commitmentRequestedAt",
  commitment_answered_at AS "commitmentAnsweredAt", commitment_error AS "commitmentError", commitment_resends AS "commitmentResends"`;

/** Rows matching the filter, oldest first, keyset-paged by export_pk. */
export async function listExports(db: Queryable, f: ExportFilter, page: { limit: number; after?: string }): Promise<ExportRow[]> {
  const { where, values } = filterSql(f, 1);
  values.push(page.after ?? '0', page.limit);
  const { rows } = await db.query<ExportRow>(
    `SELECT ${ROW_COLUMNS} FROM export_request WHERE ${where} AND export_pk > $${values.length - 1}::bigint ORDER BY export_pk LIMIT $${values.length}`,
    values,
  );
  return rows;
}

/** An operator's retry or replay starts over: no commitment outcome, resends counted from zero. */
const COMMITMENT_RESET = `commitment_status = NULL, commitment_transaction_uid = NULL, commitment_requested_at = NULL, commitment_answered_at = NULL,
  commitment_error = NULL, commitment_resends = 0`;

/**
 * Asks again for deliveries that ended badly (failed, dead, cancelled, or the given statuses): a new
 * generation with attempts reset. Returns the refs to enqueue.
 */
export async function retryExports(db: Queryable, f: ExportFilter): Promise<ExportRef[]> {
  const { where, values } = filterSql({ ...f, status: f.status ?? ['failed', 'dead', 'cancelled'] }, 1);
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string }>(
    `UPDATE export_request SET generation = generation + 1, status = 'queued', attempts = 0, last_error = NULL, lease_until = NULL, next_attempt_at = NULL,
       queued_at = now(), delivered_at = NULL, ${COMMITMENT_RESET}, updated_at = now()
      WHERE ${where} AND status <> 'sending' RETURNING export_pk::text, generation, destination`,
    values,
  );
  return rows.map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: 'queued' }));
}

/**
 * Sends instances again to a destination, whatever happened before: every instance of the study (or the
 * one instance) gets a queued delivery in a new generation, created when the routes never sent it there.
 */
export async function replayExports(
  db: Queryable,
  scope: { readonly studyInstanceUid?: string; readonly sopInstanceUid?: string },
  destination: string,
): Promise<ExportRef[]> {
  if (!scope.studyInstanceUid && !scope.sopInstanceUid) throw new Error('replay needs a study or an instance');
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string }>(
    `INSERT INTO export_request AS e (sop_instance_uid, study_instance_uid, destination, rule, status, copy_received_at)
     SELECT i.sop_instance_uid, st.study_instance_uid, $3, 'replay', 'queued', i.received_at
       FROM instance i JOIN study st ON st.study_pk = i.study_pk
      WHERE ($1::text IS NULL OR st.study_instance_uid = $1) AND ($2::text IS NULL OR i.sop_instance_uid = $2)
     ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET generation = e.generation + 1, status = 'queued', attempts = 0, last_error = NULL,
       lease_until = NULL, next_attempt_at = NULL, queued_at = now(), delivered_at = NULL, ${COMMITMENT_RESET}, updated_at = now()
     RETURNING export_pk::text, generation, destination`,
    [scope.studyInstanceUid ?? null, scope.sopInstanceUid ?? null, destination],
  );
  return rows.map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: 'queued' }));
}

/** Stops deliveries not yet done (queued, failed, sending): they become cancelled. Returns them. */
export async function cancelExports(db: Queryable, f: ExportFilter): Promise<ExportRef[]> {
  const { where, values } = filterSql({ ...f, status: f.status ?? ['queued', 'failed', 'sending'] }, 1);
  const { rows } = await db.query<{ export_pk: string; generation: number; destination: string }>(
    `UPDATE export_request SET status = 'cancelled', lease_until = NULL, last_error = 'cancelled by an operator', updated_at = now()
      WHERE ${where} RETURNING export_pk::text, generation, destination`,
    values,
  );
  return rows.map((r) => ({ exportPk: r.export_pk, generation: r.generation, destination: r.destination, status: 'cancelled' }));
}

/** The journey of an instance, or of every instance of a study: received, stored, then each delivery. */
export interface InstanceJourney {
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly source: string;
  readonly callingAeTitle: string | null;
  readonly calledAeTitle: string | null;
  readonly receivedAt: Date;
  readonly storedAt: Date;
  readonly exports: readonly ExportRow[];
}

export async function instanceJourney(db: Queryable, uid: string, limit = 1000): Promise<InstanceJourney[]> {
  const { rows } = await db.query<Omit<InstanceJourney, 'exports'>>(
    `SELECT i.sop_instance_uid AS "sopInstanceUid", st.study_instance_uid AS "studyInstanceUid", se.series_instance_uid AS "seriesInstanceUid",
            i.source, i.calling_ae_title AS "callingAeTitle", i.called_ae_title AS "calledAeTitle", i.received_at AS "receivedAt",
            i.updated_at AS "storedAt"
       FROM instance i JOIN series se ON se.series_pk = i.series_pk JOIN study st ON st.study_pk = i.study_pk
      WHERE i.sop_instance_uid = $1 OR st.study_instance_uid = $1 OR se.series_instance_uid = $1
      ORDER BY i.instance_pk LIMIT $2`,
    [uid, limit],
  );
  // Deliveries of an instance deleted since are still worth showing: they are listed under the UID asked for.
  const exports = await db.query<ExportRow>(
    `SELECT ${ROW_COLUMNS} FROM export_request WHERE sop_instance_uid = ANY($1::text[]) OR study_instance_uid = $2 ORDER BY export_pk`,
    [rows.map((r) => r.sopInstanceUid), uid],
  );
  const bySop = new Map<string, ExportRow[]>();
  for (const e of exports.rows) bySop.set(e.sopInstanceUid, [...(bySop.get(e.sopInstanceUid) ?? []), e]);
  return rows.map((r) => ({ ...r, exports: bySop.get(r.sopInstanceUid) ?? [] }));
}

/** Per destination: rows by status, the age of the oldest unfinished one, and delivery latency (last hour). */
export interface DestinationStats {
  readonly destination: string;
  readonly counts: Readonly<Record<ExportStatus, number>>;
  readonly oldestUnfinishedAgeSeconds: number | null;
  readonly deliveredLastHour: number;
  readonly latencyP50Seconds: number | null;
  readonly latencyP95Seconds: number | null;
  /** Deliveries by storage commitment outcome (only those it was asked for). */
  readonly commitments: Readonly<Record<CommitmentStatus, number>>;
}

export async function destinationStats(db: Queryable): Promise<DestinationStats[]> {
  const { rows } = await db.query<{
    destination: string;
    status: ExportStatus;
    n: string;
    oldest: number | null;
  }>(
    `SELECT destination, status, count(*)::text AS n,
            EXTRACT(EPOCH FROM now() - min(queued_at) FILTER (WHERE status IN ('queued', 'sending', 'failed')))::float8 AS oldest
       FROM export_request GROUP BY destination, status`,
  );
  const lat = await db.query<{ destination: string; n: string; p50: number | null; p95: number | null }>(
    `SELECT destination, count(*)::text AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - queued_at)::float8) AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - queued_at)::float8) AS p95
       FROM export_request WHERE status = 'delivered' AND delivered_at > now() - interval '1 hour' GROUP BY destination`,
  );
  const com = await db.query<{ destination: string; commitment_status: CommitmentStatus; n: string }>(
    `SELECT destination, commitment_status, count(*)::text AS n FROM export_request WHERE commitment_status IS NOT NULL GROUP BY destination, commitment_status`,
  );
  const out = new Map<string, { counts: Record<ExportStatus, number>; oldest: number | null }>();
  for (const r of rows) {
    const d = out.get(r.destination) ?? { counts: Object.fromEntries(EXPORT_STATUSES.map((s) => [s, 0])) as Record<ExportStatus, number>, oldest: null };
    d.counts[r.status] = Number(r.n);
    if (r.oldest !== null) d.oldest = Math.max(d.oldest ?? 0, Number(r.oldest));
    out.set(r.destination, d);
  }
  const latency = new Map(lat.rows.map((r) => [r.destination, r]));
  const commitments = new Map<string, Record<CommitmentStatus, number>>();
  for (const r of com.rows) {
    const c = commitments.get(r.destination) ?? (Object.fromEntries(COMMITMENT_STATUSES.map((s) => [s, 0])) as Record<CommitmentStatus, number>);
    c[r.commitment_status] = Number(r.n);
    commitments.set(r.destination, c);
  }
  return [...out.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([destination, d]) => {
      const l = latency.get(destination);
      return {
        destination,
        counts: d.counts,
        oldestUnfinishedAgeSeconds: d.oldest,
        deliveredLastHour: l ? Number(l.n) : 0,
        latencyP50Seconds: l?.p50 ?? null,
        latencyP95Seconds: l?.p95 ?? null,
        commitments: commitments.get(destination) ?? (Object.fromEntries(COMMITMENT_STATUSES.map((s) => [s, 0])) as Record<CommitmentStatus, number>),
      };
    });
}

/** What routing sees of a stored instance (for explaining a decision after the fact). */
export async function instanceRoutingInput(
  db: Queryable,
  sopInstanceUid: string,
): Promise<{ json: Record<string, unknown>; source: string; callingAeTitle: string | null; calledAeTitle: string | null } | undefined> {
  const { rows } = await db.query<{ json: Record<string, unknown>; source: string; calling_ae_title: string | null; called_ae_title: string | null }>(
    'SELECT json, source, calling_ae_title, called_ae_title FROM instance WHERE sop_instance_uid = $1',
    [sopInstanceUid],
  );
  const r = rows[0];
  return r && { json: r.json, source: r.source, callingAeTitle: r.calling_ae_title, calledAeTitle: r.called_ae_title };
}
