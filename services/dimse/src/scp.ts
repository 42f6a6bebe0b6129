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
import { randomUUID } from 'node:crypto';
import dimse from 'dcmjs-dimse';
import type { PorticoConfig } from '@portico/config';
import type { Logger } from '@portico/logging';
import type { ObjectStore } from '@portico/storage';
import type { JobQueues } from '@portico/jobs';
import { decideContext } from './presentation.ts';
import { StoreSink } from './c-store.ts';
import { PduReader } from './pdu-reader.ts';
import { PORTICO_IMPLEMENTATION_CLASS_UID, PORTICO_IMPLEMENTATION_VERSION_NAME } from '@portico/dicom';

const { Scp, Dataset, log: dimseLog } = dimse;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason, Status } = dimse.constants;

type DimseAssociation = InstanceType<typeof dimse.association.Association>;
type DimsePresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type CStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type CEchoRequest = InstanceType<typeof dimse.requests.CEchoRequest>;
type DimseDataset = InstanceType<typeof dimse.Dataset>;

/** The parts of dcmjs-dimse 0.3's Network that the PDU reader hook drives (see the constructor). */
interface DimseNetworkInternals {
  lastPduTime: number | undefined;
  statistics: { addBytesReceived(n: number): void };
  _processPdu(pdu: Buffer): Promise<void>;
  _reset(): void;
}

export interface DimseDeps {
  readonly config: PorticoConfig;
  readonly log: Logger;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
}

export interface DimseServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Number of open associations. */
  activeAssociations(): number;
  /** Stops accepting, waits up to graceMs for associations to end, then aborts the rest. */
  close(graceMs: number): Promise<void>;
}

