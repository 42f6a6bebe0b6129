/**
 * A-ASSOCIATE-RQ read and A-ASSOCIATE-AC / A-RELEASE-RP written without dcmjs-dimse (PS3.8 §9.3.2,
 * §9.3.3, §9.3.7; user information sub-items PS3.7 Annex D.3.3).
 *
 * dcmjs-dimse reads an A-ASSOCIATE-RQ through a SmartBuffer, builds its log line (the association's
 * `toString`, every context with its UID names) whether logging is on or not, hands it on through an
 * async event emitter, and writes the A-ASSOCIATE-AC the same way: ~0.1 ms of the ~0.35 ms from request
 * to answer here (tcpdump on loopback), and a `findscu` or `echoscu` run is one association: the
 * C-FIND-per-findscu benchmark of issue 4 measures little else. The SCP (scp.ts) reads the request here,
 * decides the contexts as before on a dcmjs-dimse `Association` built from it (the rest of dcmjs-dimse
 * keeps using that object), and writes the answer here.
 */
import dimse from 'dcmjs-dimse';

const { Association } = dimse.association;
type DimseAssociation = InstanceType<typeof Association>;

/** The DICOM application context (PS3.7 Annex A.2.1); the only one there is. */
export const DICOM_APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';

export const A_ASSOCIATE_RQ = 0x01;
export const A_RELEASE_RQ = 0x05;

export interface ProposedContext {
  readonly id: number;
  readonly abstractSyntaxUid: string;
  readonly transferSyntaxUids: readonly string[];
}

/** What an A-ASSOCIATE-RQ asks for. */
export interface AssociateRq {
  readonly protocolVersion: number;
  /** The called and calling AE title fields as received (16 bytes each, padding kept). */
  readonly calledAeField: Buffer;
  readonly callingAeField: Buffer;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly applicationContextName: string;
  readonly contexts: readonly ProposedContext[];
  /** Maximum length of the PDUs the requester can receive; 0: no limit. */
  readonly maxPduLength: number;
  readonly implementationClassUid: string;
  readonly implementationVersionName: string;
  /** SCP/SCU Role Selection sub-items by abstract syntax (PS3.7 D.3.3.4), in the order received. */
  readonly roles: ReadonlyMap<string, { readonly scu: boolean; readonly scp: boolean }>;
  readonly asyncOps?: { readonly invoked: number; readonly performed: number };
  readonly userIdentity?: { readonly type: number; readonly positiveResponseRequested: boolean; readonly primary: string; readonly secondary: string };
}

export class AssociatePduError extends Error {}

/** A UID or AE title field: ASCII, trailing NUL and space padding removed (PS3.8 §9.3.2.2). */
function text(buf: Buffer, start: number, end: number): string {
  let e = end;
  while (e > start && (buf[e - 1] === 0 || buf[e - 1] === 0x20)) e--;
  return buf.toString('latin1', start, e);
}

