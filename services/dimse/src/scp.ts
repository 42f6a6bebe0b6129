/**
 * The DIMSE SCP: accepts TCP connections, runs one dcmjs-dimse `Scp` per association, and drains on
 * shutdown.
 *
 * dcmjs-dimse's own `Server` destroys every socket on close and listens on all interfaces only; we keep
 * the connection loop here so shutdown can stop accepting, let in-flight associations finish within the
 * grace period, and only then abort the rest. Every socket gets `setNoDelay(true)`: without it each
 * C-STORE-RSP waits out Nagle + delayed ACK (~35-40 ms per instance on loopback).
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import type { PorticoConfig } from '@portico/config';
import type { Logger } from '@portico/logging';
import type { ObjectStore } from '@portico/storage';
import type { JobQueues } from '@portico/jobs';
import { listDbNodes, type Db } from '@portico/db';
import { decideContext, serviceOf } from './presentation.ts';
import { runFind, PATIENT_ROOT_FIND, STUDY_ROOT_FIND } from './c-find.ts';
import { converter, runMove, runRetrieve, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET, type RetrieveOutcome, type SubOperationCounts } from './c-move.ts';
import { EXPLICIT_LE, sendOnNewAssociation, storeResponseOf, writeStoreRequest } from './store-scu.ts';
import { startWorklist, parseUpstream, MWL_FIND } from './worklist.ts';
import { STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH, checkCommitment, eventReport, parseCommitRequest, recordReport } from './commitment.ts';
import { parseCommitmentReport } from './commitment-scu.ts';
import { loadNodes, findNode, mergeNodes, nodeFromDbRow, type DicomNode } from '@portico/config';
import type { JsonDataset } from './find-match.ts';
import { StoreSink } from './c-store.ts';
import { PduReader } from './pdu-reader.ts';
import { dimseMessagePdus, encodeCommandSet } from './command-set.ts';
import { decodeIdentifier, encodeIdentifier } from './identifier.ts';
import { PDataRouter, type DimseCommand } from './p-data.ts';
import {
  A_ASSOCIATE_RQ,
  A_RELEASE_RP,
  A_RELEASE_RQ,
  DICOM_APPLICATION_CONTEXT,
  encodeAbort,
  encodeAssociateAc,
  encodeAssociateRj,
  parseAssociateRq,
  toDimseAssociation,
  type AssociateRq,
} from './association.ts';
import { PORTICO_IMPLEMENTATION_CLASS_UID, PORTICO_IMPLEMENTATION_VERSION_NAME } from '@portico/dicom';

const { Scp, Dataset, log: dimseLog } = dimse;
const { CEchoResponse, CStoreResponse, CFindResponse, CMoveResponse, CGetResponse, NActionResponse, NEventReportResponse } = dimse.responses;
const { NEventReportRequest } = dimse.requests;
const { DicomMetaDictionary } = dcmjs.data;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason, AbortSource, AbortReason, Status } = dimse.constants;

type DimseAssociation = InstanceType<typeof dimse.association.Association>;
type DimsePresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type CStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type CEchoRequest = InstanceType<typeof dimse.requests.CEchoRequest>;
type CFindRequest = InstanceType<typeof dimse.requests.CFindRequest>;
type CMoveRequest = InstanceType<typeof dimse.requests.CMoveRequest>;
type CGetRequest = InstanceType<typeof dimse.requests.CGetRequest>;
type NActionRequest = InstanceType<typeof dimse.requests.NActionRequest>;
type NEventReportRequestT = InstanceType<typeof dimse.requests.NEventReportRequest>;
type CCancelRequest = InstanceType<typeof dimse.requests.CCancelRequest>;

/** A message dcmjs-dimse sends (request or response): its command set and optional data set. */
interface DimseMessage {
  getCommandDataset(): { getElements(): Record<string, unknown> };
  getDataset(): { getDenaturalizedDataset(options: unknown, nameMap: unknown): Buffer } | undefined;
}

/** The parts of dcmjs-dimse 0.3's Network that the PDU reader hook drives (see the constructor). */
interface DimseNetworkInternals {
  lastPduTime: number | undefined;
  /** Sends one DIMSE message on a presentation context (what the request callbacks call). */
  _sendDimse(message: { context: DimsePresentationContext; command: unknown }): void;
  statistics: { addBytesReceived(n: number): void; addBytesSent(n: number): void };
  _processPdu(pdu: Buffer): Promise<void>;
  _reset(): void;
}

export interface DimseDeps {
  readonly config: PorticoConfig;
  readonly log: Logger;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  /** The index C-FIND answers from. */
  readonly db: Db;
  /** Accept calling AE titles that are not in the nodes file (standalone's development default). */
  readonly allowUnknownAe?: boolean;
}

/** Pending C-FIND responses buffered on the socket before the result stream waits for 'drain'. */
const FIND_WRITE_HIGH_WATER = 256 * 1024;
/** C-FIND-RQ and C-FIND-RSP command fields (PS3.7 Table E.1-1). */
const C_FIND_RQ = 0x0020;
const C_FIND_RSP = 0x8020;

export interface DimseServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** The TLS port actually bound, when DIMSE over TLS is on. */
  readonly tlsPort: number | undefined;
  /** Number of open associations. */
  activeAssociations(): number;
  /** Stops accepting, waits up to graceMs for associations to end, then aborts the rest. */
  close(graceMs: number): Promise<void>;
}

