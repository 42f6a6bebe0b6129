import { describe, expect, it } from 'vitest';
import { PDataRouter, parseCommand, storeResponsePdu, type PDataHost } from './p-data.ts';
import { parseStoreResponse, storeCommand } from './store-scu.ts';
import type { StoreOutcome, StoreSink } from './c-store.ts';

/** A PDV item: length, presentation context, control header (bit 0 command, bit 1 last), data. */
function pdv(pcId: number, command: boolean, last: boolean, data: Buffer): Buffer {
  const out = Buffer.alloc(6 + data.length);
  out.writeUInt32BE(2 + data.length, 0);
  out[4] = pcId;
  out[5] = (command ? 1 : 0) | (last ? 2 : 0);
  data.copy(out, 6);
  return out;
}
function pData(...items: Buffer[]): Buffer {
  const body = Buffer.concat(items);
  const head = Buffer.from([0x04, 0, 0, 0, 0, 0]);
  head.writeUInt32BE(body.length, 2);
  return Buffer.concat([head, body]);
}

/** A command set without a data set (C-ECHO-RQ-like) and with one (C-FIND-RQ-like). */
function otherCommand(commandField: number, withDataSet: boolean): Buffer {
  const el = (tag: number, value: Buffer): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt16LE(tag, 2);
    b.writeUInt32LE(value.length, 4);
    return Buffer.concat([b, value]);
  };
  const us = (v: number): Buffer => Buffer.from([v & 0xff, v >> 8]);
  return Buffer.concat([
    el(0x0002, Buffer.from('1.2.840.10008.1.1\0')),
    el(0x0100, us(commandField)),
    el(0x0110, us(7)),
    el(0x0800, us(withDataSet ? 0 : 0x0101)),
  ]);
}

