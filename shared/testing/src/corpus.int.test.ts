import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { corpusDir, corpusManifest } from './corpus.ts';

describe('DICOM corpus', () => {
  it('is found beside the repository', () => {
    const dir = corpusDir();
    expect(isAbsolute(dir)).toBe(true);
    expect(dir.endsWith(join('shared', 'dicom-corpus'))).toBe(true);
  });

  it('lists files that exist with the listed sizes', () => {
    const rows = corpusManifest();
    expect(rows.length).toBeGreaterThan(10);
    for (const row of rows) {
      const path = join(corpusDir(), row['file'] ?? '');
      expect(existsSync(path), path).toBe(true);
      expect(statSync(path).size, path).toBe(Number(row['bytes']));
    }
    expect(Object.keys(rows[0] ?? {})).toEqual(
      expect.arrayContaining(['file', 'transfer syntax UID', 'SOP class', 'SOP instance UID', 'study instance UID', 'bytes', 'sha256']),
    );
  });
});
