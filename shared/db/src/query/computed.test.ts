import { describe, expect, it } from 'vitest';
import { buildQidoQuery, withoutComputedAttributes } from './query.ts';

describe('withoutComputedAttributes', () => {
  it('drops the per-row counts and modalities of study and series queries, and nothing else', () => {
    for (const [level, offset] of [
      ['study', 0],
      ['study', 10],
      ['series', 0],
      ['series', 10],
    ] as const) {
      const full = buildQidoQuery({ level, keys: [{ tag: '00100020', value: 'P1' }], limit: 5, offset, ...(offset === 0 ? { after: '7' } : {}) });
      const lean = withoutComputedAttributes(full);
      // Every computed subquery is gone (a change to their SQL that this misses fails here).
      expect(full.sql).toContain('count(*)');
      expect(lean.sql).not.toContain('count(*)');
      expect(lean.sql).not.toContain('DISTINCT');
      expect(lean.sql).not.toContain('LATERAL');
      expect(lean.sql).toContain('0 AS number_of_instances');
      if (level === 'study') expect(lean.sql).toContain("'{}'::text[] AS modalities");
      expect(lean.params).toEqual(full.params);
      // The rest of the text is the same.
      const strip = (sql: string): string =>
        sql
          .replace(/\(SELECT count\(\*\)[^)]*\)::int/g, '0')
          .replace(/ARRAY\(SELECT DISTINCT[^)]*\)/g, "'{}'::text[]")
          .replace('sx.number_of_series', '0 AS number_of_series')
          .replace('sx.modalities', "'{}'::text[] AS modalities")
          .replace(/\nCROSS JOIN LATERAL \([^\n]*\) sx/, '')
          .replace(/\s+/g, ' ');
      expect(lean.sql.replace(/\s+/g, ' ')).toBe(strip(full.sql));
    }
  });
  it('keeps ModalitiesInStudy matching', () => {
    const q = buildQidoQuery({ level: 'study', keys: [{ tag: '00080061', value: 'CT' }], limit: 5, offset: 0 });
    const outerWhere = (sql: string): string => sql.slice(sql.indexOf('\nWHERE '));
    expect(outerWhere(q.sql)).toContain('modality');
    expect(outerWhere(withoutComputedAttributes(q).sql)).toBe(outerWhere(q.sql));
  });
});
