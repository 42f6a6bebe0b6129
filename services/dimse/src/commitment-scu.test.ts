import { describe, expect, it } from 'vitest';
import { commitmentRequestDataset, newTransactionUid, parseCommitmentReport } from './commitment-scu.ts';
import { eventReport, parseCommitRequest } from './commitment.ts';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const refs = [
  { sopClassUid: CT, sopInstanceUid: '1.2.3.1' },
  { sopClassUid: CT, sopInstanceUid: '1.2.3.2' },
];

describe('storage commitment SCU: the N-ACTION we send and the N-EVENT-REPORT we read (PS3.4 J.3)', () => {
  it('builds the N-ACTION data set our own SCP side reads back (Transaction UID, Referenced SOP Sequence)', () => {
    const transactionUid = newTransactionUid();
    const ds = commitmentRequestDataset({ transactionUid, refs });
    expect(ds['00081195']).toEqual({ vr: 'UI', Value: [transactionUid] });
    expect(parseCommitRequest(ds)).toEqual({ transactionUid, refs });
  });

  it('refuses to build a request that references nothing', () => {
    expect(() => commitmentRequestDataset({ transactionUid: '1.2', refs: [] })).toThrow(/at least one instance/);
  });

  it('makes a UUID-derived UID (PS3.5 B.2) of at most 64 characters, new each time', () => {
    const a = newTransactionUid();
    expect(a).toMatch(/^2\.25\.[1-9]\d*$/);
    expect(a.length).toBeLessThanOrEqual(64);
    expect(newTransactionUid()).not.toBe(a);
  });

  it('reads an event type 2 report: committed, and failed with each Failure Reason', () => {
    const { eventTypeId, dataset } = eventReport('1.2.9', { committed: [refs[0]!], failed: [{ ...refs[1]!, reason: 0x0112 }] }, 'PACS');
    expect(eventTypeId).toBe(2);
    expect(parseCommitmentReport(eventTypeId, dataset)).toEqual({
      transactionUid: '1.2.9',
      eventTypeId: 2,
      committed: [refs[0]],
      failed: [{ ...refs[1], reason: 0x0112 }],
    });
  });

  it('reads an event type 1 report (all committed)', () => {
    const { eventTypeId, dataset } = eventReport('1.2.9', { committed: refs, failed: [] }, 'PACS');
    expect(parseCommitmentReport(eventTypeId, dataset)).toMatchObject({ eventTypeId: 1, committed: refs, failed: [] });
  });

  it('counts a failed item without Failure Reason as a processing failure (0x0110)', () => {
    const ds = {
      '00081195': { vr: 'UI', Value: ['1.2.9'] },
      '00081198': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: [CT] }, '00081155': { vr: 'UI', Value: ['1.2.3.1'] } }] },
    };
    expect(parseCommitmentReport(2, ds).failed).toEqual([{ ...refs[0], reason: 0x0110 }]);
  });

  it('rejects other event types, a missing Transaction UID, an item without its instance UID', () => {
    expect(() => parseCommitmentReport(3, { '00081195': { vr: 'UI', Value: ['1.2'] } })).toThrow(/event type 3/);
    expect(() => parseCommitmentReport(1, {})).toThrow(/Transaction UID/);
    expect(() =>
      parseCommitmentReport(1, { '00081195': { vr: 'UI', Value: ['1.2'] }, '00081199': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: [CT] } }] } }),
    ).toThrow(/SOP Instance UID/);
  });
});
