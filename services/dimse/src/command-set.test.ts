import { describe, expect, it } from 'vitest';
import dimse from 'dcmjs-dimse';
import { dimseMessagePdus, encodeCommandSet } from './command-set.ts';

const { CMoveResponse, CGetResponse, CFindResponse, CEchoResponse, NActionResponse } = dimse.responses;
const { CStoreRequest, NEventReportRequest } = dimse.requests;

/** What dcmjs-dimse itself writes for a message's command set. */
function dcmjsBytes(message: { getCommandDataset(): unknown }): Buffer {
  const ds = message.getCommandDataset() as { getDenaturalizedCommandDataset(): ArrayBuffer | Buffer };
  return Buffer.from(ds.getDenaturalizedCommandDataset() as Buffer);
}
/** dcmjs-dimse's messages built empty and filled with setters (its typings want constructor arguments). */
const empty = <T>(ctor: abstract new (...args: never[]) => T): T => new (ctor as unknown as new () => T)();
const elementsOf = (message: { getCommandDataset(): unknown }): Record<string, unknown> =>
  (message.getCommandDataset() as { getElements(): Record<string, unknown> }).getElements();

describe('encodeCommandSet', () => {
  it('writes the bytes dcmjs-dimse writes for the responses the SCP sends', () => {
    const move = empty(CMoveResponse);
    move.setAffectedSopClassUid('1.2.840.10008.5.1.4.1.2.2.2');
    move.setMessageIdBeingRespondedTo(7);
    move.setStatus(0xff00);
    move.setRemaining(499);
    move.setCompleted(1);
    move.setFailures(0);
    move.setWarnings(0);
    const get = empty(CGetResponse);
    get.setMessageIdBeingRespondedTo(65535);
    get.setStatus(0xb000);
    get.setCompleted(2);
    get.setFailures(1);
    get.setWarnings(0);
    get.setErrorComment('some failed'); // odd length: space padded
    const find = empty(CFindResponse);
    find.setAffectedSopClassUid('1.2.840.10008.5.1.4.1.2.1.1'); // odd length: NUL padded
    find.setMessageIdBeingRespondedTo(3);
    find.setStatus(0xa900);
    find.setErrorComment('');
    const echo = empty(CEchoResponse);
    echo.setMessageIdBeingRespondedTo(1);
    echo.setStatus(0);
    const action = empty(NActionResponse);
    action.setMessageIdBeingRespondedTo(9);
    action.setStatus(0x0000);
    const store = empty(CStoreRequest);
    store.setAffectedSopClassUid('1.2.840.10008.5.1.4.1.1.2');
    store.setAffectedSopInstanceUid('1.2.3.4.5');
    store.setMessageId(12);
    const storeCommand = store.getCommandDataset() as unknown as { setElement(keyword: string, value: unknown): void };
    storeCommand.setElement('MoveOriginatorApplicationEntityTitle', 'MOVESCU');
    storeCommand.setElement('MoveOriginatorMessageID', 4);
    const report = new NEventReportRequest('1.2.840.10008.1.20.1', '1.2.840.10008.1.20.1.1', 2);
    for (const m of [move, get, find, echo, action, store, report]) {
      const ours = encodeCommandSet(elementsOf(m));
      expect(ours, JSON.stringify(elementsOf(m))).toBeDefined();
      expect(ours!.toString('hex'), JSON.stringify(elementsOf(m))).toBe(dcmjsBytes(m).toString('hex'));
    }
  });

  it('leaves what it does not know to dcmjs', () => {
    expect(encodeCommandSet({ CommandField: 0x8020, OffendingElement: ['00100010'] })).toBeUndefined();
    expect(encodeCommandSet({ CommandField: 0x8020, Status: 0x10000 })).toBeUndefined();
    expect(encodeCommandSet({ CommandField: 0x8020, ErrorComment: 'ä' })).toBeUndefined();
    expect(encodeCommandSet({ CommandField: 0x8020, Status: [1, 2] })).toBeUndefined();
  });
});

describe('dimseMessagePdus', () => {
  it('puts the command in one PDU and cuts the data set to the PDU size, the last PDV flagged', () => {
    const command = encodeCommandSet({ CommandField: 0x8020, CommandDataSetType: 0x0000, Status: 0xff00 })!;
    const dataset = Buffer.from(Array.from({ length: 40_000 }, (_, i) => i % 251));
    const pdus = dimseMessagePdus(5, 16_384, command, dataset);
    expect(pdus).toHaveLength(4);
    expect(pdus[0]![11]).toBe(0x03);
    expect(pdus[0]!.subarray(12).equals(command)).toBe(true);
    for (const p of pdus) {
      expect(p[0]).toBe(0x04);
      expect(p.length).toBeLessThanOrEqual(16_384 + 6);
      expect(p.readUInt32BE(2)).toBe(p.length - 6);
      expect(p.readUInt32BE(6)).toBe(p.length - 10);
      expect(p[10]).toBe(5);
    }
    expect(pdus.slice(1).map((p) => p[11])).toEqual([0x00, 0x00, 0x02]);
    expect(Buffer.concat(pdus.slice(1).map((p) => p.subarray(12))).equals(dataset)).toBe(true);
    expect(dimseMessagePdus(1, 0, command)).toHaveLength(1);
  });
});
