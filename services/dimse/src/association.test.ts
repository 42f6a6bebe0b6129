import { describe, expect, it } from 'vitest';
import { ascii, rqPdu, u16, CT, EXPLICIT, FIND, IMPLICIT } from './test-support.ts';
import { AssociatePduError, encodeAssociateAc, encodeAbort, encodeAssociateRj, parseAssociateRq, toDimseAssociation, A_RELEASE_RP } from './association.ts';

/** The sub-items of an item body, as [type, body] pairs. */
function items(buf: Buffer, start: number, end: number): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  for (let at = start; at < end;) {
    const len = buf.readUInt16BE(at + 2);
    out.push([buf[at]!, buf.subarray(at + 4, at + 4 + len)]);
    at += 4 + len;
  }
  return out;
}

describe('parseAssociateRq', () => {
  it('reads AE titles, contexts and every user information sub-item, padding removed', () => {
    const rq = parseAssociateRq(rqPdu());
    expect(rq.calledAeTitle).toBe('PORTICO');
    expect(rq.callingAeTitle).toBe('FINDSCU');
    expect(rq.protocolVersion).toBe(1);
    expect(rq.applicationContextName).toBe('1.2.840.10008.3.1.1.1');
    expect(rq.contexts).toEqual([
      { id: 1, abstractSyntaxUid: FIND, transferSyntaxUids: [EXPLICIT, IMPLICIT] },
      { id: 3, abstractSyntaxUid: CT, transferSyntaxUids: [IMPLICIT] },
    ]);
    expect(rq.maxPduLength).toBe(16384);
    expect(rq.implementationClassUid).toBe('1.2.276.0.7230010.3.0.3.6.7');
    expect(rq.implementationVersionName).toBe('OFFIS_DCMTK_367');
    expect(rq.asyncOps).toEqual({ invoked: 4, performed: 2 });
    expect([...rq.roles]).toEqual([
      [CT, { scu: false, scp: true }],
      ['1.2.3.4', { scu: true, scp: true }],
    ]);
    expect(rq.userIdentity).toEqual({ type: 2, positiveResponseRequested: true, primary: 'user', secondary: 'secret' });
  });

  it('rejects what is not a whole, well-formed A-ASSOCIATE-RQ', () => {
    const good = rqPdu();
    expect(() => parseAssociateRq(good.subarray(0, 60))).toThrow(AssociatePduError);
    expect(() => parseAssociateRq(good.subarray(0, good.length - 3))).toThrow(/shorter than its length/);
    // An item whose length runs past the PDU.
    const bad = Buffer.from(good);
    bad.writeUInt16BE(0xfff0, 74 + 2);
    expect(() => parseAssociateRq(bad)).toThrow(/overruns/);
    const notRq = Buffer.from(good);
    notRq[0] = 0x02;
    expect(() => parseAssociateRq(notRq)).toThrow(/not an A-ASSOCIATE-RQ/);
  });

  it('fills a dcmjs-dimse Association the rest of the SCP can use', () => {
    const a = toDimseAssociation(parseAssociateRq(rqPdu()));
    expect(a.getCallingAeTitle()).toBe('FINDSCU');
    expect(a.getMaxPduLength()).toBe(16384);
    expect(a.getPresentationContext(1).getTransferSyntaxUids()).toEqual([EXPLICIT, IMPLICIT]);
    expect(a.getPresentationContext(3).getAbstractSyntaxUid()).toBe(CT);
    expect(a.getPresentationContext(3).getProviderRole()).toBe(true);
    expect(a.getPresentationContext(3).getUserRole()).toBe(false);
    expect(a.getNegotiateUserIdentity()).toBe(true);
  });
});

describe('encodeAssociateAc', () => {
  const local = { maxPduLength: 524288, implementationClassUid: '1.2.826.0.1.3680043.10.1482.1', implementationVersionName: 'PORTICO_010' };

  it('answers each context, echoes the AE fields and the proposed roles, and carries our identity', () => {
    const rq = parseAssociateRq(rqPdu());
    const ac = encodeAssociateAc(
      rq,
      [
        { id: 1, result: 0, transferSyntaxUid: EXPLICIT },
        { id: 3, result: 3, transferSyntaxUid: undefined },
      ],
      local,
    );
    expect(ac[0]).toBe(0x02);
    expect(ac.readUInt32BE(2)).toBe(ac.length - 6);
    expect(ac.readUInt16BE(6)).toBe(1);
    expect(ac.subarray(10, 26).toString('latin1')).toBe('PORTICO'.padEnd(16));
    expect(ac.subarray(26, 42).toString('latin1')).toBe('FINDSCU'.padEnd(16));
    const top = items(ac, 74, ac.length);
    expect(top.map(([t]) => t)).toEqual([0x10, 0x21, 0x21, 0x50]);
    expect(top[0]![1].toString('latin1')).toBe('1.2.840.10008.3.1.1.1');
    const [pc1, pc3] = [top[1]![1], top[2]![1]];
    expect([pc1[0], pc1[2]]).toEqual([1, 0]);
    expect(items(pc1, 4, pc1.length)).toEqual([[0x40, ascii(EXPLICIT)]]);
    expect([pc3[0], pc3[2]]).toEqual([3, 3]);
    const user = items(top[3]![1], 0, top[3]![1].length);
    expect(user.map(([t]) => t)).toEqual([0x51, 0x52, 0x54, 0x55]);
    expect(user[0]![1].readUInt32BE(0)).toBe(524288);
    expect(user[1]![1].toString('latin1')).toBe(local.implementationClassUid);
    // The CT role (SCP) echoed; 1.2.3.4 was not a proposed context; no asynchronous operations window.
    expect(user[2]![1]).toEqual(Buffer.concat([u16(CT.length), ascii(CT), Buffer.from([0, 1])]));
    expect(user[3]![1].toString('latin1')).toBe('PORTICO_010');
  });

  it('writes the fixed PDUs of a rejection, an abort and a release', () => {
    expect([...encodeAssociateRj(1, 2, 2)]).toEqual([0x03, 0, 0, 0, 0, 4, 0, 1, 2, 2]);
    expect([...encodeAbort(2, 6)]).toEqual([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6]);
    expect([...A_RELEASE_RP]).toEqual([0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
  });
});
