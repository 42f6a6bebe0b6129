import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file is `<root>/shared/testing/src/corpus.ts`. */
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');

/**
 * Absolute path of the public DICOM test corpus, `../shared/dicom-corpus` beside the repository (it is
 * read from there, never copied in). Throws when it is missing: a test that needs the corpus must fail
 * loudly, never skip, or a broken checkout would look green.
 */
export function corpusDir(): string {
  const dir = resolve(REPO_ROOT, '..', 'shared', 'dicom-corpus');
  if (!existsSync(join(dir, 'MANIFEST.tsv'))) {
    throw new Error(
      `DICOM test corpus not found: expected ${dir}/MANIFEST.tsv (the shared/ folder beside the repository). ` + 'Tests that need it fail rather than skip.',
    );
  }
  return dir;
}

/**
 * The rows of the corpus's `MANIFEST.tsv` as objects keyed by column name (`file` is the path relative
 * to {@link corpusDir}; other columns include `transfer syntax UID`, `SOP class`, `SOP instance UID`,
 * `study instance UID`, `modality`, `bytes`, `sha256`).
 */
export function corpusManifest(): Array<Record<string, string>> {
  return parseTsv(readFileSync(join(corpusDir(), 'MANIFEST.tsv'), 'utf8'));
}

/**
 * Parses tab-separated text with a header line (no quoting: fields never contain tabs or newlines).
 * Blank lines are ignored; a row with a different number of fields than the header throws.
 */
export function parseTsv(text: string): Array<Record<string, string>> {
  const lines = text.split(/\r?\n/).filter((line) => line !== '');
  const header = lines.shift()?.split('\t');
  if (header === undefined) return [];
  return lines.map((line, i) => {
    const fields = line.split('\t');
    if (fields.length !== header.length) {
      throw new Error(`TSV line ${i + 2}: ${fields.length} fields, header has ${header.length}`);
    }
    return Object.fromEntries(header.map((name, j) => [name, fields[j] ?? '']));
  });
}
