/**
 * The raw receive path for C-STORE: P-DATA-TF PDUs read here, after dcmjs-dimse negotiated the
 * association, so that a data set goes from the socket to the object store without dcmjs-dimse.
 *
 * dcmjs-dimse parses every P-DATA-TF PDU into objects, copies each PDV's data, concatenates the command
 * fragments with a memory stream and writes each C-STORE-RSP through dcmjs's data set writer: in a
 * profile of 513 KiB instances that, plus the garbage it leaves, was over a millisecond of CPU per
 * instance. Here ({@link PDataRouter}) the PDV items of each PDU are walked in place; the command set of a
 * C-STORE-RQ is read directly ({@link parseCommand}: a handful of fixed elements, PS3.7 §9.3.1.1), its
 * data-set fragments go to the store sink as views of the PDU (no copy), and the C-STORE-RSP is written
 * directly ({@link storeResponsePdu}) once the sink's outcome is known — which is after the object is
 * durable and the ingest job enqueued (c-store.ts).
 *
 * A message the host takes itself ({@link PDataHost.takeDataSet}: the C-FIND SCP) has its data set
 * collected here and handed over whole, without dcmjs-dimse.
 *
 * Every other message (C-ECHO, C-MOVE, C-GET, N-ACTION, C-CANCEL, responses to our requests) is
 * handed to dcmjs-dimse as the PDU it arrived in — or, when one PDU mixes a C-STORE with something else,
 * as a P-DATA-TF PDU of just the other message's PDV items, in their order — so dcmjs-dimse parses and
 * dispatches it exactly as before. A command is recognised only once its last fragment has arrived; until
 * then its PDV items are held, and replayed to dcmjs-dimse when it is not a C-STORE-RQ.
 *
 * Protocol errors on the raw path (a command PDV in the middle of a C-STORE data set, a data set on
 * another presentation context, a C-STORE on a context that was not accepted) end the association with
 * an A-ABORT (PS3.8 §9.3.8): the partial object is removed.
 */
import type { StoreSink } from './c-store.ts';
import { commandElement, commandSet, padded, pDataPdu, us } from './command-set.ts';

const PDATA_TF = 0x04;
/** C-STORE-RQ and C-STORE-RSP command fields (PS3.7 Table E.1-1). */
const C_STORE_RQ = 0x0001;
const C_STORE_RSP = 0x8001;
/** Command Data Set Type (0000,0800) value meaning "no data set" (PS3.7 Table E.1-1). */
const NO_DATA_SET = 0x0101;

/** The fixed elements of a command set that the raw path needs (PS3.7 Annex E). */
export interface DimseCommand {
  readonly commandField: number;
  readonly messageId: number;
  readonly hasDataSet: boolean;
  readonly affectedSopClassUid: string;
  readonly affectedSopInstanceUid: string;
}

const uidOf = (value: Buffer): string => value.toString('latin1').replace(/[\0 ]+$/, '');

/**
 * Reads a command set (Implicit VR Little Endian, group 0000, PS3.7 §6.3.1). Throws when an element runs
 * past the end or the command field is missing.
 */
export function parseCommand(command: Buffer): DimseCommand {
  let commandField = -1;
  let messageId = -1;
  let dataSetType = NO_DATA_SET;
  let affectedSopClassUid = '';
  let affectedSopInstanceUid = '';
  for (let at = 0; at + 8 <= command.length;) {
    const group = command.readUInt16LE(at);
    const element = command.readUInt16LE(at + 2);
    const length = command.readUInt32LE(at + 4);
    const end = at + 8 + length;
    if (end > command.length) throw new Error('command element runs past the end of the command set');
    if (group === 0x0000) {
      if (element === 0x0100 && length >= 2) commandField = command.readUInt16LE(at + 8);
      else if (element === 0x0110 && length >= 2) messageId = command.readUInt16LE(at + 8);
      else if (element === 0x0800 && length >= 2) dataSetType = command.readUInt16LE(at + 8);
      else if (element === 0x0002) affectedSopClassUid = uidOf(command.subarray(at + 8, end));
      else if (element === 0x1000) affectedSopInstanceUid = uidOf(command.subarray(at + 8, end));
    }
    at = end;
  }
  if (commandField < 0) throw new Error('command set without Command Field');
  return { commandField, messageId, hasDataSet: dataSetType !== NO_DATA_SET, affectedSopClassUid, affectedSopInstanceUid };
}

