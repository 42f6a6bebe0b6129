/**
 * Command sets written without dcmjs (PS3.7 §6.3.1, Annex E): Implicit VR Little Endian, group 0000, a
 * handful of fixed elements.
 *
 * dcmjs-dimse writes every message it sends — each pending C-FIND, C-MOVE and C-GET response, every
 * final response, C-ECHO — by denaturalizing its command set and running it through dcmjs's data set
 * writer: about 1.2 ms of CPU for a 100-byte command here (the writer grows its buffer through a size
 * check per value), and it builds the log line of the message whether logging is on or not. A C-MOVE of
 * 500 instances sends 500 pending responses, so that was more CPU than moving the instances' bytes.
 * {@link encodeCommandSet} writes the same bytes (unit-tested against dcmjs's output) from the same
 * naturalized elements, in microseconds; {@link dimseMessagePdus} cuts command and data set into
 * P-DATA-TF PDUs as dcmjs-dimse does. Anything it does not know (an element outside Annex E, a value that
 * is not a single string or number) makes it return undefined, and the caller falls back to dcmjs-dimse.
 */

type Vr = 'UI' | 'US' | 'UL' | 'AE' | 'LO';

/** Command elements by keyword (PS3.7 Table E.1-1, E.2-1 for the ones still in use); AT elements are left to dcmjs. */
const COMMAND_ELEMENTS: Readonly<Record<string, readonly [number, Vr]>> = {
  AffectedSOPClassUID: [0x0002, 'UI'],
  RequestedSOPClassUID: [0x0003, 'UI'],
  CommandField: [0x0100, 'US'],
  MessageID: [0x0110, 'US'],
  MessageIDBeingRespondedTo: [0x0120, 'US'],
  MoveDestination: [0x0600, 'AE'],
  Priority: [0x0700, 'US'],
  CommandDataSetType: [0x0800, 'US'],
  Status: [0x0900, 'US'],
  ErrorComment: [0x0902, 'LO'],
  ErrorID: [0x0903, 'US'],
  AffectedSOPInstanceUID: [0x1000, 'UI'],
  RequestedSOPInstanceUID: [0x1001, 'UI'],
  EventTypeID: [0x1002, 'US'],
  ActionTypeID: [0x1008, 'US'],
  NumberOfRemainingSuboperations: [0x1020, 'US'],
  NumberOfCompletedSuboperations: [0x1021, 'US'],
  NumberOfFailedSuboperations: [0x1022, 'US'],
  NumberOfWarningSuboperations: [0x1023, 'US'],
  MoveOriginatorApplicationEntityTitle: [0x1030, 'AE'],
  MoveOriginatorMessageID: [0x1031, 'US'],
};

/**
 * The command set (with its Command Group Length) for naturalized command elements, as dcmjs-dimse holds
 * them; undefined when an element or value is outside what this writer handles.
 */
export function encodeCommandSet(elements: Readonly<Record<string, unknown>>): Buffer | undefined {
  const out: Array<{ element: number; bytes: Buffer }> = [];
  for (const [keyword, raw] of Object.entries(elements)) {
    if (raw === undefined) continue; // dcmjs leaves unset elements out
    const entry = COMMAND_ELEMENTS[keyword];
    if (!entry) return undefined;
    const value = Array.isArray(raw) ? (raw.length === 1 ? (raw[0] as unknown) : undefined) : raw;
    const [element, vr] = entry;
    let bytes: Buffer;
    if (vr === 'US' || vr === 'UL') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > (vr === 'US' ? 0xffff : 0xffffffff)) return undefined;
      bytes = vr === 'US' ? us(value) : ul(value);
    } else {
      if (typeof value !== 'string' || !/^[\x20-\x7e]*$/.test(value)) return undefined;
      bytes = padded(value, vr === 'UI' ? 0x00 : 0x20);
    }
    out.push({ element, bytes: commandElement(element, bytes) });
  }
  out.sort((a, b) => a.element - b.element);
  return commandSet(out.map((e) => e.bytes));
}

/** One element of an Implicit VR Little Endian command set (PS3.7 Annex E). */
export function commandElement(element: number, value: Buffer): Buffer {
  const out = Buffer.allocUnsafe(8 + value.length);
  out.writeUInt16LE(0x0000, 0);
  out.writeUInt16LE(element, 2);
  out.writeUInt32LE(value.length, 4);
  value.copy(out, 8);
  return out;
}

/** A US value. */
export const us = (v: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16LE(v);
  return b;
};

/** A UL value. */
const ul = (v: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v);
  return b;
};

/** A string value padded to even length (UI with NUL, AE/LO with a space: PS3.5 §6.2). */
export const padded = (v: string, pad: number): Buffer => {
  const b = Buffer.from(v, 'latin1');
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from([pad])]);
};

/** A command set: Command Group Length (0000,0000), then the given elements (already in tag order). */
export function commandSet(elements: readonly Buffer[]): Buffer {
  const groupLength = Buffer.allocUnsafe(4);
  groupLength.writeUInt32LE(elements.reduce((n, e) => n + e.length, 0));
  return Buffer.concat([commandElement(0x0000, groupLength), ...elements]);
}

/** One P-DATA-TF PDU holding one PDV (PS3.8 §9.3.5, §E.2). */
export function pDataPdu(pcId: number, command: boolean, last: boolean, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(12 + data.length);
  out[0] = 0x04;
  out[1] = 0;
  out.writeUInt32BE(6 + data.length, 2);
  out.writeUInt32BE(2 + data.length, 6);
  out[10] = pcId;
  out[11] = (command ? 1 : 0) | (last ? 2 : 0);
  out.set(data, 12);
  return out;
}

/**
 * The PDUs of one DIMSE message: the command in one PDU (a command set is far below any PDU size), then
 * the data set, if any, in PDVs of at most maxPduLength - 6 bytes (0: no limit; capped at 4 MiB as
 * dcmjs-dimse does).
 */
export function dimseMessagePdus(pcId: number, maxPduLength: number, command: Buffer, dataset?: Uint8Array): Buffer[] {
  const pdus = [pDataPdu(pcId, true, true, command)];
  if (!dataset) return pdus;
  const cap = 4 * 1024 * 1024;
  const max = (maxPduLength === 0 ? cap : Math.min(maxPduLength, cap)) - 6;
  for (let at = 0; at < dataset.length || at === 0; at += max) {
    const end = Math.min(at + max, dataset.length);
    pdus.push(pDataPdu(pcId, false, end === dataset.length, dataset.subarray(at, end)));
    if (end === dataset.length) break;
  }
  return pdus;
}