/** Reads a whole A-ASSOCIATE-RQ PDU (type, reserved, length and all); throws AssociatePduError when malformed. */
export function parseAssociateRq(pdu: Buffer): AssociateRq {
  if (pdu.length < 74 || pdu[0] !== A_ASSOCIATE_RQ) throw new AssociatePduError('not an A-ASSOCIATE-RQ');
  const end = 6 + pdu.readUInt32BE(2);
  if (end > pdu.length) throw new AssociatePduError('A-ASSOCIATE-RQ shorter than its length');
  const contexts: ProposedContext[] = [];
  const roles = new Map<string, { scu: boolean; scp: boolean }>();
  let applicationContextName = '';
  let maxPduLength = 0;
  let implementationClassUid = '';
  let implementationVersionName = '';
  let asyncOps: AssociateRq['asyncOps'];
  let userIdentity: AssociateRq['userIdentity'];
  const item = (at: number, limit: number): { type: number; start: number; end: number } => {
    if (at + 4 > limit) throw new AssociatePduError('truncated item');
    const itemEnd = at + 4 + pdu.readUInt16BE(at + 2);
    if (itemEnd > limit) throw new AssociatePduError(`item 0x${pdu[at]!.toString(16)} overruns its parent`);
    return { type: pdu[at]!, start: at + 4, end: itemEnd };
  };
  for (let at = 74; at < end;) {
    const it = item(at, end);
    if (it.type === 0x10) {
      applicationContextName = text(pdu, it.start, it.end);
    } else if (it.type === 0x20) {
      if (it.end - it.start < 4) throw new AssociatePduError('presentation context item too short');
      const id = pdu[it.start]!;
      let abstractSyntaxUid = '';
      const transferSyntaxUids: string[] = [];
      for (let sub = it.start + 4; sub < it.end;) {
        const s = item(sub, it.end);
        if (s.type === 0x30) abstractSyntaxUid = text(pdu, s.start, s.end);
        else if (s.type === 0x40) transferSyntaxUids.push(text(pdu, s.start, s.end));
        sub = s.end;
      }
      contexts.push({ id, abstractSyntaxUid, transferSyntaxUids });
    } else if (it.type === 0x50) {
      for (let sub = it.start; sub < it.end;) {
        const s = item(sub, it.end);
        const len = s.end - s.start;
        if (s.type === 0x51 && len >= 4) maxPduLength = pdu.readUInt32BE(s.start);
        else if (s.type === 0x52) implementationClassUid = text(pdu, s.start, s.end);
        else if (s.type === 0x55) implementationVersionName = text(pdu, s.start, s.end);
        else if (s.type === 0x53 && len >= 4) asyncOps = { invoked: pdu.readUInt16BE(s.start), performed: pdu.readUInt16BE(s.start + 2) };
        else if (s.type === 0x54 && len >= 2) {
          const uidEnd = s.start + 2 + pdu.readUInt16BE(s.start);
          if (uidEnd + 2 > s.end) throw new AssociatePduError('role selection sub-item too short');
          const uid = text(pdu, s.start + 2, uidEnd);
          if (!roles.has(uid)) roles.set(uid, { scu: pdu[uidEnd] === 1, scp: pdu[uidEnd + 1] === 1 });
        } else if (s.type === 0x58 && len >= 4) {
          const primaryEnd = s.start + 4 + pdu.readUInt16BE(s.start + 2);
          const secondaryEnd = primaryEnd + 2 <= s.end ? primaryEnd + 2 + pdu.readUInt16BE(primaryEnd) : primaryEnd;
          if (secondaryEnd > s.end) throw new AssociatePduError('user identity sub-item too short');
          userIdentity = {
            type: pdu[s.start]!,
            positiveResponseRequested: pdu[s.start + 1] === 1,
            primary: pdu.toString('utf8', s.start + 4, primaryEnd),
            secondary: secondaryEnd > primaryEnd ? pdu.toString('utf8', primaryEnd + 2, secondaryEnd) : '',
          };
        }
        // Anything else (extended negotiation 0x56, common extended negotiation 0x57) is not answered,
        // which PS3.7 D.3.3.5 and D.3.3.6 read as "not supported".
        sub = s.end;
      }
    }
    at = it.end;
  }
  return {
    protocolVersion: pdu.readUInt16BE(6),
    calledAeField: pdu.subarray(10, 26),
    callingAeField: pdu.subarray(26, 42),
    calledAeTitle: text(pdu, 10, 26).trim(),
    callingAeTitle: text(pdu, 26, 42).trim(),
    applicationContextName,
    contexts,
    maxPduLength,
    implementationClassUid,
    implementationVersionName,
    roles,
    ...(asyncOps ? { asyncOps } : {}),
    ...(userIdentity ? { userIdentity } : {}),
  };
}

/**
 * The dcmjs-dimse Association the rest of the SCP works with (contexts and their results, AE titles,
 * the requester's maximum PDU length), filled as dcmjs-dimse's own reader fills it.
 */
export function toDimseAssociation(rq: AssociateRq): DimseAssociation {
  const association = new Association(rq.callingAeTitle, rq.calledAeTitle);
  association.setMaxPduLength(rq.maxPduLength);
  association.setImplementationClassUid(rq.implementationClassUid);
  association.setImplementationVersion(rq.implementationVersionName);
  for (const pc of rq.contexts) {
    association.addPresentationContext(pc.abstractSyntaxUid, pc.id);
    for (const ts of pc.transferSyntaxUids) association.addTransferSyntaxToPresentationContext(pc.id, ts);
  }
  for (const [uid, role] of rq.roles) {
    const first = association.getPresentationContexts().find((p) => p.context.getAbstractSyntaxUid() === uid);
    if (first) {
      first.context.setUserRole(role.scu);
      first.context.setProviderRole(role.scp);
    }
  }
  if (rq.asyncOps) {
    association.setMaxAsyncOpsInvoked(rq.asyncOps.invoked);
    association.setMaxAsyncOpsPerformed(rq.asyncOps.performed);
  }
  if (rq.userIdentity) {
    association.setUserIdentityType(rq.userIdentity.type);
    association.setUserIdentityPositiveResponseRequested(rq.userIdentity.positiveResponseRequested);
    association.setUserIdentityPrimaryField(rq.userIdentity.primary);
    association.setUserIdentitySecondaryField(rq.userIdentity.secondary);
    association.setNegotiateUserIdentity(true);
  }
  return association;
}

