import type { DicomJsonDataset } from '@portico/dicom';
import { describe, expect, it } from 'vitest';
import { evaluateRoutes, parseRoutes, type RouteContext } from './index.ts';

/** A CT instance with one of every kind of value conditions meet. */
const CT: DicomJsonDataset = {
  '00080008': { vr: 'CS', Value: ['ORIGINAL', 'PRIMARY', 'AXIAL'] }, // ImageType, multi-valued
  '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] }, // SOPClassUID
  '00080060': { vr: 'CS', Value: ['CT'] }, // Modality
  '00080080': { vr: 'LO' }, // InstitutionName, present and empty
  '00080090': { vr: 'PN', Value: [{ Alphabetic: 'Smith^Anne' }] }, // ReferringPhysicianName
  '00081030': { vr: 'LO', Value: ['Head', null] }, // StudyDescription (not really multi-valued; an empty second value)
  '00091010': { vr: 'LO', Value: ['ACME'] }, // private, no dictionary entry
  '00091011': { vr: 'OB', InlineBinary: 'QUJD' }, // private binary: "ABC"
  '00280009': { vr: 'AT', Value: ['00181063'] }, // FrameIncrementPointer
  '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }] }, // PatientName
  '00100020': { vr: 'LO', Value: ['012345'] }, // PatientID
  '00180050': { vr: 'DS', Value: [1.5] }, // SliceThickness
  '00200011': { vr: 'IS', Value: [3] }, // SeriesNumber
  '00400275': {
    vr: 'SQ', // RequestAttributesSequence
    Value: [{ '00321060': { vr: 'LO', Value: ['CT HEAD'] }, '00401001': { vr: 'SH', Value: ['RP1'] } }, { '00321060': { vr: 'LO', Value: ['CT CHEST'] } }],
  },
  '7FE00010': { vr: 'OW', BulkDataURI: '7FE00010' }, // PixelData
};

const DIMSE: RouteContext = { source: 'dimse', callingAeTitle: 'MODALITY1', calledAeTitle: 'IMAGEPACS' };
const STOW: RouteContext = { source: 'stow-rs' };

/** Whether a rule with this `when` (YAML flow text) matches. */
function matches(when: string, ctx: RouteContext = DIMSE, dataset: DicomJsonDataset = CT): boolean {
  const routes = parseRoutes(`rules:\n  - name: r\n    when: ${when}\n    then: [{add: X}]\n`);
  const explanation = evaluateRoutes(routes, dataset, ctx);
  expect(explanation.destinations.length === 1).toBe(explanation.rules[0]!.matched);
  return explanation.rules[0]!.matched;
}

type Row = [when: string, expected: boolean, ctx?: RouteContext];

function table(rows: readonly Row[]): void {
  it.each(rows)('%s → %s', (when, expected, ctx) => {
    expect(matches(when, ctx)).toBe(expected);
  });
}

describe('conditions on where the instance came from', () => {
  table([
    ['{calledAeTitle: IMAGEPACS}', true],
    ['{calledAeTitle: OTHER}', false],
    ['{calledAeTitle: IMAGEPACS}', true, { source: 'dimse', calledAeTitle: ' IMAGEPACS  ' }], // AE padding is not significant
    ['{calledAeTitle: imagepacs}', false], // case-sensitive
    ['{calledAeTitle: {equals: imagepacs, ignoreCase: true}}', true],
    ['{calledAeTitle: [ARCHIVE, IMAGEPACS]}', true],
    ['{callingAeTitle: {matches: ^MOD}}', true],
    ['{callingAeTitle: {matches: ODAL}}', true], // unanchored: found anywhere
    ['{callingAeTitle: {matches: ^odal}}', false],
    ['{callingAeTitle: {matches: ^mod, ignoreCase: true}}', true],
    ['{callingAeTitle: MODALITY1}', false, STOW], // STOW-RS has no AE titles: absent never equals
    ['{callingAeTitle: {matches: ""}}', false, STOW],
    ['{callingAeTitle: {present: false}}', true, STOW],
    ['{callingAeTitle: {present: true}}', true],
    ['{source: dimse}', true],
    ['{source: stow-rs}', true, STOW],
    ['{source: [stow-rs, import]}', false],
    ['{source: import}', true, { source: 'import' }],
  ]);
});

