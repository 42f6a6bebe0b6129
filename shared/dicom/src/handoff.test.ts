import { describe, expect, it } from 'vitest';
import { ParsedHeaderHandoff } from './handoff.ts';
import type { ParsedInstance } from './parse-instance.ts';

const parsed = (uid: string): ParsedInstance =>
  ({
    sopInstanceUid: uid,
    sopClassUid: '',
    studyInstanceUid: '',
    seriesInstanceUid: '',
    transferSyntaxUid: '',
    hasFileMeta: true,
    specificCharacterSet: [],
    json: {},
    bulkData: {},
  }) as ParsedInstance;

const opened = (opts?: ConstructorParameters<typeof ParsedHeaderHandoff>[0]): ParsedHeaderHandoff => {
  const h = new ParsedHeaderHandoff(opts);
  h.open();
  return h;
};

describe('ParsedHeaderHandoff', () => {
  it('ignores offers while no worker of this process takes them, and forgets them when the last stops', () => {
    const h = new ParsedHeaderHandoff();
    h.offer('staging/a.dcm', parsed('1.1'), 1, 0);
    expect(h.size).toBe(0);
    const close = h.open();
    const closeOther = h.open();
    h.offer('staging/a.dcm', parsed('1.1'), 1, 0);
    close();
    close(); // idempotent
    expect(h.size).toBe(1);
    closeOther();
    expect(h.size).toBe(0);
    expect(h.take('staging/a.dcm', 0)).toBeUndefined();
  });

  it('hands an entry over once, with its size', () => {
    const h = opened();
    h.offer('staging/a.dcm', parsed('1.1'), 1234, 0);
    expect(h.take('staging/a.dcm', 10)).toEqual({ parsed: parsed('1.1'), size: 1234 });
    expect(h.take('staging/a.dcm', 10)).toBeUndefined();
    expect(h.take('staging/unknown.dcm', 10)).toBeUndefined();
  });

  it('drops entries older than the age limit, on take and on the next offer', () => {
    const h = opened({ maxAgeMs: 100 });
    h.offer('staging/a.dcm', parsed('1.1'), 1, 0);
    h.offer('staging/b.dcm', parsed('1.2'), 1, 50);
    expect(h.take('staging/a.dcm', 101)).toBeUndefined();
    h.offer('staging/c.dcm', parsed('1.3'), 1, 151); // b is now 101 ms old
    expect(h.size).toBe(1);
    expect(h.take('staging/c.dcm', 151)?.parsed.sopInstanceUid).toBe('1.3');
  });

  it('keeps at most maxEntries: when full, the oldest (taken next by a FIFO worker) stay and new offers are left out', () => {
    const h = opened({ maxEntries: 3 });
    for (let i = 0; i < 5; i++) h.offer(`staging/${i}.dcm`, parsed(`1.${i}`), i, i);
    expect(h.size).toBe(3);
    expect(h.take('staging/0.dcm', 5)?.size).toBe(0);
    expect(h.take('staging/3.dcm', 5)).toBeUndefined();
    expect(h.take('staging/4.dcm', 5)).toBeUndefined();
    // A take frees a place for the next offer.
    h.offer('staging/5.dcm', parsed('1.5'), 5, 5);
    expect(h.take('staging/5.dcm', 5)?.size).toBe(5);
  });

  it('withdraws an entry whose acknowledgement was refused', () => {
    const h = opened();
    h.offer('staging/a.dcm', parsed('1.1'), 1, 0);
    h.withdraw('staging/a.dcm');
    expect(h.take('staging/a.dcm', 0)).toBeUndefined();
  });
});