const STORE = storeCommand({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.3.4', messageId: 42 });

class FakeSink {
  readonly chunks: Buffer[] = [];
  ended = false;
  aborted: Error | undefined;
  full = false;
  drainedResolve: (() => void) | undefined;
  settle!: (o: StoreOutcome) => void;
  readonly outcome = new Promise<StoreOutcome>((resolve) => (this.settle = resolve));
  get receiving(): boolean {
    return !this.ended && !this.aborted;
  }
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return !this.full;
  }
  drained(): Promise<void> {
    return new Promise((resolve) => (this.drainedResolve = resolve));
  }
  end(): void {
    this.ended = true;
  }
  abort(err: Error): void {
    this.aborted = err;
  }
}

function harness(opts: { accept?: boolean; takeCommand?: number } = {}) {
  const taken: Array<{ pcId: number; messageId: number; dataSet: Buffer }> = [];
  const forwarded: Buffer[] = [];
  const sent: Buffer[] = [];
  const sinks: FakeSink[] = [];
  const events: string[] = [];
  const host: PDataHost = {
    forward: (pdu) => forwarded.push(pdu),
    beginStore: (pcId, command) => {
      events.push(`begin ${pcId} ${command.affectedSopInstanceUid} ${command.messageId}`);
      if (opts.accept === false) return undefined;
      const sink = new FakeSink();
      sinks.push(sink);
      return sink as unknown as StoreSink;
    },
    ...(opts.takeCommand !== undefined
      ? {
          takeDataSet: (pcId: number, command: { commandField: number; messageId: number }) =>
            command.commandField === opts.takeCommand ? (dataSet: Buffer) => void taken.push({ pcId, messageId: command.messageId, dataSet }) : undefined,
        }
      : {}),
    send: (pdu) => sent.push(pdu),
    pause: () => events.push('pause'),
    resume: () => events.push('resume'),
    abort: (reason) => events.push(`abort ${reason}`),
  };
  return { router: new PDataRouter(host), forwarded, sent, sinks, events, taken };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('parseCommand and storeResponsePdu', () => {
  it('reads a C-STORE-RQ command set', () => {
    expect(parseCommand(STORE)).toEqual({
      commandField: 1,
      messageId: 42,
      hasDataSet: true,
      affectedSopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      affectedSopInstanceUid: '1.2.3.4',
    });
    expect(() => parseCommand(STORE.subarray(0, STORE.length - 3))).toThrow();
  });

  it('writes a C-STORE-RSP that a C-STORE SCU reads back, error comment at most 64 characters', () => {
    const pdu = storeResponsePdu(3, {
      messageId: 42,
      sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      sopInstanceUid: '1.2.3',
      status: 0xa700,
      errorComment: 'x'.repeat(80),
    });
    expect(pdu[0]).toBe(0x04);
    expect(pdu.readUInt32BE(2)).toBe(pdu.length - 6);
    expect(pdu[10]).toBe(3);
    expect(pdu[11]).toBe(0x03);
    const command = pdu.subarray(12);
    expect(command.readUInt32LE(8)).toBe(command.length - 12); // (0000,0000) group length
    expect(parseStoreResponse(command)).toEqual({ commandField: 0x8001, messageIdBeingRespondedTo: 42, status: 0xa700, errorComment: 'x'.repeat(64) });
    const parsed = parseCommand(command);
    expect(parsed.affectedSopInstanceUid).toBe('1.2.3');
    expect(parsed.hasDataSet).toBe(false);
  });
});

describe('PDataRouter', () => {
  it('streams a data set split over many PDUs to the sink as views, then answers with the outcome', async () => {
    const { router, forwarded, sent, sinks, events } = harness();
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    router.onPData(pData(pdv(1, true, true, STORE)));
    for (let at = 0; at < data.length; at += 300) router.onPData(pData(pdv(1, false, at + 300 >= data.length, data.subarray(at, at + 300))));
    expect(forwarded).toEqual([]);
    expect(events).toEqual(['begin 1 1.2.3.4 42']);
    const sink = sinks[0]!;
    expect(Buffer.concat(sink.chunks).equals(data)).toBe(true);
    expect(sink.ended).toBe(true);
    expect(sent).toEqual([]); // not before the outcome
    sink.settle({ status: 0 });
    await flush();
    expect(sent).toHaveLength(1);
    expect(parseStoreResponse(sent[0]!.subarray(12))).toMatchObject({ messageIdBeingRespondedTo: 42, status: 0 });
    expect(sent[0]![10]).toBe(1);
  });

  it('takes a command split over two PDUs, and command and data set fragments in one PDU', async () => {
    const { router, forwarded, sinks } = harness();
    router.onPData(pData(pdv(3, true, false, STORE.subarray(0, 20))));
    router.onPData(pData(pdv(3, true, true, STORE.subarray(20)), pdv(3, false, false, Buffer.from('abc')), pdv(3, false, true, Buffer.from('def'))));
    expect(forwarded).toEqual([]);
    expect(Buffer.concat(sinks[0]!.chunks).toString()).toBe('abcdef');
    expect(sinks[0]!.ended).toBe(true);
  });

  it('hands other messages to dcmjs-dimse: the PDU itself when it is all theirs', () => {
    const { router, forwarded, sinks } = harness();
    const echo = pData(pdv(1, true, true, otherCommand(0x0030, false)));
    router.onPData(echo);
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]).toBe(echo);
    // C-FIND: command, then an identifier over two PDUs, all forwarded unchanged
    const find = [
      pData(pdv(1, true, true, otherCommand(0x0020, true))),
      pData(pdv(1, false, false, Buffer.from('id1'))),
      pData(pdv(1, false, true, Buffer.from('id2'))),
    ];
    for (const p of find) router.onPData(p);
    expect(forwarded.slice(1)).toEqual(find);
    expect(forwarded[3]).toBe(find[2]);
    expect(sinks).toEqual([]);
  });

  it('replays a command split over PDUs, and splits a PDU that mixes a C-FIND with a C-STORE', () => {
    const { router, forwarded, sinks } = harness();
    const find = otherCommand(0x0020, true);
    const a = pdv(1, true, false, find.subarray(0, 10));
    const b = pdv(1, true, true, find.subarray(10));
    router.onPData(pData(a));
    expect(forwarded).toEqual([]);
    const identifier = pdv(1, false, true, Buffer.from('id'));
    router.onPData(pData(b, identifier, pdv(5, true, true, STORE), pdv(5, false, true, Buffer.from('xyz'))));
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]!.equals(pData(a, b, identifier))).toBe(true);
    expect(Buffer.concat(sinks[0]!.chunks).toString()).toBe('xyz');
  });

  it('pauses reading while the sink is full and resumes when it drains', async () => {
    const { router, sinks, events } = harness();
    router.onPData(pData(pdv(1, true, true, STORE)));
    sinks[0]!.full = true;
    router.onPData(pData(pdv(1, false, false, Buffer.from('a'))));
    router.onPData(pData(pdv(1, false, false, Buffer.from('b'))));
    expect(events.filter((e) => e === 'pause')).toHaveLength(1);
    sinks[0]!.drainedResolve!();
    await flush();
    expect(events.at(-1)).toBe('resume');
  });

  it('aborts on a command in the middle of a data set, or a C-STORE on a context that was not accepted', () => {
    const h = harness();
    h.router.onPData(pData(pdv(1, true, true, STORE), pdv(1, false, false, Buffer.from('a'))));
    h.router.onPData(pData(pdv(1, true, true, otherCommand(0x0030, false))));
    expect(h.events.at(-1)).toMatch(/^abort /);
    expect(h.sinks[0]!.aborted).toBeInstanceOf(Error);
    h.router.onPData(pData(pdv(1, true, true, otherCommand(0x0030, false))));
    expect(h.forwarded).toEqual([]); // nothing more after the abort

    const r = harness({ accept: false });
    r.router.onPData(pData(pdv(9, true, true, STORE)));
    expect(r.events.at(-1)).toMatch(/^abort .*not accepted/);
  });

  it('drops a data set in flight when the association ends, and leaves a finished one alone', () => {
    const { router, sinks } = harness();
    router.onPData(pData(pdv(1, true, true, STORE), pdv(1, false, true, Buffer.from('done'))));
    router.onPData(pData(pdv(1, true, true, STORE), pdv(1, false, false, Buffer.from('half'))));
    router.close('association aborted');
    expect(sinks[0]!.aborted).toBeUndefined();
    expect(sinks[1]!.aborted?.message).toBe('association aborted');
  });
});

