/**
 * Splits a TCP byte stream into whole PDUs (PS3.8 §9.3.1: type, reserved, 32-bit big-endian length).
 *
 * dcmjs-dimse's own accumulator re-concatenates the partial PDU with every arriving socket chunk, which
 * copies a 256 KiB P-DATA-TF PDU two to three times over and makes the garbage collector the largest CPU
 * user on the C-STORE path. This reader keeps the chunks in a list and copies each PDU at most once —
 * not at all when it lies inside one chunk (a view is handed on). With an `onPData` handler, P-DATA-TF
 * PDUs are not copied at all: they are handed on as the list of chunk views they span (a 128 KiB PDU
 * arrives in two or three socket reads), for the C-STORE path to walk in place (p-data.ts).
 */

const EMPTY = Buffer.alloc(0);

/** PDU types of PS3.8 Table 9-11. */
const PDU_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);

export class PduReader {
  /** Unconsumed chunks are chunks[head..]; the first may be partly consumed (it is re-sliced). */
  private chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  /** Size of the PDU being collected (header included); 0 while its header is incomplete. */
  private need = 0;
  private readonly onPdu: (pdu: Buffer) => void;
  private readonly onError: (err: Error) => void;
  private readonly onPData: ((parts: Buffer[]) => void) | undefined;
  private failed = false;

  /** onPData, when given, receives every P-DATA-TF PDU (type 0x04) as views of the chunks it spans, in order. */
  constructor(onPdu: (pdu: Buffer) => void, onError: (err: Error) => void, onPData?: (parts: Buffer[]) => void) {
    this.onPdu = onPdu;
    this.onError = onError;
    this.onPData = onPData;
  }

  /** Bytes held while waiting for the rest of a PDU. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need === 0) {
        if (this.buffered < 6) return;
        const header = this.peek6();
        const type = header[0]!;
        if (!PDU_TYPES.has(type)) {
          this.failed = true;
          this.onError(new Error(`unknown PDU type 0x${type.toString(16).padStart(2, '0')}`));
          return;
        }
        this.need = 6 + header.readUInt32BE(2);
      }
      if (this.buffered < this.need) return;
      const n = this.need;
      this.need = 0;
      if (this.onPData && this.chunks[this.head]![0] === 0x04) this.onPData(this.takeViews(n));
      else this.onPdu(this.take(n));
    }
  }

  /** The first 6 bytes, copying only when they span chunks. */
  private peek6(): Buffer {
    const first = this.chunks[this.head]!;
    if (first.length >= 6) return first;
    const out = Buffer.allocUnsafe(6);
    let offset = 0;
    for (let i = this.head; offset < 6; i++) offset += this.chunks[i]!.copy(out, offset, 0, Math.min(this.chunks[i]!.length, 6 - offset));
    return out;
  }

  /** Removes and returns the first n bytes (n <= buffered) as views of the chunks they lie in. */
  private takeViews(n: number): Buffer[] {
    this.buffered -= n;
    const out: Buffer[] = [];
    for (let left = n; left > 0;) {
      const c = this.chunks[this.head]!;
      if (c.length <= left) {
        out.push(c);
        left -= c.length;
        this.chunks[this.head++] = EMPTY;
      } else {
        out.push(c.subarray(0, left));
        this.chunks[this.head] = c.subarray(left);
        left = 0;
      }
    }
    this.compact();
    return out;
  }

  /** Removes and returns the first n bytes (n <= buffered): a view when they lie in one chunk. */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.head++;
      else this.chunks[this.head] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let offset = 0;
      while (offset < n) {
        const c = this.chunks[this.head]!;
        const want = n - offset;
        if (c.length <= want) {
          offset += c.copy(out, offset);
          this.head++;
        } else {
          offset += c.copy(out, offset, 0, want);
          this.chunks[this.head] = c.subarray(want);
        }
      }
    }
    this.compact();
    return out;
  }

  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