/**
 * The C-STORE-RSP (PS3.7 §9.3.1.2) in one P-DATA-TF PDU with one command PDV: Affected SOP Class UID,
 * Command Field, Message ID Being Responded To, Command Data Set Type (none), Status, Error Comment
 * (when given, at most 64 characters) and Affected SOP Instance UID, with the group length.
 */
export function storeResponsePdu(
  pcId: number,
  o: { messageId: number; sopClassUid: string; sopInstanceUid: string; status: number; errorComment?: string },
): Buffer {
  const elements = [
    commandElement(0x0002, padded(o.sopClassUid, 0)),
    commandElement(0x0100, us(C_STORE_RSP)),
    commandElement(0x0120, us(o.messageId)),
    commandElement(0x0800, us(NO_DATA_SET)),
    commandElement(0x0900, us(o.status)),
  ];
  if (o.errorComment) elements.push(commandElement(0x0902, padded(o.errorComment.slice(0, 64), 0x20)));
  elements.push(commandElement(0x1000, padded(o.sopInstanceUid, 0)));
  return pDataPdu(pcId, true, true, commandSet(elements));
}

/** A P-DATA-TF PDU holding the given PDV items (each with its 4-byte length). */
function pDataOf(items: readonly Buffer[]): Buffer {
  const length = items.reduce((n, i) => n + i.length, 0);
  const out = Buffer.allocUnsafe(6 + length);
  out[0] = PDATA_TF;
  out[1] = 0;
  out.writeUInt32BE(length, 2);
  let at = 6;
  for (const item of items) at += item.copy(out, at);
  return out;
}

/** What the router needs from the association it serves. */
export interface PDataHost {
  /** Hands a PDU to dcmjs-dimse (synchronous processing assumed, as its P-DATA handling is). */
  forward(pdu: Buffer): void;
  /**
   * A C-STORE-RQ with a data set arrived on presentation context pcId: the sink for its data set, or
   * undefined when the context is not an accepted one (the association is then aborted).
   */
  beginStore(pcId: number, command: DimseCommand): StoreSink | undefined;
  /**
   * A command with a data set that the host answers itself (C-FIND): the receiver of the whole data set,
   * or undefined to hand the message to dcmjs-dimse as before.
   */
  takeDataSet?(pcId: number, command: DimseCommand): ((dataSet: Buffer) => void) | undefined;
  /** Writes a PDU (the C-STORE-RSP) unless the association is gone. */
  send(pdu: Buffer): void;
  /** Stops / restarts reading from the socket (back-pressure). */
  pause(): void;
  resume(): void;
  /** A protocol error on the raw path: send A-ABORT and close. */
  abort(reason: string): void;
}

type State = 'idle' | 'command' | 'store' | 'collect' | 'forward';

/** Routes the P-DATA-TF PDUs of one association: C-STORE to the raw path, the rest to dcmjs-dimse. */
export class PDataRouter {
  private readonly host: PDataHost;
  private state: State = 'idle';
  /** The PDV items of a command being collected (state 'command'), kept for replay to dcmjs-dimse. */
  private commandItems: Buffer[] = [];
  private commandData: Buffer[] = [];
  private store: { sink: StoreSink; pcId: number; command: DimseCommand } | undefined;
  /** The data set being collected for the host (state 'collect'). */
  private collect: { pcId: number; fragments: Buffer[]; receiver: (dataSet: Buffer) => void } | undefined;
  private paused = false;
  private failed = false;

  constructor(host: PDataHost) {
    this.host = host;
  }

  /** The C-STORE whose data set is being received, if any. */
  get receiving(): StoreSink | undefined {
    return this.store?.sink;
  }

  /** The association ended (A-ABORT, A-RELEASE, closed socket): a data set in flight is dropped. */
  close(reason: string): void {
    const store = this.store;
    this.store = undefined;
    this.collect = undefined;
    this.state = 'idle';
    this.commandItems = [];
    this.commandData = [];
    if (store?.sink.receiving) store.sink.abort(new Error(reason));
    this.resumeSocket();
  }

