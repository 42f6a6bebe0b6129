import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DICTIONARY_SNAPSHOT, implicitVr, keywordToTag, lookupTag, tagToKeyword } from './dictionary.ts';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('generated data dictionary', () => {
  it('names its source snapshot', () => {
    expect(DICTIONARY_SNAPSHOT.date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(DICTIONARY_SNAPSHOT.commit).toMatch(/^[0-9a-f]{40}$/);
  });

  it('stays compact', () => {
    expect(statSync(new URL('./generated/dictionary.ts', import.meta.url)).size).toBeLessThan(1024 * 1024);
  });

  it('is up to date with ../shared/dicom-standard (node scripts/generate.ts --check)', () => {
    const run = spawnSync(process.execPath, ['scripts/generate.ts', '--check'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});

describe('scripts/generate.ts', () => {
  // A copy of the script in a scratch tree, so the real checkout is never written to.
  function scratchRepo(withStandard: boolean): { root: string; repo: string } {
    const root = mkdtempSync(join(tmpdir(), 'portico-generate-'));
    const repo = join(root, 'repo');
    mkdirSync(join(repo, 'scripts/generators'), { recursive: true });
    copyFileSync(join(REPO_ROOT, 'scripts/generate.ts'), join(repo, 'scripts/generate.ts'));
    copyFileSync(join(REPO_ROOT, 'scripts/generators/sop-classes.ts'), join(repo, 'scripts/generators/sop-classes.ts'));
    // the configuration docs generator reads the settings table
    mkdirSync(join(repo, 'shared'), { recursive: true });
    symlinkSync(join(REPO_ROOT, 'shared/config'), join(repo, 'shared/config'));
    if (withStandard) {
      mkdirSync(join(root, 'shared'));
      symlinkSync(join(REPO_ROOT, '../shared/dicom-standard'), join(root, 'shared/dicom-standard'));
    }
    return { root, repo };
  }
  const run = (repo: string, ...args: string[]) => spawnSync(process.execPath, ['scripts/generate.ts', ...args], { cwd: repo, encoding: 'utf8' });

  it('fails loudly when ../shared/dicom-standard is missing', () => {
    const { root, repo } = scratchRepo(false);
    try {
      const r = run(repo, '--check');
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/dicom-standard/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('--check exits 1 on a stale file; a plain run rewrites it', () => {
    const { root, repo } = scratchRepo(true);
    try {
      expect(run(repo).status).toBe(0);
      const target = join(repo, 'shared/dicom/src/generated/dictionary.ts');
      expect(readFileSync(target, 'utf8')).toBe(readFileSync(new URL('./generated/dictionary.ts', import.meta.url), 'utf8'));
      writeFileSync(target, readFileSync(target, 'utf8').replace("'PatientName'", "'PatientsName'"));
      const stale = run(repo, '--check');
      expect(stale.status).toBe(1);
      expect(stale.stderr).toMatch(/stale: .*dictionary\.ts/);
      expect(run(repo).status).toBe(0);
      expect(run(repo, '--check').status).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('lookupTag', () => {
  it.each([
    ['00100010', 'PN', 'PatientName'],
    ['7fe00010', 'OW', 'PixelData'], // "OB or OW": OW is what Implicit VR LE means (PS3.5 §A.1)
    ['00280106', 'US', 'SmallestImagePixelValue'], // "US or SS"
    ['00283006', 'OW', 'LUTData'], // "US or OW"
    ['60023000', 'OW', 'OverlayData'], // repeating group 60xx
    ['60000010', 'US', 'OverlayRows'],
    ['50003000', 'OW', 'CurveData'],
    ['00090010', 'LO', 'PrivateCreator'], // PS3.5 §7.8.1
    ['00180000', 'UL', 'GenericGroupLength'],
  ])('%s -> %s %s', (tag, vr, keyword) => {
    expect(lookupTag(tag)).toEqual({ vr, keyword });
  });

  it('does not know private data elements or items', () => {
    expect(lookupTag('00091001')).toBeUndefined();
    expect(lookupTag('FFFEE000')).toBeUndefined();
  });
});

describe('implicitVr', () => {
  it('is UN for unknown elements', () => {
    expect(implicitVr('00091001')).toBe('UN');
    expect(implicitVr('00100010')).toBe('PN');
  });
  it('resolves US or SS with Pixel Representation', () => {
    expect(implicitVr('00280106', 0)).toBe('US');
    expect(implicitVr('00280106', 1)).toBe('SS');
    expect(implicitVr('00280010', 1)).toBe('US');
  });
});

describe('keywordToTag / tagToKeyword', () => {
  it('maps both ways', () => {
    expect(keywordToTag('PatientName')).toBe('00100010');
    expect(keywordToTag('SOPInstanceUID')).toBe('00080018');
    expect(keywordToTag('OverlayData')).toBe('60003000');
    expect(keywordToTag('NoSuchKeyword')).toBeUndefined();
    expect(tagToKeyword('0020000D')).toBe('StudyInstanceUID');
    expect(tagToKeyword('00090010')).toBeUndefined();
  });
});
