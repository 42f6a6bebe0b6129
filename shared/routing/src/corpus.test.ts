import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseInstance } from '@portico/dicom';
import { describe, expect, it } from 'vitest';
import { evaluateRoutes, parseRoutes, type RouteExplanation } from './index.ts';

const CORPUS = fileURLToPath(new URL('../../../../shared/dicom-corpus/', import.meta.url));
if (!existsSync(join(CORPUS, 'MANIFEST.tsv'))) {
  throw new Error(
    `DICOM test corpus not found at ${CORPUS} (expected ../shared/dicom-corpus beside the repository, with MANIFEST.tsv). ` +
      'These tests need it; they do not skip.',
  );
}

/** Files of the corpus that are DICOM (broken/ holds files the parser must reject). */
function corpusFiles(): string[] {
  const [head, ...rows] = readFileSync(join(CORPUS, 'MANIFEST.tsv'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const column = head!.split('\t').indexOf('file');
  if (column < 0) throw new Error('MANIFEST.tsv has no "file" column');
  return rows.map((r) => r.split('\t')[column]!).filter((f) => !f.startsWith('broken/'));
}

/**
 * The example of the issue plus rules that touch every kind of condition, so each real data set goes
 * through sequences, Person Names, numbers, bulk data and private tags as they come.
 */
const ROUTES = parseRoutes(
  String.raw`
default: [ARCHIVE]
rules:
  - name: imagepacs
    when: {calledAeTitle: IMAGEPACS}
    then:
      - add: IMAGEPACS
        transcode: jpeg2000-lossless
      - remove: ARCHIVE
  - name: reports
    when: {calledAeTitle: IMAGEPACS, SOPClassUID: {matches: '^1\.2\.840\.10008\.5\.1\.4\.1\.1\.88\.\d+$'}}
    then: [{remove: IMAGEPACS}, {add: REPORTPACS}]
  - name: everything-else
    when:
      any:
        - PatientName: {matches: '\^'}
        - ReferencedImageSequence.ReferencedSOPClassUID: {present: true}
        - ContentSequence.ContentSequence.ValueType: TEXT
        - SeriesNumber: [1, 2, 3]
        - PixelData: {present: false}
        - not: {Modality: [CT, MR]}
        - "(0009,0010)": {matches: .}
    then:
      - change: IMAGEPACS
        delete: [OtherPatientIDsSequence]
        modify: {PatientID: {pattern: '^', replacement: 'X-'}}
`,
  'corpus-routes.yml',
);

/** Conditions on sequences, counted separately so the test shows they meet real data. */
const PROBES = parseRoutes(
  String.raw`
rules:
  - name: referenced-image
    when: {ReferencedImageSequence.ReferencedSOPClassUID: {present: true}}
    then: [{add: X}]
  - name: nested-text
    when: {ContentSequence.ContentSequence.ValueType: TEXT}
    then: [{add: Y}]
`,
);

const SR_CLASS = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.88\.\d+$/;

describe('routing over every instance of the corpus', () => {
  const files = corpusFiles();

  it('finds the corpus', () => {
    expect(files.length).toBeGreaterThan(50);
  });

  it('sends SR-family instances received on IMAGEPACS to REPORTPACS and the rest to IMAGEPACS as JPEG 2000 lossless', async () => {
    let reports = 0;
    let sequenceHits = 0;
    let nestedHits = 0;
    for (const file of files) {
      const instance = await parseInstance(createReadStream(join(CORPUS, file)));
      const e: RouteExplanation = evaluateRoutes(ROUTES, instance.json, { source: 'dimse', callingAeTitle: 'MOD', calledAeTitle: 'IMAGEPACS' });
      const where = `${file} (${instance.sopClassUid})`;
      expect(
        e.rules.slice(0, 2).map((r) => r.matched),
        where,
      ).toEqual([true, SR_CLASS.test(instance.sopClassUid)]);
      expect(e.rules, where).toHaveLength(3);
      if (SR_CLASS.test(instance.sopClassUid)) {
        reports++;
        expect(
          e.destinations.map((d) => `${d.destination}<-${d.rule}`),
          where,
        ).toEqual(['REPORTPACS<-reports']);
      } else {
        expect(e.destinations, where).toHaveLength(1);
        expect(e.destinations[0]!.destination).toBe('IMAGEPACS');
        expect(e.destinations[0]!.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.90');
        expect(e.destinations[0]!.rule, where).toBe(e.rules[2]!.matched ? 'everything-else' : 'imagepacs');
      }
      if (evaluateRoutes(PROBES, instance.json, { source: 'import' }).rules[0]!.matched) sequenceHits++;
      if (evaluateRoutes(PROBES, instance.json, { source: 'import' }).rules[1]!.matched) nestedHits++;
      const other = evaluateRoutes(ROUTES, instance.json, { source: 'stow-rs' });
      expect(
        other.destinations.map((d) => `${d.destination}<-${d.rule}`),
        where,
      ).toEqual(['ARCHIVE<-default']);
    }
    expect(sequenceHits, 'instances with ReferencedImageSequence.ReferencedSOPClassUID').toBeGreaterThan(0);
    expect(nestedHits, 'SR instances with a TEXT content item two levels down').toBeGreaterThan(0);
    // the corpus holds Comprehensive / Enhanced / Key Object Selection SR instances: the SR branch is exercised
    expect(reports).toBeGreaterThanOrEqual(3);
  });
});
