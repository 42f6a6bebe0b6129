/**
 * C-STORE with the stored bytes as they are: the raw pass-through send path (C-MOVE, C-GET, export).
 *
 * dcmjs-dimse sends a data set by parsing it whole and writing it again (~8x slower than dcmtk, and the
 * whole instance in memory), and parses every response with dcmjs. Here ({@link writeStoreRequest}) the
 * command set is written directly and the data set bytes are read from the object store after the File
 * Meta group and cut straight into P-DATA-TF PDVs, streaming, with socket back-pressure; responses are
 * read from the PDUs directly ({@link parseStoreResponse}). That is byte-for-byte what was received, so
 * it is only used on a presentation context whose accepted transfer syntax is the stored one.
 * dcmjs-dimse still negotiates the associations.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import dimse from 'dcmjs-dimse';
import { PduReader } from './pdu-reader.ts';
import { commandElement, commandSet, padded, pDataPdu, us } from './command-set.ts';

const { Scp } = dimse;
const { Association } = dimse.association;
const { PresentationContextResult } = dimse.constants;

type DimseAssociation = InstanceType<typeof Association>;

/** Where stored objects are read from: the object store, or a reader in front of it (read-ahead.ts). */
export interface ObjectSource {
  get(key: string): Promise<NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>>;
}

/** An instance to send as stored. */
export interface StoredObject {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly transferSyntaxUid: string;
  readonly objectKey: string;
}

const PDATA_TF = 0x04;
/** Bytes queued on the socket before a sub-operation waits for 'drain'. */
const SEND_HIGH_WATER = 1 << 20;

/**
 * Cuts a byte stream into P-DATA-TF PDUs of one data-set PDV each, without copying the data: each PDU is
 * its 12-byte header plus views of the incoming chunks (written together, corked, so the socket sends
 * them with one writev). A PDU is emitted only once more bytes follow it, so the last one can carry the
 * "last fragment" flag (PS3.8 §E.2).
 */
export class PdvCutter {
  private parts: Buffer[] = [];
  private bytes = 0;
  private readonly pcId: number;
  private readonly max: number;
  constructor(pcId: number, maxPdvData: number) {
    this.pcId = pcId;
    this.max = maxPdvData;
  }
  *push(data: Buffer): Generator<Buffer[]> {
    this.parts.push(data);
    this.bytes += data.length;
    while (this.bytes > this.max) yield this.take(this.max, false);
  }
  end(): Buffer[] {
    return this.take(this.bytes, true);
  }
  private take(n: number, last: boolean): Buffer[] {
    const header = Buffer.allocUnsafe(12);
    header[0] = PDATA_TF;
    header[1] = 0;
    header.writeUInt32BE(6 + n, 2);
    header.writeUInt32BE(2 + n, 6);
    header[10] = this.pcId;
    header[11] = last ? 2 : 0;
    const out: Buffer[] = [header];
    for (let left = n; left > 0;) {
      const p = this.parts[0]!;
      if (p.length <= left) {
        out.push(p);
        left -= p.length;
        this.parts.shift();
      } else {
        out.push(p.subarray(0, left));
        this.parts[0] = p.subarray(left);
        left = 0;
      }
    }
    this.bytes -= n;
    return out;
  }
}

/** The C-STORE-RQ command set (PS3.7 §9.3.1.1), Implicit VR Little Endian with its group length. */
export function storeCommand(o: {
  sopClassUid: string;
  sopInstanceUid: string;
  messageId: number;
  moveOriginator?: { aeTitle: string; messageId: number };
}): Buffer {
  const elements = [
    commandElement(0x0002, padded(o.sopClassUid, 0)),
    commandElement(0x0100, us(0x0001)), // C-STORE-RQ
    commandElement(0x0110, us(o.messageId)),
    commandElement(0x0700, us(0x0000)), // medium priority
    commandElement(0x0800, us(0x0000)), // a data set follows
    commandElement(0x1000, padded(o.sopInstanceUid, 0)),
  ];
  if (o.moveOriginator) {
    elements.push(commandElement(0x1030, padded(o.moveOriginator.aeTitle, 0x20)), commandElement(0x1031, us(o.moveOriginator.messageId)));
  }
  return commandSet(elements);
}

