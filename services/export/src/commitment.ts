/**
 * Storage commitment after a delivered batch, for DIMSE destinations listed with `storageCommitment:
 * true` (PS3.4 Annex J).
 *
 * The delivery job does not wait for it: the request runs beside the next batches, so a destination that
 * is slow to commit (or never answers) does not slow deliveries down. Its state is in PostgreSQL from the
 * start — the rows are marked `requested` under a new Transaction UID before the N-ACTION goes out — so a
 * report arriving on another association, in another process (the `dimse` role), or after this process
 * died, still finds them; a request nobody answers ends as `timeout` (the export reconciler's sweep).
 */
import { markCommitmentRefused, markCommitmentRequested, type ClaimedExport, type Db } from '@portico/db';
import { newTransactionUid, recordReport, requestStorageCommitment, type ReportRecorderDeps, type ScuTls } from '@portico/dimse';
import type { DicomNode } from '@portico/config';
import type { Logger } from '@portico/logging';
import type { JobQueues } from '@portico/jobs';

/** What a request needs of a delivery: its row (still delivered in that generation) and its instance. */
export type Delivered = Pick<ClaimedExport, 'exportPk' | 'generation' | 'sopClassUid' | 'sopInstanceUid'>;

export interface CommitmentOptions {
  readonly db: Db;
  readonly queues: JobQueues;
  readonly log: Logger;
  readonly ourAeTitle: string;
  readonly maxPduLength: number;
  readonly timeoutMs: number;
  readonly tls?: ScuTls;
  /** How long the N-ACTION's association waits for the report on it. */
  readonly associationWaitMs: number;
  readonly maxResends: number;
  readonly retry: { readonly attempts: number; readonly backoffMs: number };
}

export class CommitmentRequester {
  private readonly opts: CommitmentOptions;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(opts: CommitmentOptions) {
    this.opts = opts;
  }

  /** Asks `node` to commit the deliveries of a batch it took; returns at once (see {@link settled}). */
  request(node: DicomNode, delivered: readonly Delivered[]): void {
    if (delivered.length === 0) return;
    const p = this.run(node, delivered).catch((err: unknown) =>
      this.opts.log.warn({ destination: node.aeTitle, err: (err as Error).message }, 'storage commitment request failed'),
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Resolves when every request started so far is done (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** The request proper; resolves with the Transaction UID (undefined: nothing was still delivered). */
  async run(node: DicomNode, delivered: readonly Delivered[]): Promise<string | undefined> {
    const { db, log } = this.opts;
    const transactionUid = newTransactionUid();
    const marked = new Set(await markCommitmentRequested(db, transactionUid, delivered));
    const refs = delivered.filter((d) => marked.has(d.sopInstanceUid)).map((d) => ({ sopClassUid: d.sopClassUid, sopInstanceUid: d.sopInstanceUid }));
    if (refs.length === 0) return undefined;
    const recorder: ReportRecorderDeps = {
      db,
      queues: this.opts.queues,
      log: log.child({ destination: node.aeTitle }),
      maxResends: this.opts.maxResends,
      retry: this.opts.retry,
    };
    const outcome = await requestStorageCommitment(
      {
        host: node.host,
        port: node.port,
        // Our own AE even when the deliveries impersonated their senders: the report comes back to us.
        callingAeTitle: node.callingAeTitle ?? this.opts.ourAeTitle,
        calledAeTitle: node.aeTitle,
        maxPduLength: this.opts.maxPduLength,
        timeoutMs: this.opts.timeoutMs,
        waitMs: this.opts.associationWaitMs,
        ...(node.tls ? { tls: this.opts.tls ?? {} } : {}),
      },
      { transactionUid, refs },
      (report) => recordReport(recorder, report),
    );
    if (outcome.outcome === 'refused') {
      await markCommitmentRefused(db, transactionUid, outcome.detail);
      log.warn({ destination: node.aeTitle, transactionUid, instances: refs.length, reason: outcome.detail }, 'storage commitment refused');
    } else {
      log.info({ destination: node.aeTitle, transactionUid, instances: refs.length, reportedOnAssociation: outcome.reported }, 'storage commitment requested');
    }
    return transactionUid;
  }
}
