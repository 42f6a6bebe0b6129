import { describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { parseQidoParams } from './params.ts';

const limits = { defaultLimit: 100, maxLimit: 500 };

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PorticoError);
    expect((e as PorticoError).code).toBe('BAD_REQUEST');
    return (e as PorticoError).message;
  }
  throw new Error('expected a BAD_REQUEST');
}

describe('parseQidoParams', () => {
  it('keywords and tags become matching keys, also returned', () => {
    const p = parseQidoParams({ PatientName: 'Doe*', '00100020': 'P1', StudyDate: '20200101-' }, limits);
    expect(p.keys).toEqual([
      { tag: '00100010', value: 'Doe*' },
      { tag: '00100020', value: 'P1' },
      { tag: '00080020', value: '20200101-' },
    ]);
    expect(p.includeTags).toEqual(['00100010', '00100020', '00080020']);
    expect(p).toMatchObject({ limit: 100, offset: 0, fuzzy: false, includeAll: false, limitCapped: false });
  });
  it('includefield: repeated, comma lists, tags, sequence paths, all', () => {
    const p = parseQidoParams({ includefield: ['00081030,SeriesDescription', 'RequestAttributesSequence.ScheduledProcedureStepID'] }, limits);
    expect(p.includeTags).toEqual(['00081030', '0008103E', '00400275']);
    expect(parseQidoParams({ includefield: 'all' }, limits).includeAll).toBe(true);
    expect(message(() => parseQidoParams({ includefield: 'NoSuchKeyword' }, limits))).toContain('NoSuchKeyword');
  });
  it('limit, offset, fuzzymatching', () => {
    expect(parseQidoParams({ limit: '5', offset: '10', fuzzymatching: 'true' }, limits)).toMatchObject({ limit: 5, offset: 10, fuzzy: true });
    expect(parseQidoParams({ limit: '9999' }, limits)).toMatchObject({ limit: 500, limitCapped: true });
    expect(message(() => parseQidoParams({ limit: '-1' }, limits))).toContain('limit');
    expect(message(() => parseQidoParams({ offset: 'x' }, limits))).toContain('offset');
    expect(message(() => parseQidoParams({ fuzzymatching: 'yes' }, limits))).toContain('fuzzymatching');
  });
  it('names unknown, unsupported, repeated and sequence keys', () => {
    expect(message(() => parseQidoParams({ Foo: '1' }, limits))).toContain('Foo');
    expect(message(() => parseQidoParams({ PatientAge: '040Y' }, limits))).toContain('PatientAge');
    expect(message(() => parseQidoParams({ PatientID: ['a', 'b'] }, limits))).toContain('PatientID');
    expect(message(() => parseQidoParams({ PatientID: 'a', '00100020': 'b' }, limits))).toContain('PatientID');
    expect(message(() => parseQidoParams({ 'RequestAttributesSequence.AccessionNumber': 'x' }, limits))).toContain('sequence');
  });
});
