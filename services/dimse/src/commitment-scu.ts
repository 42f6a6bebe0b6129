/**
 * Storage Commitment Push Model SCU (PS3.4 Annex J): we ask a destination to take responsibility for
 * instances we delivered, and read its answer.
 *
 * The N-ACTION (action type 1, PS3.4 Table J.3-1) goes on an association of its own, proposing only the
 * Storage Commitment SOP class: the C-STORE associations of the export keep their raw send path and
 * their pool, and PS3.4 J.3.3 lets the request travel on any association. After the N-ACTION-RSP the
 * association stays open up to `waitMs` for the N-EVENT-REPORT (event type 1: all committed, 2: some
 * failed, PS3.4 Table J.3-2), which an SCP may send on it; an SCP that reports later opens a new
 * association to our DIMSE SCP (Orthanc always does), which records it by Transaction UID.
 *
 * A destination that accepts no Storage Commitment presentation context, rejects the association or
 * answers the N-ACTION with a failure status has refused: the caller records that, nothing is retried.
 */
import { randomUUID } from 'node:crypto';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import { readRefItem, refItem, STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH, type CommitRef, type CommitRequest } from './commitment.ts';
import { keyString, type JsonDataset, type JsonElement } from './find-match.ts';
import { connectTo, RawNetwork, type ScuOptions } from './store-scu.ts';

const { Dataset } = dimse;
const { Association } = dimse.association;
const { NActionRequest } = dimse.requests;
const { NEventReportResponse } = dimse.responses;
const { PresentationContextResult } = dimse.constants;
const { DicomMetaDictionary } = dcmjs.data;

type NEventReportRequest = InstanceType<typeof dimse.requests.NEventReportRequest>;

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** A new Transaction UID: the UUID-derived form of PS3.5 §B.2. */
export function newTransactionUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

const ui = (v: string): JsonElement => ({ vr: 'UI', Value: [v] });

/** The N-ACTION-RQ data set (PS3.4 Table J.3-1): Transaction UID and Referenced SOP Sequence. */
export function commitmentRequestDataset(request: CommitRequest): JsonDataset {
  if (request.refs.length === 0) throw new Error('a storage commitment request references at least one instance');
  return {
    '00081195': ui(request.transactionUid),
    '00081199': { vr: 'SQ', Value: request.refs.map(refItem) },
  };
}

/** What an N-EVENT-REPORT of the Storage Commitment Push Model says. */
export interface CommitmentReport {
  readonly transactionUid: string;
  /** 1: every instance committed, 2: some failed (PS3.4 Table J.3-2). */
  readonly eventTypeId: number;
  readonly committed: readonly CommitRef[];
  readonly failed: ReadonlyArray<CommitRef & { readonly reason: number }>;
}

/**
 * Reads an N-EVENT-REPORT data set (PS3.4 Table J.3-2). A failed item without Failure Reason counts as
 * 0x0110 (processing failure). @throws Error when the event type is not 1 or 2 or there is no Transaction UID
 */
export function parseCommitmentReport(eventTypeId: number, ds: JsonDataset): CommitmentReport {
  if (eventTypeId !== 1 && eventTypeId !== 2) throw new Error(`event type ${eventTypeId} is not a storage commitment result (1 or 2)`);
  const transactionUid = keyString(ds['00081195']).trim();
  if (!transactionUid) throw new Error('no Transaction UID (0008,1195)');
  const items = (tag: string): JsonDataset[] => (ds[tag]?.Value ?? []) as JsonDataset[];
  const committed = items('00081199').map(readRefItem);
  const failed = items('00081198').map((item) => {
    const reason = Number(item['00081197']?.Value?.[0]);
    return { ...readRefItem(item), reason: Number.isInteger(reason) ? reason : 0x0110 };
  });
  if ([...committed, ...failed].some((r) => !r.sopInstanceUid)) throw new Error('a referenced item lacks its SOP Instance UID');
  return { transactionUid, eventTypeId, committed, failed };
}

export type CommitmentRequestOutcome =
  | { readonly outcome: 'requested'; /** the report when it came on this association */ readonly reported: boolean }
  | { readonly outcome: 'refused'; readonly detail: string };

const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Sends the N-ACTION on a new association and waits up to `waitMs` for the N-EVENT-REPORT on it.
 * `onReport` records a report and returns the N-EVENT-REPORT-RSP status to answer with (0x0000 once it
 * is recorded, 0x0110 when it could not be). Never rejects: an unreachable destination is a refusal too.
 */