/** Reads what a C-STORE-RSP says: the message it answers, the status and the error comment. */
export function parseStoreResponse(command: Buffer): { commandField: number; messageIdBeingRespondedTo: number; status: number; errorComment?: string } {
  let commandField = -1;
  let messageId = -1;
  let status = -1;
  let errorComment: string | undefined;
  for (let at = 0; at + 8 <= command.length;) {
    const element = command.readUInt16LE(at + 2);
    const length = command.readUInt32LE(at + 4);
    const value = command.subarray(at + 8, at + 8 + length);
    if (element === 0x0100) commandField = value.readUInt16LE(0);
    else if (element === 0x0120) messageId = value.readUInt16LE(0);
    else if (element === 0x0900) status = value.readUInt16LE(0);
    else if (element === 0x0902) errorComment = value.toString('latin1').replace(/[\0 ]+$/, '');
    at += 8 + length;
  }
  if (status < 0 || messageId < 0) throw new Error('response command set without status or message ID');
  return errorComment
    ? { commandField, messageIdBeingRespondedTo: messageId, status, errorComment }
    : { commandField, messageIdBeingRespondedTo: messageId, status };
}

/** Where the data set starts in a Part-10 object: after the preamble, "DICM" and the File Meta group. */
export function datasetOffset(head: Buffer): number {
  if (head.length < 144 || head.toString('latin1', 128, 132) !== 'DICM') throw new Error('stored object is not a Part-10 file');
  // (0002,0000) File Meta Information Group Length, UL, explicit VR little endian.
  if (head.readUInt16LE(132) !== 0x0002 || head.readUInt16LE(134) !== 0x0000) throw new Error('stored object has no File Meta group length');
  return 144 + head.readUInt32LE(140);
}

/**
 * Writes one C-STORE-RQ on an association: the command set, then the stored data set bytes (after the
 * File Meta group) cut into PDVs, streaming from the object store with back-pressure by volume. Used by
 * the SCU (C-MOVE, export) and by the SCP for C-GET sub-operations. `onWrite` runs after every write (it
 * may throw to stop).
 */
export async function writeStoreRequest(
  socket: net.Socket,
  o: {
    pcId: number;
    maxPdvData: number;
    messageId: number;
    object: StoredObject;
    /** Where the object is read from, unless `source` is given. */
    store?: ObjectSource;
    moveOriginator?: { aeTitle: string; messageId: number };
    /** Part-10 bytes to send instead of the stored object (a converted copy); the File Meta group is skipped. */
    source?: AsyncIterable<Uint8Array>;
  },
  onWrite: () => void = () => undefined,
): Promise<void> {
  const write = async (pieces: Buffer[], flush = false): Promise<void> => {
    // The last write waits until the socket has handed every byte to the kernel (its callback; also
    // called with an error when the socket is destroyed): when this function resolves, nothing holds a
    // view of the caller's buffers any more (read-ahead.ts reuses them).
    let flushed: Promise<void> | undefined;
    socket.cork();
    for (const [i, b] of pieces.entries()) {
      if (flush && i === pieces.length - 1) flushed = new Promise<void>((resolve) => socket.write(b, () => resolve()));
      else socket.write(b);
    }
    socket.uncork();
    onWrite();
    if (socket.writableLength > SEND_HIGH_WATER && !socket.destroyed) await once(socket, 'drain');
    await flushed;
  };
  if (!o.source && !o.store) throw new Error('writeStoreRequest needs a store or a source');
  // Opened before the command goes out: an object that cannot be read fails the sub-operation before
  // anything is on the wire, instead of leaving a C-STORE-RQ without its data set.
  const stream = (o.source ?? (await o.store!.get(o.object.objectKey))) as AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  await write([
    pDataPdu(o.pcId, true, true, storeCommand({ ...o.object, messageId: o.messageId, ...(o.moveOriginator ? { moveOriginator: o.moveOriginator } : {}) })),
  ]);
  let head: Buffer | undefined = Buffer.alloc(0);
  const pdvs = new PdvCutter(o.pcId, o.maxPdvData);
  for await (const raw of stream) {
    let data = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    if (head) {
      head = head.length === 0 ? data : Buffer.concat([head, data]);
      if (head.length < 144) continue;
      const start = datasetOffset(head);
      if (head.length < start) continue;
      data = head.subarray(start);
      head = undefined;
    }
    // All PDUs cut from one chunk go out corked together: one writev for a whole instance read ahead.
    const batch: Buffer[] = [];
    for (const out of pdvs.push(data)) batch.push(...out);
    if (batch.length > 0) await write(batch);
  }
  if (head) throw new Error('stored object ends inside its File Meta group');
  await write(pdvs.end(), true);
}

