import { describe, expect, it } from 'vitest';
import { parseTsv } from './corpus.ts';

describe('parseTsv', () => {
  it('keys each row by the header, keeping empty fields', () => {
    expect(parseTsv('file\tmodality\tnotes\na.dcm\tMR\t\nb.dcm\t\tx y\n')).toEqual([
      { file: 'a.dcm', modality: 'MR', notes: '' },
      { file: 'b.dcm', modality: '', notes: 'x y' },
    ]);
  });
  it('accepts CRLF and ignores blank lines', () => {
    expect(parseTsv('a\tb\r\n1\t2\r\n\r\n')).toEqual([{ a: '1', b: '2' }]);
  });
  it('returns no rows for empty text', () => {
    expect(parseTsv('')).toEqual([]);
  });
  it('throws on a row with the wrong number of fields', () => {
    expect(() => parseTsv('a\tb\n1\t2\t3\n')).toThrow(/line 2: 3 fields, header has 2/);
  });
});