export async function requestStorageCommitment(
  opts: ScuOptions & { readonly waitMs: number },
  request: CommitRequest,
  onReport: (report: CommitmentReport) => Promise<number>,
): Promise<CommitmentRequestOutcome> {
  let dataset: JsonDataset;
  try {
    dataset = commitmentRequestDataset(request);
  } catch (err) {
    return { outcome: 'refused', detail: (err as Error).message };
  }
  const association = new Association(opts.callingAeTitle, opts.calledAeTitle);
  association.setMaxPduLength(opts.maxPduLength);
  const pcId = association.addPresentationContext(STORAGE_COMMITMENT_PUSH);
  association.addTransferSyntaxToPresentationContext(pcId, EXPLICIT_LE);
  association.addTransferSyntaxToPresentationContext(pcId, IMPLICIT_LE);
  const socket = connectTo(opts);
  // dcmjs-dimse aborts an association quiet for longer than pduTimeout: the report wait must fit in it.
  const network = new RawNetwork(socket, {
    connectTimeout: opts.timeoutMs,
    associationTimeout: opts.timeoutMs,
    pduTimeout: opts.timeoutMs + opts.waitMs,
  });
  let reported = false;
  let accepted = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  try {
    const action = await new Promise<{ status: number; comment?: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${opts.calledAeTitle} did not answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', fail);
      void closed.then(() => fail(new Error('the association closed before the N-ACTION response')));
      network.on('networkError', fail);
      network.on('associationRejected', () => fail(new Error(`${opts.calledAeTitle} rejected the association`)));
      network.on('connect', () => network.sendAssociationRequest(association));
      network.on('associationAccepted', () => {
        accepted = true;
        const pc = network.association!.getPresentationContext(pcId);
        if (pc.getResult() !== PresentationContextResult.Accept) {
          fail(new Error(`${opts.calledAeTitle} accepted no Storage Commitment Push Model presentation context`));
          return;
        }
        const ts = pc.getAcceptedTransferSyntaxUid() ?? IMPLICIT_LE;
        const nAction = new NActionRequest(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, 1);
        nAction.setDataset(new Dataset(DicomMetaDictionary.naturalizeDataset(dataset), ts));
        nAction.on('response', (r: { getStatus(): number; getErrorComment(): string | undefined }) => {
          clearTimeout(timer);
          const comment = r.getErrorComment()?.trim();
          resolve({ status: r.getStatus(), ...(comment ? { comment } : {}) });
        });
        network.sendRequests([nAction]);
      });
    });
    // N-ACTION status (PS3.4 J.3.3.1.2 / PS3.7 §10.1.4.1.10): 0x0000 success; anything else, failure.
    if (action.status !== 0x0000)
      return {
        outcome: 'refused',
        detail: `${opts.calledAeTitle} answered the N-ACTION with status ${hex(action.status)}${action.comment ? `: ${action.comment}` : ''}`,
      };
    if (opts.waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.waitMs);
        void closed.then(() => {
          clearTimeout(timer);
          resolve();
        });
        network.on('nEventReportRequest', (req: NEventReportRequest, respond: (r: InstanceType<typeof NEventReportResponse>) => void) => {
          const rsp = NEventReportResponse.fromRequest(req);
          let report: CommitmentReport;
          try {
            report = parseCommitmentReport(req.getEventTypeId(), DicomMetaDictionary.denaturalizeDataset(req.getDataset()?.getElements() ?? {}) as JsonDataset);
          } catch (err) {
            // PS3.7 §10.1.1.1.8: 0x0113 no such event type, 0x0115 invalid argument value.
            rsp.setStatus(/event type/.test((err as Error).message) ? 0x0113 : 0x0115);
            rsp.setErrorComment((err as Error).message.slice(0, 64));
            respond(rsp);
            return;
          }
          void onReport(report)
            .catch(() => 0x0110)
            .then((status) => {
              rsp.setStatus(status);
              respond(rsp);
              if (report.transactionUid === request.transactionUid) {
                reported = true;
                clearTimeout(timer);
                resolve();
              }
            });
        });
      });
    }
    return { outcome: 'requested', reported };
  } catch (err) {
    return { outcome: 'refused', detail: (err as Error).message };
  } finally {
    if (!socket.destroyed) {
      network.on('associationReleaseResponse', () => socket.end());
      try {
        if (accepted) network.sendAssociationReleaseRequest();
        else socket.destroy();
      } catch {
        socket.destroy();
      }
      const timer = setTimeout(() => socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
    }
  }
}