/** A C-STORE-RSP in a P-DATA-TF PDU (one command PDV, last fragment), or undefined for anything else. */
export function storeResponseOf(pdu: Buffer): ReturnType<typeof parseStoreResponse> | undefined {
  if (pdu[0] !== 0x04 || pdu.length < 12) return undefined;
  const length = pdu.readUInt32BE(6);
  const header = pdu[11]!;
  if ((header & 3) !== 3 || 10 + length !== pdu.length) return undefined;
  try {
    const r = parseStoreResponse(pdu.subarray(12));
    return r.commandField === 0x8001 ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A TCP or TLS connection to a peer, no Nagle. dcmjs-dimse writes its A-ASSOCIATE-RQ on 'connect'; on a
 * TLS socket that write waits for the handshake, which fails on an untrusted peer certificate.
 */
export function connectTo(opts: ScuOptions): net.Socket {
  if (!opts.tls) {
    const socket = net.connect({ host: opts.host, port: opts.port });
    socket.setNoDelay(true);
    return socket;
  }
  const socket = tls.connect({
    host: opts.host,
    port: opts.port,
    ...(opts.tls.ca ? { ca: opts.tls.ca } : {}),
    ...(opts.tls.cert ? { cert: opts.tls.cert } : {}),
    ...(opts.tls.key ? { key: opts.tls.key } : {}),
    // DICOM peers are named by AE title and address; certificates often carry no matching host name.
    checkServerIdentity: () => undefined,
  });
  socket.setNoDelay(true);
  return socket;
}

/** Transfer syntaxes proposed for a stored instance: its own first, then, when it is uncompressed, the others. */
const UNCOMPRESSED = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2'];
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** Makes the Explicit VR Little Endian Part-10 bytes of a compressed stored instance (see c-move.ts). */
export type Converter = (object: StoredObject) => Promise<AsyncIterable<Uint8Array>>;

/** dcmjs-dimse's network class (the base of its Scp); its client API is built on it. */
type NetworkCtor = new (
  socket: net.Socket,
  opts: Record<string, unknown>,
) => {
  on(event: string, listener: (...args: never[]) => void): unknown;
  sendAssociationRequest(association: DimseAssociation): void;
  sendAssociationReleaseRequest(): void;
  sendAbort(): void;
  sendRequests(requests: unknown[]): void;
  association: DimseAssociation | undefined;
};
const Network = Object.getPrototypeOf(Scp) as NetworkCtor;

/** dcmjs-dimse's network, used here to negotiate associations; the C-STORE traffic is ours. */
export class RawNetwork extends Network {}

/** TLS for an outgoing association: whom we trust, and the certificate we present. */
export interface ScuTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export interface ScuOptions {
  readonly host: string;
  readonly port: number;
  /** Set: the association runs over TLS (PS3.15 Annex B), the peer's certificate verified. */
  readonly tls?: ScuTls;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly maxPduLength: number;
  readonly timeoutMs: number;
}

export interface StoreOutcomeScu {
  readonly status: number;
  readonly errorComment?: string;
}

/**
 * One association to a C-STORE SCP, negotiated for a set of (SOP class, transfer syntax) pairs; sends
 * instances one after the other, as stored.
 */
export class StoreScu {
  private readonly network: InstanceType<typeof RawNetwork>;
  private readonly socket: net.Socket;
  private closed: Promise<void>;
  private failure: Error | undefined;
  private messageId = 0;
  private maxPdvData = 16384 - 6;
  /** The response being waited for (one operation at a time: no asynchronous operations window). */
  private waiting: { messageId: number; resolve: (r: StoreOutcomeScu) => void; reject: (e: Error) => void } | undefined;
  private released: (() => void) | undefined;
  private commandParts: Buffer[] = [];

  private constructor(socket: net.Socket, network: InstanceType<typeof RawNetwork>) {
    this.socket = socket;
    this.network = network;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    network.on('networkError', (err: Error) => this.fail(err));
    void this.closed.then(() => this.fail(new Error('association closed before the C-STORE response')));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(this.failure);
  }

  /**
   * After the association is accepted the data stream is ours: dcmjs-dimse only negotiated it. Its
   * request machinery parses and writes every command with dcmjs (about 1 ms per instance here); C-STORE
   * commands and responses are a handful of fixed elements, read and written directly.
   */
  private takeOver(): void {
    const internals = this.network as unknown as { lastPduTime: number | undefined };
    this.socket.removeAllListeners('data');
    const reader = new PduReader(
      (pdu) => {
        internals.lastPduTime = Date.now();
        this.onPdu(pdu);
      },
      (err) => {
        this.fail(err);
        this.socket.destroy();
      },
    );
    this.socket.on('data', (chunk: Buffer) => reader.push(chunk));
  }

  private onPdu(pdu: Buffer): void {
    const type = pdu[0];
    if (type === 0x06) {
      // A-RELEASE-RP
      this.released?.();
      this.socket.end();
      return;
    }
    if (type === 0x07) {
      this.fail(new Error('the peer aborted the association'));
      this.socket.destroy();
      return;
    }
    if (type !== 0x04) {
      this.fail(new Error(`unexpected PDU type 0x${type?.toString(16)} during C-STORE`));
      this.socket.destroy();
      return;
    }
    for (let at = 6; at + 6 <= pdu.length;) {
      const length = pdu.readUInt32BE(at);
      const header = pdu[at + 5]!;
      const value = pdu.subarray(at + 6, at + 4 + length);
      at += 4 + length;
      if ((header & 1) === 0) continue; // a data set: C-STORE-RSP has none
      this.commandParts.push(value);
      if ((header & 2) === 0) continue;
      const command = Buffer.concat(this.commandParts);
      this.commandParts = [];
      try {
        const r = parseStoreResponse(command);
        const w = this.waiting;
        if (!w || r.messageIdBeingRespondedTo !== w.messageId) throw new Error(`response to message ${r.messageIdBeingRespondedTo}, none of ours`);
        this.waiting = undefined;
        w.resolve(r.errorComment ? { status: r.status, errorComment: r.errorComment } : { status: r.status });
      } catch (err) {
        this.fail(err as Error);
        this.socket.destroy();
      }
    }
  }

  /** Connects and negotiates; rejects when the peer cannot be reached or rejects the association. */
  static async open(
    opts: ScuOptions,
    objects: readonly (Pick<StoredObject, 'sopClassUid' | 'transferSyntaxUid'> & { readonly proposals?: readonly string[] })[],
  ): Promise<StoreScu> {
    const association = new Association(opts.callingAeTitle, opts.calledAeTitle);
    association.setMaxPduLength(opts.maxPduLength);
    const seen = new Set<string>();
    for (const o of objects) {
      // Stored syntax first; uncompressed ones as fallbacks (for a compressed instance, Explicit VR Little
      // Endian: sent decompressed, see send()). Export passes its own list (`proposals`).
      const fallbacks = UNCOMPRESSED.includes(o.transferSyntaxUid) ? UNCOMPRESSED : [EXPLICIT_LE];
      const syntaxes = o.proposals ?? [o.transferSyntaxUid, ...fallbacks.filter((t) => t !== o.transferSyntaxUid)];
      const key = `${o.sopClassUid} ${syntaxes.join(',')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const pcId = association.addPresentationContext(o.sopClassUid);
      for (const ts of syntaxes) association.addTransferSyntaxToPresentationContext(pcId, ts);
    }
    if (seen.size > 127) throw new Error(`${seen.size} SOP class / transfer syntax pairs do not fit one association (128 presentation contexts)`);
    const socket = connectTo(opts);
    const network = new RawNetwork(socket, { connectTimeout: opts.timeoutMs, associationTimeout: opts.timeoutMs, pduTimeout: opts.timeoutMs });
    const scu = new StoreScu(socket, network);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`association with ${opts.calledAeTitle} timed out`)), opts.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      network.on('connect', () => network.sendAssociationRequest(association));
      network.on('associationAccepted', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.on('error', () => undefined);
        resolve();
      });
      network.on('associationRejected', () => fail(new Error(`${opts.calledAeTitle} rejected the association`)));
      network.on('networkError', (err: Error) => fail(err));
    });
    // The acceptor's maximum (0: unlimited) bounds what we send; PDV data is the PDU minus 6 bytes.
    const peerMax = network.association!.getMaxPduLength();
    scu.maxPdvData = Math.min(peerMax === 0 ? 4 * 1024 * 1024 : peerMax, 4 * 1024 * 1024) - 6;
    scu.takeOver();
    return scu;
  }

  /** The presentation context and transfer syntax the peer accepted for this SOP class and stored syntax, if any. */
  acceptedContext(object: Pick<StoredObject, 'sopClassUid' | 'transferSyntaxUid'>): { pcId: number; transferSyntaxUid: string } | undefined {
    const association = this.network.association!;
    let fallback: { pcId: number; transferSyntaxUid: string } | undefined;
    for (const { id } of association.getPresentationContexts()) {
      const pc = association.getPresentationContext(id);
      if (pc.getAbstractSyntaxUid() !== object.sopClassUid || pc.getResult() !== PresentationContextResult.Accept) continue;
      const ts = pc.getAcceptedTransferSyntaxUid()!;
      if (ts === object.transferSyntaxUid) return { pcId: id, transferSyntaxUid: ts };
      fallback ??= { pcId: id, transferSyntaxUid: ts };
    }
    return fallback;
  }

  acceptedSyntax(object: Pick<StoredObject, 'sopClassUid' | 'transferSyntaxUid'>): string | undefined {
    return this.acceptedContext(object)?.transferSyntaxUid;
  }

  /** Every transfer syntax the peer accepted for a SOP class (one per accepted presentation context). */
  acceptedSyntaxes(sopClassUid: string): string[] {
    const association = this.network.association!;
    const out: string[] = [];
    for (const { id } of association.getPresentationContexts()) {
      const pc = association.getPresentationContext(id);
      if (pc.getAbstractSyntaxUid() === sopClassUid && pc.getResult() === PresentationContextResult.Accept) out.push(pc.getAcceptedTransferSyntaxUid()!);
    }
    return out;
  }

  /** False once the association failed, was aborted or closed. */
  usable(): boolean {
    return !this.failure && !this.socket.destroyed;
  }

  /**
   * Sends a copy the caller prepared (Part-10 bytes in `object.transferSyntaxUid`, e.g. transcoded or with
   * attributes changed for one destination) on a context accepted for exactly that syntax.
   */
  async sendPrepared(object: Omit<StoredObject, 'objectKey'>, part10: AsyncIterable<Uint8Array>): Promise<StoreOutcomeScu> {
    if (this.failure) throw this.failure;
    // acceptedContext prefers the context of exactly this syntax; any other would mislabel the bytes.
    const accepted = this.acceptedContext(object);
    if (accepted?.transferSyntaxUid !== object.transferSyntaxUid)
      return { status: 0xa702, errorComment: `no accepted context for ${object.transferSyntaxUid}` };
    return this.write(accepted, { ...object, objectKey: '' }, undefined, undefined, part10);
  }

  /** Sends one instance; resolves with the peer's status (never rejects on a failure status). */
  async send(
    object: StoredObject,
    store: ObjectSource,
    moveOriginator?: { aeTitle: string; messageId: number },
    convert?: Converter,
  ): Promise<StoreOutcomeScu> {
    if (this.failure) throw this.failure;
    const accepted = this.acceptedContext(object);
    if (accepted === undefined) return { status: 0x0122, errorComment: 'SOP class not accepted by the destination' };
    let source: AsyncIterable<Uint8Array> | undefined;
    if (accepted.transferSyntaxUid !== object.transferSyntaxUid) {
      // Converted only when the destination accepts nothing else: decompressed to Explicit VR Little Endian.
      if (accepted.transferSyntaxUid !== EXPLICIT_LE || !convert)
        return { status: 0xa702, errorComment: `destination does not accept ${object.transferSyntaxUid}` };
      try {
        source = await convert(object);
      } catch (err) {
        return { status: 0xa702, errorComment: `cannot convert: ${(err as Error).message}`.slice(0, 64) };
      }
    }
    return this.write(accepted, object, store, moveOriginator, source);
  }

  private async write(
    accepted: { pcId: number; transferSyntaxUid: string },
    object: StoredObject,
    store: ObjectSource | undefined,
    moveOriginator: { aeTitle: string; messageId: number } | undefined,
    source: AsyncIterable<Uint8Array> | undefined,
  ): Promise<StoreOutcomeScu> {
    const messageId = (this.messageId = (this.messageId % 0xffff) + 1);
    const response = new Promise<StoreOutcomeScu>((resolve, reject) => (this.waiting = { messageId, resolve, reject }));
    // Settled below or by the peer; the caller gets the rejection through the returned promise.
    response.catch(() => undefined);
    const internals = this.network as unknown as { lastPduTime: number | undefined };
    try {
      await writeStoreRequest(
        this.socket,
        {
          pcId: accepted.pcId,
          maxPdvData: this.maxPdvData,
          messageId,
          object,
          ...(store ? { store } : {}),
          ...(moveOriginator ? { moveOriginator } : {}),
          ...(source ? { source } : {}),
        },
        () => {
          internals.lastPduTime = Date.now();
          if (this.failure) throw this.failure;
        },
      );
    } catch (err) {
      // Half a data set cannot be taken back: the association is aborted.
      this.fail(err as Error);
      this.abort();
    }
    return response;
  }

  /** A-RELEASE, then waits for the connection to close. */
  async release(): Promise<void> {
    if (this.socket.destroyed) return;
    const done = new Promise<void>((resolve) => (this.released = resolve));
    // A-RELEASE-RQ (PS3.8 §9.3.6): type 5, length 4, four reserved bytes.
    this.socket.write(Buffer.from([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
    const timer = setTimeout(() => this.socket.destroy(), 5000);
    await Promise.race([done.then(() => this.closed), this.closed]);
    clearTimeout(timer);
  }

  abort(): void {
    if (!this.socket.destroyed) {
      // A-ABORT (PS3.8 §9.3.8): type 7, length 4, reserved, reserved, source 0 (service user), reason 0.
      this.socket.write(Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
    }
    this.socket.destroy();
  }
}

/**
 * Sends one request on a new association with a single presentation context and releases it; resolves
 * with the response status. For N-EVENT-REPORTs of storage commitment sent back to a requester that
 * closed its association (`scpRole`: we propose to act as SCP of the SOP class, PS3.7 §D.3.3.4).
 */
export async function sendOnNewAssociation(
  opts: ScuOptions,
  context: { readonly abstractSyntaxUid: string; readonly scpRole?: boolean },
  request: { on(event: 'response', listener: (r: { getStatus(): number }) => void): unknown },
): Promise<number> {
  const association = new Association(opts.callingAeTitle, opts.calledAeTitle);
  association.setMaxPduLength(opts.maxPduLength);
  const pcId = association.addPresentationContext(context.abstractSyntaxUid);
  for (const ts of UNCOMPRESSED) association.addTransferSyntaxToPresentationContext(pcId, ts);
  if (context.scpRole) {
    const pc = association.getPresentationContext(pcId);
    pc.setUserRole(false);
    pc.setProviderRole(true);
  }
  const socket = connectTo(opts);
  const network = new RawNetwork(socket, { connectTimeout: opts.timeoutMs, associationTimeout: opts.timeoutMs, pduTimeout: opts.timeoutMs });
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${opts.calledAeTitle} did not answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', fail);
      network.on('networkError', fail);
      network.on('associationRejected', () => fail(new Error(`${opts.calledAeTitle} rejected the association`)));
      network.on('connect', () => network.sendAssociationRequest(association));
      network.on('associationAccepted', () => {
        request.on('response', (r) => {
          clearTimeout(timer);
          resolve(r.getStatus());
        });
        network.sendRequests([request]);
      });
    });
  } finally {
    if (!socket.destroyed) {
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      network.on('associationReleaseResponse', () => socket.end());
      try {
        network.sendAssociationReleaseRequest();
      } catch {
        socket.destroy();
      }
      const timer = setTimeout(() => socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
    }
  }
}