/** A small big-endian PDU writer: items are appended, lengths patched when an item closes. */
class PduWriter {
  private buf = Buffer.allocUnsafe(1024);
  private len = 0;
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): this {
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }
  u16(v: number): this {
    this.room(2);
    this.len = this.buf.writeUInt16BE(v, this.len);
    return this;
  }
  u32(v: number): this {
    this.room(4);
    this.len = this.buf.writeUInt32BE(v >>> 0, this.len);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }
  ascii(s: string): this {
    this.room(s.length);
    this.len += this.buf.write(s, this.len, 'latin1');
    return this;
  }
  /** Type, reserved byte and a 16-bit length covering what `body` appends. */
  item(type: number, body: () => void): this {
    this.u8(type).u8(0);
    const at = this.len;
    this.u16(0);
    body();
    this.buf.writeUInt16BE(this.len - at - 2, at);
    return this;
  }
  /** Copies out the PDU, its 32-bit length patched at offset 2. */
  finish(): Buffer {
    this.buf.writeUInt32BE(this.len - 6, 2);
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

export interface ContextResult {
  readonly id: number;
  /** PS3.8 Table 9-18: 0 acceptance, 1 user rejection, 2 no reason, 3 abstract syntax, 4 transfer syntaxes. */
  readonly result: number;
  readonly transferSyntaxUid?: string | undefined;
}

export interface LocalIdentity {
  readonly maxPduLength: number;
  readonly implementationClassUid: string;
  readonly implementationVersionName: string;
}

/**
 * The A-ASSOCIATE-AC for a request: one result per proposed context, our maximum PDU length and
 * implementation identity, and each proposed SCP/SCU role selection accepted as proposed (the C-GET
 * requester's SCP role for its storage classes, a storage commitment report's SCP role). Asynchronous
 * operations are not offered: without that sub-item both sides work one operation at a time (PS3.7
 * D.3.3.3). A User Identity server response is not sent (the request's identity is not checked).
 */
export function encodeAssociateAc(rq: AssociateRq, results: readonly ContextResult[], local: LocalIdentity): Buffer {
  const w = new PduWriter();
  w.u8(0x02).u8(0).u32(0);
  w.u16(0x0001).u16(0);
  w.bytes(rq.calledAeField).bytes(rq.callingAeField);
  w.bytes(new Uint8Array(32));
  w.item(0x10, () => w.ascii(DICOM_APPLICATION_CONTEXT));
  for (const r of results) {
    w.item(0x21, () => {
      w.u8(r.id).u8(0).u8(r.result).u8(0);
      w.item(0x40, () => w.ascii(r.transferSyntaxUid || IMPLICIT_LE));
    });
  }
  w.item(0x50, () => {
    w.item(0x51, () => w.u32(local.maxPduLength));
    w.item(0x52, () => w.ascii(local.implementationClassUid));
    const proposed = new Set(rq.contexts.map((c) => c.abstractSyntaxUid));
    for (const [uid, role] of rq.roles) {
      if (!proposed.has(uid)) continue;
      w.item(0x54, () => {
        w.u16(uid.length).ascii(uid);
        w.u8(role.scu ? 1 : 0).u8(role.scp ? 1 : 0);
      });
    }
    w.item(0x55, () => w.ascii(local.implementationVersionName));
  });
  return w.finish();
}

/** A-ASSOCIATE-RJ (PS3.8 §9.3.4): result, source, reason/diagnostic. */
export function encodeAssociateRj(result: number, source: number, reason: number): Buffer {
  return Buffer.from([0x03, 0, 0, 0, 0, 4, 0, result, source, reason]);
}

/** A-ABORT (PS3.8 §9.3.8): source (0 service user, 2 service provider), reason/diagnostic. */
export function encodeAbort(source: number, reason: number): Buffer {
  return Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, source, reason]);
}

/** A-RELEASE-RP (PS3.8 §9.3.7). */
export const A_RELEASE_RP = Buffer.from([0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
