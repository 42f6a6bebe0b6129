/** Helpers shared by the DIMSE integration tests. */
import type { Db } from '@portico/db';

/** Waits until `SELECT count(*) FROM <table>` reaches n (the worker indexed, the refresh cached…). */
export async function waitForRows(db: Db, table: 'instance' | 'worklist_item', n: number, timeoutMs = 60_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; ;) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    if (rows[0]!.n >= n) return;
    if (Date.now() > until) throw new Error(`only ${rows[0]!.n} of ${n} rows in ${table} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const CT = '1.2.840.10008.5.1.4.1.1.2';
export const FIND = '1.2.840.10008.5.1.4.1.2.2.1';
export const EXPLICIT = '1.2.840.10008.1.2.1';
export const IMPLICIT = '1.2.840.10008.1.2';

/** Item: type, reserved, 16-bit length, body. */
function item(type: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  const head = Buffer.from([type, 0, 0, 0]);
  head.writeUInt16BE(b.length, 2);
  return Buffer.concat([head, b]);
}
export const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
export const u16 = (v: number): Buffer => Buffer.from([v >> 8, v & 0xff]);
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
const ae = (s: string): Buffer => ascii(s.padEnd(16, ' '));

/** An A-ASSOCIATE-RQ as dcmtk writes one (UIDs NUL-padded to even length where odd). */
export function rqPdu(opts: { version?: number; appContext?: string } = {}): Buffer {
  const body = Buffer.concat([
    u16(opts.version ?? 1),
    u16(0),
    ae('PORTICO'),
    ae('FINDSCU'),
    Buffer.alloc(32),
    item(0x10, ascii(opts.appContext ?? '1.2.840.10008.3.1.1.1\0')),
    item(0x20, Buffer.from([1, 0, 0, 0]), item(0x30, ascii(FIND + '\0')), item(0x40, ascii(EXPLICIT + '\0')), item(0x40, ascii(IMPLICIT))),
    item(0x20, Buffer.from([3, 0, 0, 0]), item(0x30, ascii(CT)), item(0x40, ascii(IMPLICIT))),
    item(
      0x50,
      item(0x51, u32(16384)),
      item(0x52, ascii('1.2.276.0.7230010.3.0.3.6.7')),
      item(0x53, u16(4), u16(2)),
      item(0x54, u16(CT.length), ascii(CT), Buffer.from([0, 1])),
      item(0x54, u16(7), ascii('1.2.3.4'), Buffer.from([1, 1])),
      item(0x55, ascii('OFFIS_DCMTK_367')),
      item(0x58, Buffer.from([2, 1]), u16(4), ascii('user'), u16(6), ascii('secret')),
    ),
  ]);
  const head = Buffer.from([0x01, 0, 0, 0, 0, 0]);
  head.writeUInt32BE(body.length, 2);
  return Buffer.concat([head, body]);
}
