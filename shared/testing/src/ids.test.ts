import { describe, expect, it } from 'vitest';
import { uniqueId } from './ids.ts';

describe('uniqueId', () => {
  it('keeps a clean prefix and adds 10 hex characters', () => {
    expect(uniqueId('ingest')).toMatch(/^ingest-[0-9a-f]{10}$/);
  });
  it('never repeats', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => uniqueId('q')));
    expect(ids.size).toBe(1000);
  });
  it('turns any prefix into a valid S3 bucket name without ":"', () => {
    for (const prefix of ['Export:PACS_1', '::', '', 'x'.repeat(80), '-lead-']) {
      const id = uniqueId(prefix);
      expect(id).not.toContain(':');
      expect(id).toMatch(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/);
    }
    expect(uniqueId('Export:PACS_1')).toMatch(/^export-pacs-1-[0-9a-f]{10}$/);
  });
});