  /**
   * One P-DATA-TF PDU (type 0x04, header included), whole or as the views of the socket chunks it spans
   * (see PduReader). In the middle of a C-STORE data set the views are walked without joining them.
   */
  onPData(pdu: Buffer | readonly Buffer[]): void {
    if (this.failed) return;
    if (Buffer.isBuffer(pdu)) return this.onWhole(pdu);
    if (pdu.length === 1) return this.onWhole(pdu[0]!);
    if (this.state === 'store') return this.onViews(pdu);
    this.onWhole(Buffer.concat(pdu));
  }

  /**
   * The data-set PDV items of a C-STORE, walked across chunk views: each fragment's data goes to the sink
   * as the views it spans. Anything else (the end of the data set followed by another item, a command)
   * hands the rest of the PDU, joined, to onWhole.
   */
  private onViews(parts: readonly Buffer[]): void {
    let part = 0;
    let offset = 0;
    let left = parts.reduce((n, p) => n + p.length, 0);
    /** Copies the next n bytes out (item headers: 6 bytes), advancing. */
    const header = Buffer.allocUnsafe(6);
    const read = (n: number): Buffer => {
      for (let got = 0; got < n;) {
        const p = parts[part]!;
        const take = Math.min(n - got, p.length - offset);
        p.copy(header, got, offset, offset + take);
        got += take;
        offset += take;
        if (offset === p.length) {
          part++;
          offset = 0;
        }
      }
      left -= n;
      return header;
    };
    read(6); // PDU header
    while (left > 0) {
      const store = this.store;
      if (this.state !== 'store' || !store || left < 6) break;
      const h = read(6);
      const length = h.readUInt32BE(0);
      const pcId = h[4]!;
      const control = h[5]!;
      if (length < 2 || length - 2 > left) return this.fail('PDV item length beyond its PDU');
      if ((control & 0x01) !== 0 || pcId !== store.pcId) return this.fail('C-STORE data set interrupted by another PDV');
      let full = true;
      for (let want = length - 2; want > 0;) {
        const p = parts[part]!;
        const take = Math.min(want, p.length - offset);
        if (!store.sink.write(p.subarray(offset, offset + take))) full = false;
        want -= take;
        left -= take;
        offset += take;
        if (offset === p.length) {
          part++;
          offset = 0;
        }
      }
      if (!full) this.pauseSocket(store.sink);
      if ((control & 0x02) !== 0) this.endStore(store);
    }
    if (left === 0) return;
    // The rest of the PDU, as a PDU of its own.
    const rest = [Buffer.from([PDATA_TF, 0, 0, 0, 0, 0]), parts[part]!.subarray(offset), ...parts.slice(part + 1)];
    rest[0]!.writeUInt32BE(left, 2);
    this.onWhole(Buffer.concat(rest));
  }

  private endStore(store: { sink: StoreSink; pcId: number; command: DimseCommand }): void {
    this.store = undefined;
    this.state = 'idle';
    store.sink.end();
    this.respond(store);
  }