describe('PDataRouter with PDUs as chunk views', () => {
  /** Cuts a buffer at the given offsets into views. */
  const cut = (b: Buffer, at: number[]): Buffer[] => {
    const points = [0, ...at.filter((x) => x > 0 && x < b.length).sort((x, y) => x - y), b.length];
    return points.slice(1).map((end, i) => b.subarray(points[i], end));
  };

  it('gives the sink the same bytes and dcmjs-dimse the same messages however the PDUs are cut', async () => {
    const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));
    const echo = otherCommand(0x0030, false);
    const pdus = [
      pData(pdv(1, true, true, STORE)),
      pData(pdv(1, false, false, data.subarray(0, 1500)), pdv(1, false, false, data.subarray(1500, 1600))),
      pData(pdv(1, false, false, data.subarray(1600, 4000))),
      // the last fragment, then a C-ECHO in the same PDU
      pData(pdv(1, false, true, data.subarray(4000)), pdv(1, true, true, echo)),
    ];
    const reference = harness();
    for (const p of pdus) reference.router.onPData(p);
    let seed = 1;
    const random = (n: number): number => (seed = (seed * 48271) % 0x7fffffff) % n;
    for (let round = 0; round < 50; round++) {
      const h = harness();
      for (const p of pdus)
        h.router.onPData(
          cut(
            p,
            Array.from({ length: random(5) }, () => random(p.length)),
          ),
        );
      expect(Buffer.concat(h.sinks[0]!.chunks).equals(data)).toBe(true);
      expect(h.sinks[0]!.ended).toBe(true);
      expect(h.forwarded.map((f) => f.toString('hex'))).toEqual(reference.forwarded.map((f) => f.toString('hex')));
      expect(h.events).toEqual(reference.events);
    }
    expect(reference.forwarded).toHaveLength(1);
    expect(parseCommand(reference.forwarded[0]!.subarray(12)).commandField).toBe(0x0030);
  });

  it('aborts on a command PDV inside a data set delivered as views', () => {
    const h = harness();
    h.router.onPData(pData(pdv(1, true, true, STORE)));
    h.router.onPData(cut(pData(pdv(1, false, false, Buffer.alloc(100)), pdv(1, true, true, STORE)), [50, 110]));
    expect(h.events.at(-1)).toMatch(/^abort /);
  });

  it('collects the data set of a message the host takes (C-FIND) and hands it over whole; other messages still go on', () => {
    const { router, forwarded, taken, events } = harness({ takeCommand: 0x0020 });
    const identifier = Buffer.from('0800520008000000535455445920', 'hex');
    router.onPData(pData(pdv(3, true, true, otherCommand(0x0020, true)), pdv(3, false, false, identifier.subarray(0, 5))));
    expect(taken).toEqual([]);
    router.onPData(pData(pdv(3, false, true, identifier.subarray(5)), pdv(1, true, true, otherCommand(0x0030, false))));
    expect(taken).toEqual([{ pcId: 3, messageId: 7, dataSet: identifier }]);
    // The C-ECHO-like command after it, and a C-MOVE-like message the host does not take, go to dcmjs-dimse.
    expect(forwarded).toEqual([pData(pdv(1, true, true, otherCommand(0x0030, false)))]);
    const move = pData(pdv(3, true, true, otherCommand(0x0021, true)), pdv(3, false, true, identifier));
    router.onPData(move);
    expect(forwarded[1]).toEqual(move);
    expect(events).toEqual([]);
  });

  it('aborts when a taken data set is interrupted by a command or another context', () => {
    for (const intruder of [pdv(3, true, true, otherCommand(0x0030, false)), pdv(5, false, true, Buffer.from('0000', 'hex'))]) {
      const { router, taken, events } = harness({ takeCommand: 0x0020 });
      router.onPData(pData(pdv(3, true, true, otherCommand(0x0020, true)), pdv(3, false, false, Buffer.from('08005200', 'hex'))));
      router.onPData(pData(intruder));
      expect(taken).toEqual([]);
      expect(events).toEqual(['abort data set interrupted by another PDV']);
    }
  });
});