describe('conditions on attributes', () => {
  table([
    // equality and lists
    ['{Modality: CT}', true],
    ['{Modality: ct}', false],
    ['{Modality: {equals: ct, ignoreCase: true}}', true],
    ['{Modality: [MR, CT]}', true],
    ['{Modality: {equals: [MR, US]}}', false],
    // regular expressions: JavaScript syntax, unanchored, case-sensitive
    [String.raw`{SOPClassUID: {matches: '1\.1\.2$'}}`, true],
    [String.raw`{SOPClassUID: {matches: '^1\.1\.2'}}`, false],
    // multi-valued: any value
    ['{ImageType: AXIAL}', true],
    ['{ImageType: {matches: ^PRIMARY$}}', true],
    ['{ImageType: "ORIGINAL\\\\PRIMARY\\\\AXIAL"}', false], // values are compared one by one, never joined
    // Person Name: the DICOM string form of the whole value
    ['{ReferringPhysicianName: Smith^Anne}', true],
    ['{PatientName: Yamada^Tarou}', false], // the value also has an ideographic group
    ['{PatientName: Yamada^Tarou=山田^太郎}', true],
    ['{PatientName: {matches: ^Yamada\\^}}', true],
    // text stays text: a plain 012345 is not the number 12345
    ['{PatientID: 012345}', true],
    ['{PatientID: 12345}', false],
    // numbers (IS, DS, US, FL …) compare as numbers
    ['{SeriesNumber: 3}', true],
    ['{SeriesNumber: "03"}', true],
    ['{SeriesNumber: [1, 2]}', false],
    ['{SliceThickness: 1.50}', true],
    ['{SeriesNumber: {matches: ^3$}}', true], // regular expressions see the number in JavaScript form
    ['{SliceThickness: {matches: ^1\\.5$}}', true],
    // present but empty: one empty string
    ["{InstitutionName: ''}", true],
    ['{InstitutionName: {present: true}}', true],
    ['{InstitutionName: {matches: ^$}}', true],
    ["{StudyDescription: ''}", true], // an empty value among others
    ['{StudyDescription: Head}', true],
    // absent: only `present: false` (or `not`) matches
    ["{AccessionNumber: ''}", false],
    ['{AccessionNumber: {matches: ""}}', false],
    ['{AccessionNumber: {present: false}}', true],
    ['{AccessionNumber: {present: true}}', false],
    ['{not: {AccessionNumber: A1}}', true],
    // sequences: a dotted path, any item
    ["{RequestAttributesSequence.RequestedProcedureDescription: 'CT CHEST'}", true],
    ["{RequestAttributesSequence.RequestedProcedureDescription: 'MR KNEE'}", false],
    ['{RequestAttributesSequence.RequestedProcedureID: RP1}', true],
    ['{RequestAttributesSequence.RequestedProcedureID: {present: true}}', true],
    ['{RequestAttributesSequence.ScheduledProcedureStepID: {present: false}}', true],
    ['{RequestAttributesSequence: {present: true}}', true],
    ['{ReferencedImageSequence.ReferencedSOPInstanceUID: {present: false}}', true],
    // tags instead of keywords (quoted inside { }, where a comma separates entries)
    ['{"(0008,0060)": CT}', true],
    ['{00080060: CT}', true],
    ['{"(0040,0275).(0032,1060)": CT HEAD}', true],
    ['{00400275.00321060: {matches: CHEST}}', true],
    // AT values, whichever way the tag is written
    ['{FrameIncrementPointer: "(0018,1063)"}', true],
    ['{FrameIncrementPointer: 00181063}', true],
    ['{FrameIncrementPointer: 00181065}', false],
    // private and unknown tags: no dictionary entry, compared by their values
    ['{"(0009,1010)": ACME}', true],
    // bulk data and binary values never match a value, but are present
    ['{"(0009,1011)": ABC}', false],
    ['{"(0009,1011)": QUJD}', false],
    ['{"(0009,1011)": {present: true}}', true],
    ['{PixelData: {present: true}}', true],
  ]);
});

describe('combining conditions', () => {
  table([
    ['{Modality: CT, SeriesNumber: 3}', true], // a map is all of its conditions
    ['{Modality: CT, SeriesNumber: 4}', false],
    ['{all: [{Modality: CT}, {SeriesNumber: 3}]}', true],
    ['{all: [{Modality: CT}, {SeriesNumber: 4}]}', false],
    ['{any: [{Modality: MR}, {Modality: US}]}', false],
    ['{any: [{Modality: MR}, {SeriesNumber: 3}]}', true],
    ['{not: {Modality: CT}}', false],
    ['{not: {Modality: CT, SeriesNumber: 4}}', true], // not (all of the map)
    ['{not: {not: {Modality: CT}}}', true],
    ['{all: [{Modality: CT}, {any: [{SeriesNumber: 4}, {not: {PatientID: X}}]}]}', true],
    ['{any: [{all: [{Modality: CT}, {calledAeTitle: OTHER}]}, {all: [{Modality: CT}, {source: dimse}]}]}', true],
    ['{calledAeTitle: IMAGEPACS, any: [{Modality: MR}, {ImageType: LOCALIZER}]}', false],
    ['{}', true], // no conditions: always
  ]);

  it('matches every instance when `when` is omitted', () => {
    const routes = parseRoutes('rules:\n  - name: always\n    then: [{add: X}]\n');
    expect(evaluateRoutes(routes, {}, STOW).rules).toEqual([{ rule: 'always', matched: true }]);
  });
});