  private onWhole(pdu: Buffer): void {
    // Fast path: a message dcmjs-dimse is reading (a C-FIND identifier, say) continues.
    if (this.state === 'forward' && !this.endsForwarded(pdu)) {
      this.host.forward(pdu);
      return;
    }
    let forward: Buffer[] = [];
    // Whether every PDV item of this PDU, and nothing else, goes to dcmjs-dimse: then the PDU itself does.
    let exact = this.commandItems.length === 0;
    const flush = (): void => {
      if (forward.length === 0) return;
      this.host.forward(exact ? pdu : pDataOf(forward));
      forward = [];
      exact = false;
    };
    for (let at = 6; at < pdu.length;) {
      if (at + 6 > pdu.length) return this.fail('truncated PDV item');
      const length = pdu.readUInt32BE(at);
      if (length < 2 || at + 4 + length > pdu.length) return this.fail('PDV item length beyond its PDU');
      const item = pdu.subarray(at, at + 4 + length);
      const pcId = pdu[at + 4]!;
      const control = pdu[at + 5]!;
      const data = pdu.subarray(at + 6, at + 4 + length);
      at += 4 + length;
      const isCommand = (control & 0x01) !== 0;
      const last = (control & 0x02) !== 0;
      switch (this.state) {
        case 'forward':
          forward.push(item);
          if (!isCommand && last) this.state = 'idle';
          break;
        case 'idle':
        case 'command': {
          if (!isCommand) {
            // A data set without its command: dcmjs-dimse reports it as it always did.
            forward.push(item);
            break;
          }
          this.commandItems.push(item);
          this.commandData.push(data);
          this.state = 'command';
          if (!last) break;
          const items = this.commandItems;
          const bytes = this.commandData.length === 1 ? this.commandData[0]! : Buffer.concat(this.commandData);
          this.commandItems = [];
          this.commandData = [];
          let command: DimseCommand | undefined;
          try {
            command = parseCommand(bytes);
          } catch {
            command = undefined; // dcmjs-dimse reports what it cannot read
          }
          const receiver = command?.hasDataSet && command.commandField !== C_STORE_RQ ? this.host.takeDataSet?.(pcId, command) : undefined;
          if (receiver) {
            exact = false;
            flush();
            this.collect = { pcId, fragments: [], receiver };
            this.state = 'collect';
          } else if (command?.commandField === C_STORE_RQ && command.hasDataSet) {
            exact = false;
            flush();
            const sink = this.host.beginStore(pcId, command);
            if (!sink) return this.fail(`C-STORE on presentation context ${pcId}, which was not accepted`);
            this.store = { sink, pcId, command };
            this.state = 'store';
          } else {
            forward.push(...items);
            this.state = command && !command.hasDataSet ? 'idle' : 'forward';
          }
          break;
        }
        case 'collect': {
          const collect = this.collect!;
          if (isCommand || pcId !== collect.pcId) return this.fail('data set interrupted by another PDV');
          exact = false;
          collect.fragments.push(data);
          if (last) {
            this.collect = undefined;
            this.state = 'idle';
            collect.receiver(collect.fragments.length === 1 ? collect.fragments[0]! : Buffer.concat(collect.fragments));
          }
          break;
        }
        case 'store': {
          const store = this.store!;
          if (isCommand || pcId !== store.pcId) return this.fail('C-STORE data set interrupted by another PDV');
          exact = false;
          if (!store.sink.write(data)) this.pauseSocket(store.sink);
          if (last) this.endStore(store);
          break;
        }
      }
    }
    if (this.state === 'command') exact = false; // command items held for the next PDU
    flush();
  }

  /** Whether this PDU (in state 'forward') contains the last data-set fragment, or anything unusual. */
  private endsForwarded(pdu: Buffer): boolean {
    for (let at = 6; at + 6 <= pdu.length;) {
      const control = pdu[at + 5]!;
      if ((control & 0x03) === 0x02 || (control & 0x01) !== 0) return true;
      at += 4 + pdu.readUInt32BE(at);
    }
    return false;
  }

  private respond(store: { sink: StoreSink; pcId: number; command: DimseCommand }): void {
    const { command } = store;
    const answer = (status: number, errorComment?: string): void =>
      this.host.send(
        storeResponsePdu(store.pcId, {
          messageId: command.messageId,
          sopClassUid: command.affectedSopClassUid,
          sopInstanceUid: command.affectedSopInstanceUid,
          status,
          ...(errorComment ? { errorComment } : {}),
        }),
      );
    // The outcome settles with a status in every case; an unexpected rejection is still no success.
    void store.sink.outcome.then(
      (outcome) => answer(outcome.status, outcome.errorComment),
      () => answer(0xa700, 'internal error'),
    );
  }

  private pauseSocket(sink: StoreSink): void {
    if (this.paused) return;
    this.paused = true;
    this.host.pause();
    void sink.drained().then(() => this.resumeSocket());
  }

  private resumeSocket(): void {
    if (!this.paused) return;
    this.paused = false;
    this.host.resume();
  }

  private fail(reason: string): void {
    this.failed = true;
    this.close(reason);
    this.host.abort(reason);
  }
}