/** Starts listening; resolves once bound. */
export async function startDimseServer(deps: DimseDeps): Promise<DimseServer> {
  const { config, log } = deps;
  // dcmjs-dimse writes every A-ASSOCIATE-AC from its process-wide Implementation settings: it overwrites
  // the association's Implementation Class UID and Version Name with them, and caps our maximum PDU length
  // with theirs (262144). Portico is the only user of dcmjs-dimse in the process, so they become ours.
  dimse.Implementation.setImplementationClassUid(PORTICO_IMPLEMENTATION_CLASS_UID);
  dimse.Implementation.setImplementationVersion(PORTICO_IMPLEMENTATION_VERSION_NAME);
  dimse.Implementation.setMaxPduLength(config.dimse.maxPduLength);
  // The known nodes: the nodes file (a bad file stops the start here) plus those added through the admin
  // API, reloaded every dimse.nodesReloadMs (a failed reload keeps the last list).
  const fileNodes = loadNodes(config.dimse.nodesFile);
  let nodes: DicomNode[] = fileNodes;
  const reloadNodes = async (): Promise<void> => {
    try {
      const fromDb = (await listDbNodes(deps.db)).flatMap((row) => {
        try {
          return [nodeFromDbRow(row)];
        } catch (err) {
          log.warn({ aeTitle: row.aeTitle, err: (err as Error).message }, 'ignoring an invalid node from the database');
          return [];
        }
      });
      nodes = mergeNodes(fileNodes, fromDb);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'nodes reload failed; keeping the last list');
    }
  };
  await reloadNodes();
  const nodesTimer = setInterval(() => void reloadNodes(), config.dimse.nodesReloadMs);
  nodesTimer.unref();
  // What we present and trust on associations we open to nodes listed with `tls: true`.
  const clientTls = {
    ...(config.dimse.tlsCaFile ? { ca: readFileSync(config.dimse.tlsCaFile) } : {}),
    ...(config.dimse.tlsCertFile ? { cert: readFileSync(config.dimse.tlsCertFile) } : {}),
    ...(config.dimse.tlsKeyFile ? { key: readFileSync(config.dimse.tlsKeyFile) } : {}),
  };
  const worklist = config.worklist.upstream
    ? startWorklist({
        db: deps.db,
        log: log.child({ service: 'worklist' }),
        upstream: parseUpstream(config.worklist.upstream),
        aeTitle: config.dimse.aeTitle,
        timeoutMs: config.dimse.scuTimeoutMs,
        refreshIntervalMs: config.worklist.refreshIntervalMs,
        cacheTtlMs: config.worklist.cacheTtlMs,
      })
    : undefined;
  // dcmjs-dimse logs every PDU at info through loglevel; our own logs say what matters.
  dimseLog.setLevel('silent');
  const sockets = new Set<net.Socket>();
  /** Open associations per calling AE title (for dimse.maxAssociationsPerAe). */
  const perAe = new Map<string, number>();
  const perConnection = new WeakMap<net.Socket, { scp: InstanceType<typeof Scp> }>();

  class PorticoScp extends Scp {
    association: DimseAssociation | undefined;
    readonly assocId = randomUUID().slice(0, 8);
    /** The association's logger, made on first use (a pino child costs ~30 µs; most associations log nothing at warn). */
    private alogBindings: Record<string, string> = { assocId: this.assocId };
    private alogChild: Logger | undefined;
    get alog(): Logger {
      return (this.alogChild ??= log.child(this.alogBindings));
    }
    /** What the requester asked for in its A-ASSOCIATE-RQ (read in onAssociateRq). */
    rq: AssociateRq | undefined;
    readonly sock: net.Socket;
    /** The raw C-STORE receive path (p-data.ts); every other P-DATA-TF goes on to dcmjs-dimse. */
    readonly router: PDataRouter;
    /** The C-GET sub-operation whose C-STORE-RSP the PDU reader is waiting for. */
    awaitingStoreRsp: { messageId: number; resolve: (r: { status: number }) => void } | undefined;
    subOpMessageId = 0;
    /** Set once the peer asked for release: nothing more may be sent on this association. */
    released = false;
    /** The calling AE title this association counts against (per-AE limit). */
    countedAe: string | undefined;
    /** Message IDs of C-FIND requests a C-CANCEL asked to stop. */
    readonly cancelled = new Set<number>();

    constructor(socket: net.Socket, opts: ConstructorParameters<typeof Scp>[1]) {
      super(socket, opts);
      this.sock = socket;
      // dcmjs-dimse defaults this to {}, and any name map makes it merge dcmjs's whole dictionary into a
      // new object for every data set it writes (~4 ms per C-FIND response in a profile); without one it
      // uses the dictionary as is.
      (this as unknown as { datasetNameMap: unknown }).datasetNameMap = undefined;
      // Replace dcmjs-dimse's PDU accumulator (see pdu-reader.ts) with one that copies each PDU at most
      // once. What its 'data' handler did is repeated here: count bytes, stamp the PDU time, process.
      const internals = this as unknown as DimseNetworkInternals;
      this.router = new PDataRouter({
        forward: (pdu) => void internals._processPdu(pdu),
        beginStore: (pcId, command) => this.beginStore(pcId, command),
        takeDataSet: (pcId, command) => this.takeFind(pcId, command),
        send: (pdu) => {
          if (socket.destroyed || !socket.writable) return;
          socket.write(pdu);
          internals.statistics.addBytesSent(pdu.length);
        },
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        abort: (reason) => {
          this.alog.warn({ reason }, 'association aborted: protocol error on the C-STORE path');
          try {
            // PS3.8 §9.3.8: A-P-ABORT, service provider, unexpected PDU parameter.
            this.sendAbort(AbortSource.ServiceProvider, AbortReason.UnexpectedPduParameter);
          } finally {
            socket.destroy();
          }
        },
      });
      socket.removeAllListeners('data');
      const onPdu = (pdu: Buffer): void => {
        internals.lastPduTime = Date.now();
        // A C-GET sub-operation's C-STORE-RSP: read here, not by dcmjs-dimse (see cGetRequest).
        const waiting = this.awaitingStoreRsp;
        if (waiting) {
          const rsp = storeResponseOf(pdu);
          if (rsp && rsp.messageIdBeingRespondedTo === waiting.messageId) {
            this.awaitingStoreRsp = undefined;
            waiting.resolve({ status: rsp.status });
            return;
          }
        }
        const type = pdu[0];
        if (type === 0x04 && this.association) {
          this.router.onPData(pdu);
          return;
        }
        if (type === A_ASSOCIATE_RQ) {
          this.onAssociateRq(pdu);
          return;
        }
        // A-RELEASE-RQ or A-ABORT in the middle of a data set: the partial object is dropped.
        if (type === A_RELEASE_RQ || type === 0x07) this.router.close('association ended during C-STORE');
        if (type === A_RELEASE_RQ && this.association) {
          this.associationReleaseRequested();
          return;
        }
        void internals._processPdu(pdu);
      };
      const reader = new PduReader(
        onPdu,
        (err) => {
          internals._reset();
          (this as unknown as { emit(event: string, err: Error): void }).emit('networkError', err);
        },
        // P-DATA-TF PDUs as the socket chunks they span (no copy): the C-STORE data set path walks them.
        (parts) => {
          internals.lastPduTime = Date.now();
          if (this.awaitingStoreRsp || !this.association) {
            onPdu(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
            return;
          }
          this.router.onPData(parts);
        },
      );
      socket.on('data', (chunk: Buffer) => {
        internals.statistics.addBytesReceived(chunk.length);
        reader.push(chunk);
      });
    }

    /** Presentation context pcId with its transfer syntax, when it exists and was accepted. */
    acceptedContext(pcId: number): { pc: DimsePresentationContext; transferSyntaxUid: string } | undefined {
      let pc: DimsePresentationContext;
      try {
        pc = this.association!.getPresentationContext(pcId);
      } catch {
        return undefined;
      }
      const transferSyntaxUid = pc.getAcceptedTransferSyntaxUid();
      return pc.getResult() === PresentationContextResult.Accept && transferSyntaxUid ? { pc, transferSyntaxUid } : undefined;
    }

    /** The sink for a C-STORE-RQ's data set, on an accepted presentation context only. */
    beginStore(pcId: number, command: { affectedSopClassUid: string; affectedSopInstanceUid: string }): StoreSink | undefined {
      const accepted = this.acceptedContext(pcId);
      if (!accepted) return undefined;
      const { transferSyntaxUid } = accepted;
      const sink = new StoreSink(
        {
          store: deps.store,
          queues: deps.queues,
          log: this.alog,
          callingAeTitle: this.association?.getCallingAeTitle().trim() ?? '',
          calledAeTitle: this.association?.getCalledAeTitle().trim() ?? '',
        },
        { sopClassUid: command.affectedSopClassUid, sopInstanceUid: command.affectedSopInstanceUid, transferSyntaxUid },
      );
      return sink;
    }

    /** What the requester can receive (0: no limit); PDUs we send never exceed it. */
    peerMaxPdu = 16384;

    _sendPDataTF(message: DimseMessage, pcId: number): void {
      // The command set is written directly (command-set.ts: dcmjs took ~1.2 ms per response); the data
      // set, if any, still by dcmjs. dcmjs-dimse passes the association's max PDU length, which is ours by
      // now (see associationRequested): PDUs are cut to the requester's.
      const command = encodeCommandSet(message.getCommandDataset().getElements());
      if (!command) {
        const base = (Scp.prototype as unknown as { _sendPDataTF: (c: unknown, p: number, m: number) => void })._sendPDataTF;
        base.call(this, message, pcId, this.peerMaxPdu);
        return;
      }
      const self = this as unknown as { datasetWriteOptions: unknown; datasetNameMap: unknown };
      const dataset = this.encodedDatasets.get(message) ?? message.getDataset()?.getDenaturalizedDataset(self.datasetWriteOptions, self.datasetNameMap);
      this.writeMessage(pcId, command, dataset);
    }

    /** Writes one DIMSE message: its command set and data set, if any, in P-DATA-TF PDUs. */
    writeMessage(pcId: number, command: Buffer, dataset: Uint8Array | undefined): void {
      const self = this as unknown as DimseNetworkInternals;
      // Messages sent in one turn of the event loop leave in one write: a C-FIND's last pending response
      // and its final response, one system call (and one loopback round of the peer) instead of two.
      if (!this.corkedUntilTick) {
        this.corkedUntilTick = true;
        this.sock.cork();
        process.nextTick(() => {
          this.corkedUntilTick = false;
          this.sock.uncork();
        });
      }
      for (const pdu of dimseMessagePdus(pcId, this.peerMaxPdu, command, dataset)) {
        this.sock.write(pdu);
        self.statistics.addBytesSent(pdu.length);
      }
    }

    /** Set while the socket is corked until the next tick (see _sendPDataTF). */
    corkedUntilTick = false;
    /** Data sets of outgoing messages already written (C-FIND identifiers, see cFindRequest). */
    readonly encodedDatasets = new WeakMap<object, Buffer>();

    /**
     * Patient Root and Study Root C-FIND requests are read and answered here, not by dcmjs-dimse: the
     * identifier is read directly (identifier.ts decodeIdentifier, dcmjs for anything but plain strings)
     * and every response written directly. dcmjs-dimse's path — its parse of the command and the
     * identifier through memory streams and dcmjs, request and response objects, an async event emitter
     * — was ~0.25 ms of a warm ~0.9 ms of CPU per query, and more in a process that has not run it much.
     * Anything else (Modality Worklist, a context that was not accepted) goes to dcmjs-dimse as before.
     */
    takeFind(pcId: number, command: DimseCommand): ((dataSet: Buffer) => void) | undefined {
      const sopClassUid = command.affectedSopClassUid;
      if (command.commandField !== C_FIND_RQ || (sopClassUid !== PATIENT_ROOT_FIND && sopClassUid !== STUDY_ROOT_FIND)) return undefined;
      const accepted = this.acceptedContext(pcId);
      if (!accepted || accepted.pc.getAbstractSyntaxUid() !== sopClassUid) return undefined;
      const ts = accepted.transferSyntaxUid;
      return (bytes) => {
        let identifier = decodeIdentifier(bytes, ts);
        if (!identifier) {
          try {
            const readOptions = (this as unknown as { datasetReadOptions: unknown }).datasetReadOptions;
            identifier = DicomMetaDictionary.denaturalizeDataset(new Dataset(bytes as never, ts, readOptions as never).getElements()) as JsonDataset;
          } catch (err) {
            // What dcmjs-dimse did with a data set it could not read.
            (this as unknown as { emit(event: string, err: Error): void }).emit('networkError', err as Error);
            return;
          }
        }
        const send = (status: number, match?: JsonDataset, errorComment?: string): void =>
          this.sendFindResponse(pcId, {
            messageId: command.messageId,
            sopClassUid,
            ts,
            status,
            ...(match ? { identifier: match } : {}),
            ...(errorComment ? { errorComment } : {}),
          });
        this.find(command.messageId, sopClassUid === PATIENT_ROOT_FIND ? 'patient' : 'study', identifier, send);
      };
    }

    /** One C-FIND-RSP (PS3.7 §9.3.2.2), written directly. */
    sendFindResponse(
      pcId: number,
      r: { messageId: number; sopClassUid: string; ts: string; status: number; identifier?: JsonDataset; errorComment?: string },
    ): void {
      if (this.sock.destroyed || !this.sock.writable) return;
      let dataset: Uint8Array | undefined;
      if (r.identifier) {
        dataset = encodeIdentifier(r.identifier, r.ts);
        if (!dataset) {
          const self = this as unknown as { datasetWriteOptions: never; datasetNameMap: never };
          dataset = new Dataset(DicomMetaDictionary.naturalizeDataset(r.identifier), r.ts).getDenaturalizedDataset(
            self.datasetWriteOptions,
            self.datasetNameMap,
          );
        }
      }
      const command = encodeCommandSet({
        AffectedSOPClassUID: r.sopClassUid,
        CommandField: C_FIND_RSP,
        MessageIDBeingRespondedTo: r.messageId,
        // PS3.7 Table E.1-1: 0x0101 means no data set; dcmjs-dimse writes 0x0202 for one.
        CommandDataSetType: dataset ? 0x0202 : 0x0101,
        Status: r.status,
        ...(r.errorComment ? { ErrorComment: r.errorComment.replace(/[^\x20-\x7e]/g, '?') } : {}),
      });
      this.writeMessage(pcId, command!, dataset);
    }

    /**
     * Runs a Patient Root or Study Root C-FIND: `send` each match as a pending response (waiting for the
     * socket to drain past the high-water mark), then the final status.
     */
    find(
      messageId: number,
      model: 'patient' | 'study',
      identifier: JsonDataset,
      send: (status: number, match?: JsonDataset, errorComment?: string) => void,
    ): void {
      const started = performance.now();
      void runFind(
        {
          db: deps.db,
          aeTitle: config.dimse.aeTitle,
          cancelled: () => this.cancelled.has(messageId),
          onMatch: async (match) => {
            send(0xff00, match);
            if (this.sock.writableLength > FIND_WRITE_HIGH_WATER && !this.sock.destroyed) await once(this.sock, 'drain');
          },
        },
        model,
        identifier,
      )
        .then((outcome) => {
          this.cancelled.delete(messageId);
          send(outcome.status, undefined, 'errorComment' in outcome ? outcome.errorComment : undefined);
          // Keys and values of the identifier are patient data: only the outcome is logged.
          if (log.isLevelEnabled('info')) {
            const ms = Math.round(performance.now() - started);
            this.alog.info({ model, matches: outcome.matches, status: `0x${outcome.status.toString(16)}`, ms }, 'C-FIND done');
          }
        })
        .catch((err: unknown) => this.alog.error({ err: (err as Error).message }, 'C-FIND response could not be sent'));
    }

    /** Writes a PDU of the association's own (A-ASSOCIATE-AC/RJ, A-RELEASE-RP) straight to the socket. */
    sendRawPdu(pdu: Buffer): void {
      if (this.sock.destroyed || !this.sock.writable) return;
      this.sock.write(pdu);
      (this as unknown as DimseNetworkInternals).statistics.addBytesSent(pdu.length);
    }

    /** A-ASSOCIATE-RJ (PS3.8 Table 9-21). */
    reject(result: number, source: number, reason: number): void {
      this.sendRawPdu(encodeAssociateRj(result, source, reason));
    }

    /**
     * An A-ASSOCIATE-RQ, read here (association.ts) rather than by dcmjs-dimse. A second one on an
     * established association, or one that cannot be read, is answered with an A-ABORT (PS3.8 §9.3.8,
     * service provider, unexpected / invalid PDU parameter).
     */
    onAssociateRq(pdu: Buffer): void {
      let rq: AssociateRq;
      try {
        if (this.association) throw new Error('A-ASSOCIATE-RQ on an established association');
        rq = parseAssociateRq(pdu);
      } catch (err) {
        this.alog.warn({ err: (err as Error).message }, 'association aborted: unreadable or unexpected A-ASSOCIATE-RQ');
        this.sendRawPdu(encodeAbort(AbortSource.ServiceProvider, this.association ? AbortReason.UnexpectedPdu : AbortReason.InvalidPduParameter));
        this.sock.destroy();
        return;
      }
      this.rq = rq;
      const internals = this as unknown as { association: DimseAssociation; logId: string };
      if ((rq.protocolVersion & 1) === 0) {
        this.alog.warn({ protocolVersion: rq.protocolVersion }, 'association rejected: protocol version not supported');
        // PS3.8 Table 9-21: permanent, service-provider (ACSE), protocol-version-not-supported.
        this.reject(RejectResult.Permanent, RejectSource.ServiceProviderAcse, RejectReason.ProtocolVersionNotSupported);
        return;
      }
      if (rq.applicationContextName !== DICOM_APPLICATION_CONTEXT) {
        this.alog.warn('association rejected: application context name not supported');
        this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.ApplicationContextNotSupported);
        return;
      }
      const association = toDimseAssociation(rq);
      internals.association = association;
      internals.logId = rq.callingAeTitle;
      this.associationRequested(association);
    }

    override associationRequested(association: DimseAssociation): void {
      this.association = association;
      const callingAet = association.getCallingAeTitle().trim();
      const calledAet = association.getCalledAeTitle().trim();
      this.alogBindings = { assocId: this.assocId, callingAet, calledAet };
      this.alogChild = undefined;
      if (sockets.size > config.dimse.maxAssociations) {
        this.alog.warn({ limit: config.dimse.maxAssociations }, 'association rejected: limit reached');
        // PS3.8 Table 9-21: transient, service-provider (presentation), local-limit-exceeded.
        this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded);
        return;
      }
      const node = findNode(nodes, callingAet);
      if (!node && !deps.allowUnknownAe) {
        this.alog.warn('association rejected: calling AE title not a known node');
        // PS3.8 Table 9-21: permanent, service-user, calling-AE-title-not-recognized.
        this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeNotRecognized);
        return;
      }
      if ((perAe.get(callingAet) ?? 0) >= config.dimse.maxAssociationsPerAe) {
        this.alog.warn({ limit: config.dimse.maxAssociationsPerAe }, 'association rejected: per-AE limit reached');
        this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded);
        return;
      }
      perAe.set(callingAet, (perAe.get(callingAet) ?? 0) + 1);
      this.countedAe = callingAet;
      if (config.dimse.checkCalledAeTitle && calledAet !== config.dimse.aeTitle) {
        this.alog.warn('association rejected: called AE title not recognised');
        // PS3.8 Table 9-21: permanent, service-user, called-AE-title-not-recognized.
        this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized);
        return;
      }
      let accepted = 0;
      for (const { id } of association.getPresentationContexts()) {
        const pc: DimsePresentationContext = association.getPresentationContext(id);
        const decision = decideContext(pc.getAbstractSyntaxUid(), pc.getTransferSyntaxUids(), { worklist: worklist !== undefined });
        const service = serviceOf(pc.getAbstractSyntaxUid());
        // A known node may use only its listed services; storage contexts also serve C-GET (SCP role).
        const allowed = !node || (service !== undefined && (node.services.includes(service) || (service === 'store' && node.services.includes('get'))));
        if (decision.accept && !allowed) {
          pc.setResult(PresentationContextResult.RejectUser);
        } else if (decision.accept) {
          pc.setResult(PresentationContextResult.Accept, decision.transferSyntaxUid);
          accepted++;
        } else {
          pc.setResult(
            decision.reason === 'abstract-syntax'
              ? PresentationContextResult.RejectAbstractSyntaxNotSupported
              : PresentationContextResult.RejectTransferSyntaxesNotSupported,
          );
        }
      }
      // dcmjs-dimse keeps one max PDU length per association: the requester's (what it can receive) is
      // kept for what we send, ours goes into the A-ASSOCIATE-AC.
      this.peerMaxPdu = association.getMaxPduLength();
      association.setMaxPduLength(config.dimse.maxPduLength);
      const results = association.getPresentationContexts().map(({ id }) => {
        const pc = association.getPresentationContext(id);
        return { id, result: pc.getResult(), transferSyntaxUid: pc.getAcceptedTransferSyntaxUid() };
      });
      this.sendRawPdu(
        encodeAssociateAc(this.rq!, results, {
          maxPduLength: config.dimse.maxPduLength,
          implementationClassUid: PORTICO_IMPLEMENTATION_CLASS_UID,
          implementationVersionName: PORTICO_IMPLEMENTATION_VERSION_NAME,
        }),
      );
      if (log.isLevelEnabled('info')) this.alog.info({ contexts: results.length, accepted }, 'association accepted');
    }

    override associationReleaseRequested(): void {
      this.released = true;
      this.sendRawPdu(A_RELEASE_RP);
      if (log.isLevelEnabled('info')) this.alog.info('association released');
    }

    override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof CEchoResponse>) => void): void {
      const response = CEchoResponse.fromRequest(request);
      response.setStatus(Status.Success);
      callback(response);
    }

    override cFindRequest(request: CFindRequest, callback: (responses: Array<InstanceType<typeof CFindResponse>>) => void): void {
      const messageId = request.getMessageId();
      const model = request.getAffectedSopClassUid() === PATIENT_ROOT_FIND ? 'patient' : 'study';
      const requestDataset = request.getDataset();
      const ts = requestDataset?.getTransferSyntaxUid() ?? '1.2.840.10008.1.2';
      const started = performance.now();
      const context = this.association?.getAcceptedPresentationContextFromRequest(request);
      const internals = this as unknown as DimseNetworkInternals;
      const build = (status: number, identifier?: JsonDataset, errorComment?: string): InstanceType<typeof CFindResponse> => {
        const response = CFindResponse.fromRequest(request);
        response.setStatus(status);
        if (identifier) {
          // Written directly when it is plain strings (identifier.ts); the data set set here is then only
          // a placeholder that marks the response as carrying one.
          const bytes = encodeIdentifier(identifier, ts);
          response.setDataset(new Dataset(bytes ? {} : DicomMetaDictionary.naturalizeDataset(identifier), ts));
          if (bytes) this.encodedDatasets.set(response, bytes);
        }
        if (errorComment) response.setErrorComment(errorComment);
        return response;
      };
      // The callback may be called once (dcmjs-dimse's emitter enforces it): it carries the final
      // response; each pending one goes out on its own as the rows stream in.
      const respond = (status: number, identifier?: JsonDataset, errorComment?: string): void => callback([build(status, identifier, errorComment)]);
      let identifier: JsonDataset;
      try {
        identifier = DicomMetaDictionary.denaturalizeDataset(requestDataset?.getElements() ?? {}) as JsonDataset;
      } catch (err) {
        respond(0xa900, undefined, `identifier: ${(err as Error).message}`.slice(0, 64));
        return;
      }
      if (request.getAffectedSopClassUid() === MWL_FIND) {
        if (!worklist || !context) {
          respond(0xc001, undefined, 'no worklist service configured');
          return;
        }
        void worklist
          .find(identifier, async (item) => {
            internals._sendDimse({ context, command: build(0xff00, item) });
            if (this.sock.writableLength > FIND_WRITE_HIGH_WATER && !this.sock.destroyed) await once(this.sock, 'drain');
          })
          .then(
            ({ source, matches }) => {
              this.alog.info({ source, matches, ms: Math.round(performance.now() - started) }, 'worklist C-FIND done');
              respond(0x0000);
            },
            (err: unknown) => {
              this.alog.warn({ err: (err as Error).message }, 'worklist C-FIND failed');
              respond(0xa700, undefined, 'worklist unavailable');
            },
          );
        return;
      }
      this.find(messageId, model, identifier, (status, match, errorComment) => {
        if (status !== 0xff00) return respond(status, undefined, errorComment);
        if (!context) throw new Error('no accepted presentation context for the C-FIND request');
        internals._sendDimse({ context, command: build(0xff00, match) });
      });
    }

    /**
     * What C-MOVE and C-GET share (PS3.4 C.4.2, C.4.3): the identifier, a pending response with the
     * sub-operation counts after each sub-operation, C-CANCEL, and the final response with the Failed SOP
     * Instance UID List. `run` does the retrieve proper.
     */
    retrieveRequest<R extends InstanceType<typeof CMoveResponse> | InstanceType<typeof CGetResponse>>(
      kind: 'C-MOVE' | 'C-GET',
      request: CMoveRequest | CGetRequest,
      fromRequest: (request: never) => R,
      callback: (responses: R[]) => void,
      run: (identifier: JsonDataset, opts: { cancelled: () => boolean; onProgress: (counts: SubOperationCounts) => void }) => Promise<RetrieveOutcome>,
      logFields: Record<string, unknown> = {},
    ): void {
      const messageId = request.getMessageId();
      const context = this.association?.getAcceptedPresentationContextFromRequest(request);
      const internals = this as unknown as DimseNetworkInternals;
      const started = performance.now();
      const build = (status: number, counts: SubOperationCounts): R => {
        const response = fromRequest(request as never);
        response.setStatus(status);
        if (status !== 0x0000 || counts.remaining > 0) response.setRemaining(counts.remaining);
        response.setCompleted(counts.completed);
        response.setFailures(counts.failed);
        response.setWarnings(counts.warning);
        return response;
      };
      let identifier: JsonDataset;
      try {
        identifier = DicomMetaDictionary.denaturalizeDataset(request.getDataset()?.getElements() ?? {}) as JsonDataset;
      } catch {
        callback([build(0xa900, { remaining: 0, completed: 0, failed: 0, warning: 0 })]);
        return;
      }
      void run(identifier, {
        cancelled: () => this.cancelled.has(messageId),
        onProgress: (counts) => {
          if (context) internals._sendDimse({ context, command: build(0xff00, counts) });
        },
      })
        .then((outcome) => {
          this.cancelled.delete(messageId);
          this.alog.info(
            { ...logFields, status: `0x${outcome.status.toString(16)}`, ...outcome.counts, ms: Math.round(performance.now() - started) },
            `${kind} done`,
          );
          const response = build(outcome.status, outcome.counts);
          if (outcome.errorComment) response.setErrorComment(outcome.errorComment);
          if (outcome.failedUids.length > 0) {
            // Failed SOP Instance UID List (0008,0058), PS3.4 §C.4.2.1.3.2.
            const ts = request.getDataset()?.getTransferSyntaxUid() ?? '1.2.840.10008.1.2';
            response.setDataset(new Dataset({ FailedSOPInstanceUIDList: [...outcome.failedUids] }, ts));
          }
          callback([response]);
        })
        .catch((err: unknown) => this.alog.error({ err: (err as Error).message }, `${kind} response could not be sent`));
    }

    override cMoveRequest(request: CMoveRequest, callback: (responses: Array<InstanceType<typeof CMoveResponse>>) => void): void {
      const model = request.getAffectedSopClassUid() === PATIENT_ROOT_MOVE ? 'patient' : 'study';
      const destination = String((request.getCommandDataset() as unknown as { getElement(k: string): unknown }).getElement('MoveDestination') ?? '');
      const originator = { aeTitle: this.association?.getCallingAeTitle().trim() ?? '', messageId: request.getMessageId() };
      this.retrieveRequest(
        'C-MOVE',
        request,
        (r: CMoveRequest) => CMoveResponse.fromRequest(r),
        callback,
        (identifier, opts) =>
          runMove(
            {
              db: deps.db,
              store: deps.store,
              nodes,
              log: this.alog,
              aeTitle: config.dimse.aeTitle,
              maxPduLength: config.dimse.maxPduLength,
              timeoutMs: config.dimse.scuTimeoutMs,
              originator,
              clientTls,
              ...opts,
            },
            model,
            identifier,
            destination,
          ),
        { destination: destination.trim() },
      );
    }

    /**
     * C-GET: the C-STORE sub-operations go back on this association, on the storage presentation
     * contexts the requester proposed (with the SCP role) for the stored transfer syntax, else on an
     * Explicit VR Little Endian one, decompressed.
     */
    override cGetRequest(request: CGetRequest, callback: (responses: Array<InstanceType<typeof CGetResponse>>) => void): void {
      const model = request.getAffectedSopClassUid() === PATIENT_ROOT_GET ? 'patient' : 'study';
      const internals = this as unknown as DimseNetworkInternals;
      const closed = new Promise<never>((_, reject) => this.sock.once('close', () => reject(new Error('association closed'))));
      closed.catch(() => undefined);
      const convert = converter(deps.db, deps.store);
      this.retrieveRequest(
        'C-GET',
        request,
        (r: CGetRequest) => CGetResponse.fromRequest(r),
        callback,
        (identifier, opts) =>
          runRetrieve({ db: deps.db, store: deps.store, log: this.alog, ...opts }, model, identifier, async (_items, objects) => ({
            send: async (item) => {
              let pcId = this.storageContext(item.sopClassUid, item.transferSyntaxUid);
              let source: AsyncIterable<Uint8Array> | undefined;
              if (pcId === undefined) {
                // Converted only when the requester takes nothing else: Explicit VR Little Endian, decompressed.
                pcId = this.storageContext(item.sopClassUid, EXPLICIT_LE);
                if (pcId === undefined) return { status: 0x0122 };
                try {
                  source = await convert(item);
                } catch (err) {
                  this.alog.warn({ sopInstanceUid: item.sopInstanceUid, err: (err as Error).message }, 'C-GET: cannot convert');
                  return { status: 0xa702 };
                }
              }
              // Written and answered without dcmjs-dimse's request machinery, which parses every response
              // with dcmjs: the command set and the stored bytes go out directly, the response is caught by
              // the PDU reader.
              const messageId = (this.subOpMessageId = (this.subOpMessageId % 0xffff) + 1);
              const answered = new Promise<{ status: number }>((resolve) => (this.awaitingStoreRsp = { messageId, resolve }));
              const max = this.peerMaxPdu === 0 ? 4 * 1024 * 1024 : Math.min(this.peerMaxPdu, 4 * 1024 * 1024);
              await writeStoreRequest(this.sock, { pcId, maxPdvData: max - 6, messageId, object: item, store: objects, ...(source ? { source } : {}) }, () => {
                internals.lastPduTime = Date.now();
              });
              return Promise.race([answered, closed]);
            },
            close: async () => undefined,
          })),
      );
    }

    /**
     * Storage Commitment (commitment.ts): N-ACTION-RSP at once, N-EVENT-REPORT when the instances are
     * checked — on this association while it is open, else on a new one to the requester's node.
     */
    override nActionRequest(request: NActionRequest, callback: (response: InstanceType<typeof NActionResponse>) => void): void {
      const response = NActionResponse.fromRequest(request);
      if (request.getRequestedSopClassUid() !== STORAGE_COMMITMENT_PUSH || request.getActionTypeId() !== 1) {
        response.setStatus(request.getRequestedSopClassUid() !== STORAGE_COMMITMENT_PUSH ? 0x0118 : 0x0123); // no such SOP class / no such action
        callback(response);
        return;
      }
      let commit;
      try {
        commit = parseCommitRequest(DicomMetaDictionary.denaturalizeDataset(request.getDataset()?.getElements() ?? {}) as JsonDataset);
      } catch (err) {
        response.setStatus(0x0120); // missing attribute (PS3.7 C.4.2.1)
        response.setErrorComment((err as Error).message.slice(0, 64));
        callback(response);
        return;
      }
      response.setStatus(0x0000);
      callback(response);
      const callingAe = this.association?.getCallingAeTitle().trim() ?? '';
      const internals = this as unknown as { sendRequests(requests: unknown[]): void };
      void (async () => {
        const result = await checkCommitment(deps.db, commit.refs, config.dimse.commitmentWaitMs);
        const { eventTypeId, dataset } = eventReport(commit.transactionUid, result, config.dimse.aeTitle);
        const report = new NEventReportRequest(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, eventTypeId);
        report.setDataset(new Dataset(DicomMetaDictionary.naturalizeDataset(dataset), '1.2.840.10008.1.2'));
        const log = this.alog.child({ transactionUid: commit.transactionUid, committed: result.committed.length, failed: result.failed.length });
        if (!this.sock.destroyed && !this.released) {
          internals.sendRequests([report]);
          log.info('storage commitment reported on the requesting association');
          return;
        }
        const node = findNode(nodes, callingAe);
        if (!node) {
          log.warn('storage commitment: requester closed its association and is not in the nodes file; the report cannot be sent');
          return;
        }
        const status = await sendOnNewAssociation(
          {
            host: node.host,
            port: node.port,
            callingAeTitle: config.dimse.aeTitle,
            calledAeTitle: node.aeTitle,
            maxPduLength: config.dimse.maxPduLength,
            timeoutMs: config.dimse.scuTimeoutMs,
            ...(node.tls ? { tls: clientTls } : {}),
          },
          { abstractSyntaxUid: STORAGE_COMMITMENT_PUSH, scpRole: true },
          report,
        );
        log.info({ status: `0x${status.toString(16)}` }, 'storage commitment reported on a new association');
      })().catch((err: unknown) => this.alog.warn({ err: (err as Error).message }, 'storage commitment report failed'));
    }

    /**
     * The result of a storage commitment the export role asked for, reported on a new association by the
     * destination (PS3.4 J.3.3: it proposes the SCP role for the SOP class). Recorded by Transaction UID
     * on the deliveries to that destination (commitment.ts recordReport). Statuses (PS3.7 §10.1.1.1.8):
     * 0x0000 recorded, 0x0118 no such SOP class, 0x0113 no such event type, 0x0115 invalid argument value
     * (no Transaction UID, an item without its instance UID), 0x0110 processing failure (index unreachable).
     */
    override nEventReportRequest(request: NEventReportRequestT, callback: (response: InstanceType<typeof NEventReportResponse>) => void): void {
      const response = NEventReportResponse.fromRequest(request);
      if (request.getAffectedSopClassUid() !== STORAGE_COMMITMENT_PUSH) {
        response.setStatus(0x0118);
        callback(response);
        return;
      }
      let report;
      try {
        report = parseCommitmentReport(
          request.getEventTypeId(),
          DicomMetaDictionary.denaturalizeDataset(request.getDataset()?.getElements() ?? {}) as JsonDataset,
        );
      } catch (err) {
        response.setStatus(/event type/.test((err as Error).message) ? 0x0113 : 0x0115);
        response.setErrorComment((err as Error).message.slice(0, 64));
        callback(response);
        return;
      }
      const fromAe = this.association?.getCallingAeTitle().trim() ?? '';
      const recorder = {
        db: deps.db,
        queues: deps.queues,
        log: this.alog,
        maxResends: config.export.commitmentMaxResends,
        retry: { attempts: config.export.maxAttempts, backoffMs: config.export.backoffMs },
      };
      void recordReport(recorder, report, fromAe).then((status) => {
        response.setStatus(status);
        callback(response);
      });
    }

    /** The accepted presentation context for this storage SOP class in exactly this transfer syntax. */
    storageContext(sopClassUid: string, transferSyntaxUid: string): number | undefined {
      const association = this.association;
      if (!association) return undefined;
      return association.getPresentationContexts().find(({ id }) => {
        const pc = association.getPresentationContext(id);
        return (
          pc.getAbstractSyntaxUid() === sopClassUid &&
          pc.getResult() === PresentationContextResult.Accept &&
          pc.getAcceptedTransferSyntaxUid() === transferSyntaxUid
        );
      })?.id;
    }

    override cCancelRequest(request: CCancelRequest): void {
      this.cancelled.add(request.getMessageIdBeingRespondedTo());
    }

    /**
     * Not reached by a C-STORE with a data set (those take the raw path, p-data.ts); a C-STORE-RQ that
     * announces no data set is refused as before: 0xA700.
     */
    override cStoreRequest(request: CStoreRequest, callback: (response: InstanceType<typeof CStoreResponse>) => void): void {
      const response = CStoreResponse.fromRequest(request);
      response.setStatus(0xa700);
      callback(response);
    }
  }

  const onConnection = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    sockets.add(socket);
    const scp = new PorticoScp(socket, {
      associationTimeout: config.dimse.associationTimeoutMs,
      pduTimeout: config.dimse.idleTimeoutMs,
      connectTimeout: config.dimse.idleTimeoutMs,
    });
    perConnection.set(socket, { scp });
    // dcmjs-dimse reports timeouts and protocol errors as 'networkError' without closing the socket.
    scp.on('networkError', (err: Error) => {
      scp.alog.warn({ err: err.message }, 'association ended by network error');
      socket.destroy();
    });
    socket.on('close', () => {
      sockets.delete(socket);
      if (scp.countedAe !== undefined) {
        const n = (perAe.get(scp.countedAe) ?? 1) - 1;
        if (n <= 0) perAe.delete(scp.countedAe);
        else perAe.set(scp.countedAe, n);
      }
      // A-ABORT or a dropped connection mid-transfer: the partial staging object must not survive.
      scp.router.close('association ended during C-STORE');
    });
    socket.on('error', (err) => scp.alog.warn({ err: err.message }, 'connection error'));
  };
  const server = net.createServer(onConnection);
  server.maxConnections = config.dimse.maxAssociations + 8;
  const listen = (srv: net.Server, port: number): Promise<number> =>
    new Promise<number>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, config.dimse.host, () => {
        srv.off('error', reject);
        resolve((srv.address() as net.AddressInfo).port);
      });
    });
  const port = await listen(server, config.dimse.port);
  // DIMSE over TLS (PS3.15 Annex B): the same associations behind a TLS handshake, on a port of its own.
  let tlsServer: tls.Server | undefined;
  let tlsPort: number | undefined;
  if (config.dimse.tlsPort !== undefined) {
    tlsServer = tls.createServer(
      {
        cert: readFileSync(config.dimse.tlsCertFile!),
        key: readFileSync(config.dimse.tlsKeyFile!),
        ...(config.dimse.tlsCaFile ? { ca: readFileSync(config.dimse.tlsCaFile) } : {}),
        requestCert: config.dimse.tlsRequireClientCert,
        rejectUnauthorized: config.dimse.tlsRequireClientCert,
        minVersion: 'TLSv1.2',
      },
      onConnection,
    );
    tlsServer.maxConnections = server.maxConnections;
    tlsServer.on('tlsClientError', (err) => log.warn({ err: err.message }, 'TLS handshake failed'));
    tlsPort = await listen(tlsServer, config.dimse.tlsPort);
    log.info({ port: tlsPort }, 'DIMSE TLS listening');
  }
  log.info({ port, aeTitle: config.dimse.aeTitle }, 'DIMSE SCP listening');

  return {
    port,
    tlsPort,
    activeAssociations: () => sockets.size,
    async close(graceMs) {
      const closed = Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        tlsServer ? new Promise<void>((resolve) => tlsServer.close(() => resolve())) : undefined,
      ]);
      const deadline = Date.now() + graceMs;
      while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (sockets.size > 0) {
        log.warn({ open: sockets.size }, 'aborting associations still open after the grace period');
        for (const s of sockets) {
          const scp = perConnection.get(s)?.scp;
          try {
            scp?.sendAbort();
          } catch {
            // the socket may already be gone
          }
          s.destroy();
        }
      }
      await closed;
      worklist?.stop();
      clearInterval(nodesTimer);
    },
  };
}