/** Starts listening; resolves once bound. */
export async function startDimseServer(deps: DimseDeps): Promise<DimseServer> {
  const { config, log } = deps;
  // dcmjs-dimse logs every PDU at info through loglevel; our own logs say what matters.
  dimseLog.setLevel('silent');
  const sockets = new Set<net.Socket>();
  const perConnection = new WeakMap<net.Socket, { scp: InstanceType<typeof Scp> }>();
  // The outcome of each data set travels from the stream hook to cStoreRequest on the Dataset object.
  const outcomes = new WeakMap<DimseDataset, StoreSink>();

  class PorticoScp extends Scp {
    association: DimseAssociation | undefined;
    readonly assocId = randomUUID().slice(0, 8);
    alog: Logger = log.child({ assocId: this.assocId });
    current: StoreSink | undefined;
    readonly sock: net.Socket;

    constructor(socket: net.Socket, opts: ConstructorParameters<typeof Scp>[1]) {
      super(socket, opts);
      this.sock = socket;
      // Replace dcmjs-dimse's PDU accumulator (see pdu-reader.ts) with one that copies each PDU at most
      // once. What its 'data' handler did is repeated here: count bytes, stamp the PDU time, process.
      const internals = this as unknown as DimseNetworkInternals;
      socket.removeAllListeners('data');
      const reader = new PduReader(
        (pdu) => {
          internals.lastPduTime = Date.now();
          void internals._processPdu(pdu);
        },
        (err) => {
          internals._reset();
          (this as unknown as { emit(event: string, err: Error): void }).emit('networkError', err);
        },
      );
      socket.on('data', (chunk: Buffer) => {
        internals.statistics.addBytesReceived(chunk.length);
        reader.push(chunk);
      });
    }

    override associationRequested(association: DimseAssociation): void {
      this.association = association;
      const callingAet = association.getCallingAeTitle().trim();
      const calledAet = association.getCalledAeTitle().trim();
      this.alog = log.child({ assocId: this.assocId, callingAet, calledAet });
      if (sockets.size > config.dimse.maxAssociations) {
        this.alog.warn({ limit: config.dimse.maxAssociations }, 'association rejected: limit reached');
        // PS3.8 Table 9-21: transient, service-provider (presentation), local-limit-exceeded.
        this.sendAssociationReject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded);
        return;
      }
      if (config.dimse.checkCalledAeTitle && calledAet !== config.dimse.aeTitle) {
        this.alog.warn('association rejected: called AE title not recognised');
        // PS3.8 Table 9-21: permanent, service-user, called-AE-title-not-recognized.
        this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized);
        return;
      }
      let accepted = 0;
      for (const { id } of association.getPresentationContexts()) {
        const pc: DimsePresentationContext = association.getPresentationContext(id);
        const decision = decideContext(pc.getAbstractSyntaxUid(), pc.getTransferSyntaxUids());
        if (decision.accept) {
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
      association.setMaxPduLength(config.dimse.maxPduLength);
      association.setImplementationClassUid(PORTICO_IMPLEMENTATION_CLASS_UID);
      association.setImplementationVersion(PORTICO_IMPLEMENTATION_VERSION_NAME);
      this.alog.info({ contexts: association.getPresentationContexts().length, accepted }, 'association accepted');
      this.sendAssociationAccept();
    }

    override associationReleaseRequested(): void {
      this.alog.info('association released');
      this.sendAssociationReleaseResponse();
    }

    override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof CEchoResponse>) => void): void {
      const response = CEchoResponse.fromRequest(request);
      response.setStatus(Status.Success);
      callback(response);
    }

    override createStoreWritableStream(pc: DimsePresentationContext, request: CStoreRequest): StoreSink {
      const sink = new StoreSink(
        {
          store: deps.store,
          queues: deps.queues,
          log: this.alog,
          socket: this.sock,
          callingAeTitle: this.association?.getCallingAeTitle().trim() ?? '',
          calledAeTitle: this.association?.getCalledAeTitle().trim() ?? '',
        },
        {
          sopClassUid: request.getAffectedSopClassUid(),
          sopInstanceUid: request.getAffectedSopInstanceUid(),
          transferSyntaxUid: pc.getAcceptedTransferSyntaxUid() ?? '1.2.840.10008.1.2',
        },
      );
      // Failures surface through sink.outcome; an abort-time destroy must not become an uncaught 'error'.
      sink.on('error', () => undefined);
      this.current = sink;
      return sink;
    }

    override createDatasetFromStoreWritableStream(writable: StoreSink, pc: DimsePresentationContext, callback: (dataset: DimseDataset) => void): void {
      // An empty Dataset stands in for the data set: the bytes are already in the object store.
      const ds = new Dataset({}, pc.getAcceptedTransferSyntaxUid() ?? '1.2.840.10008.1.2');
      outcomes.set(ds, writable);
      void writable.outcome.then(() => callback(ds));
    }

    override cStoreRequest(request: CStoreRequest, callback: (response: InstanceType<typeof CStoreResponse>) => void): void {
      const response = CStoreResponse.fromRequest(request);
      const sink = outcomes.get(request.getDataset() as DimseDataset);
      this.current = undefined;
      if (!sink) {
        response.setStatus(0xa700);
        callback(response);
        return;
      }
      void sink.outcome.then((outcome) => {
        response.setStatus(outcome.status);
        if (outcome.errorComment) response.setErrorComment(outcome.errorComment);
        callback(response);
      });
    }
  }

  const server = net.createServer((socket) => {
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
      // A-ABORT or a dropped connection mid-transfer: the partial staging object must not survive.
      if (scp.current && !scp.current.writableFinished) scp.current.destroy(new Error('association ended during C-STORE'));
    });
    socket.on('error', (err) => scp.alog.warn({ err: err.message }, 'connection error'));
  });
  server.maxConnections = config.dimse.maxAssociations + 8;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.dimse.port, config.dimse.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  log.info({ port, aeTitle: config.dimse.aeTitle }, 'DIMSE SCP listening');

  return {
    port,
    activeAssociations: () => sockets.size,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
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
    },
  };
}
