import type { DicomJsonDataset } from '@portico/dicom';
import { describe, expect, it } from 'vitest';
import { evaluateRoutes, parseRoutes, routeDestinations, type RouteContext, type RouteExplanation } from './index.ts';

const CT: DicomJsonDataset = {
  '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] },
  '00080060': { vr: 'CS', Value: ['CT'] },
  '00100020': { vr: 'LO', Value: ['P1'] },
};
const SR: DicomJsonDataset = {
  '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.88.22'] }, // Enhanced SR
  '00080060': { vr: 'CS', Value: ['SR'] },
};
const DIMSE: RouteContext = { source: 'dimse', callingAeTitle: 'MOD1', calledAeTitle: 'PORTICO' };

function explain(yaml: string, dataset: DicomJsonDataset = CT, ctx: RouteContext = DIMSE): RouteExplanation {
  return evaluateRoutes(parseRoutes(yaml), dataset, ctx);
}

/** destination -> deciding rule, in output order */
function decided(e: RouteExplanation): string[] {
  return e.destinations.map((d) => `${d.destination}<-${d.rule}`);
}

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

describe('the example of the issue', () => {
  // Verbatim what docs/routing.md shows: everything received on AE IMAGEPACS goes to IMAGEPACS as JPEG 2000
  // lossless, except SR instances, which go to REPORTPACS instead. Other instances go to the default.
  const ROUTES = lines(
    'default: [ARCHIVE]',
    'rules:',
    '  - name: imagepacs',
    '    when: {calledAeTitle: IMAGEPACS}',
    '    then:',
    '      - add: IMAGEPACS',
    '        transcode: jpeg2000-lossless',
    '      - remove: ARCHIVE',
    '  - name: reports',
    "    when: {calledAeTitle: IMAGEPACS, SOPClassUID: {matches: '^1\\.2\\.840\\.10008\\.5\\.1\\.4\\.1\\.1\\.88\\.\\d+$'}}",
    '    then: [{remove: IMAGEPACS}, {add: REPORTPACS}]',
  );
  const routes = parseRoutes(ROUTES, 'routes.yml');
  const toImagepacs: RouteContext = { source: 'dimse', callingAeTitle: 'CT1', calledAeTitle: 'IMAGEPACS' };

  it('sends an SR received on IMAGEPACS to REPORTPACS only', () => {
    expect(evaluateRoutes(routes, SR, toImagepacs)).toEqual({
      destinations: [{ destination: 'REPORTPACS', rule: 'reports', mutations: [] }],
      removed: [
        { destination: 'ARCHIVE', rule: 'imagepacs' },
        { destination: 'IMAGEPACS', rule: 'reports' },
      ],
      rules: [
        { rule: 'imagepacs', matched: true },
        { rule: 'reports', matched: true },
      ],
    });
  });

  it('sends a CT received on IMAGEPACS to IMAGEPACS as JPEG 2000 lossless', () => {
    expect(evaluateRoutes(routes, CT, toImagepacs)).toEqual({
      destinations: [{ destination: 'IMAGEPACS', rule: 'imagepacs', transferSyntaxUid: '1.2.840.10008.1.2.4.90', mutations: [] }],
      removed: [{ destination: 'ARCHIVE', rule: 'imagepacs' }],
      rules: [
        { rule: 'imagepacs', matched: true },
        { rule: 'reports', matched: false },
      ],
    });
  });

  it('sends a CT, or an SR, received on another AE title to the default', () => {
    for (const dataset of [CT, SR]) {
      expect(evaluateRoutes(routes, dataset, DIMSE)).toEqual({
        destinations: [{ destination: 'ARCHIVE', rule: 'default', mutations: [] }],
        removed: [],
        rules: [
          { rule: 'imagepacs', matched: false },
          { rule: 'reports', matched: false },
        ],
      });
    }
    expect(decided(evaluateRoutes(routes, SR, { source: 'stow-rs' }))).toEqual(['ARCHIVE<-default']);
  });

  it('names every destination the file mentions', () => {
    expect(routeDestinations(routes)).toEqual(['ARCHIVE', 'IMAGEPACS', 'REPORTPACS']);
  });
});

describe('default route', () => {
  it.each([
    ['default: [ARCHIVE, BACKUP]', ['ARCHIVE<-default', 'BACKUP<-default']],
    ['default: ARCHIVE', ['ARCHIVE<-default']],
    ['default: []', []],
    ['default:', []],
    ['rules: []', []],
    ['rules:', []],
    ["default: ['AE WITH SPACE', my-dicomweb.target_1]", ['AE WITH SPACE<-default', 'my-dicomweb.target_1<-default']],
  ])('%s', (yaml, expected) => {
    expect(decided(explain(yaml))).toEqual(expected);
  });

  it('keeps untouched defaults decided by "default" when rules match', () => {
    const e = explain(lines('default: [ARCHIVE]', 'rules:', '  - name: ct', '    when: {Modality: CT}', '    then: [{add: CTPACS}]'));
    expect(decided(e)).toEqual(['ARCHIVE<-default', 'CTPACS<-ct']);
  });
});

describe('actions', () => {
  it('add makes a destination, sent as stored unless a transcode is given', () => {
    const e = explain(lines('rules:', '  - name: r', '    then: [{add: A}, {add: B, transcode: rle}, {add: C, transcode: 1.2.840.10008.1.2.4.201}]'));
    expect(e.destinations).toEqual([
      { destination: 'A', rule: 'r', mutations: [] },
      { destination: 'B', rule: 'r', transferSyntaxUid: '1.2.840.10008.1.2.5', mutations: [] },
      { destination: 'C', rule: 'r', transferSyntaxUid: '1.2.840.10008.1.2.4.201', mutations: [] },
    ]);
    expect('transferSyntaxUid' in e.destinations[0]!).toBe(false);
  });

  it.each([
    ['implicit-little-endian', '1.2.840.10008.1.2'],
    ['explicit-little-endian', '1.2.840.10008.1.2.1'],
    ['jpeg-baseline', '1.2.840.10008.1.2.4.50'],
    ['jpeg-lossless', '1.2.840.10008.1.2.4.70'],
    ['jpeg-ls-lossless', '1.2.840.10008.1.2.4.80'],
    ['jpeg-ls-near-lossless', '1.2.840.10008.1.2.4.81'],
    ['jpeg2000-lossless', '1.2.840.10008.1.2.4.90'],
    ['jpeg2000', '1.2.840.10008.1.2.4.91'],
    ['htj2k-lossless', '1.2.840.10008.1.2.4.201'],
    ['htj2k', '1.2.840.10008.1.2.4.203'],
    ['rle', '1.2.840.10008.1.2.5'],
  ])('transcode: %s is %s, by name or by UID', (name, uid) => {
    for (const written of [name, uid]) {
      const e = explain(lines('rules:', '  - name: r', `    then: [{add: A, transcode: ${written}}]`));
      expect(e.destinations[0]!.transferSyntaxUid).toBe(uid);
    }
  });

  it('set, delete and modify become mutations for that destination only, in the order written', () => {
    const e = explain(
      lines(
        'rules:',
        '  - name: r',
        '    then:',
        '      - add: ANON',
        '        set:',
        '          PatientName: Anonymous^Patient',
        '          SeriesNumber: 7',
        '          SliceThickness: 0.5',
        "          InstitutionName: ''",
        '          ImageType: [DERIVED, SECONDARY]',
        '          RequestAttributesSequence.RequestedProcedureID: RP9',
        '          (0009,0010): ACME 1.0',
        '          (0009,1001): {vr: LO, value: anonymised}',
        '          00091002: {vr: US, value: [1, 2]}',
        '          FrameIncrementPointer: (0018,1063)',
        '          StudyInstanceUID: 1.2.3.4',
        "        delete: [OtherPatientIDsSequence, '(0010,1000)']",
        '        modify:',
        "          PatientID: {pattern: '^', replacement: 'X-'}",
        "          AccessionNumber: {pattern: 'a', replacement: '', flags: gi}",
        '      - add: PLAIN',
      ),
    );
    expect(e.destinations[0]!.mutations).toEqual([
      { op: 'set', path: ['00100010'], vr: 'PN', value: ['Anonymous^Patient'] },
      { op: 'set', path: ['00200011'], vr: 'IS', value: [7] },
      { op: 'set', path: ['00180050'], vr: 'DS', value: [0.5] },
      { op: 'set', path: ['00080080'], vr: 'LO', value: [] },
      { op: 'set', path: ['00080008'], vr: 'CS', value: ['DERIVED', 'SECONDARY'] },
      { op: 'set', path: ['00400275', '00401001'], vr: 'SH', value: ['RP9'] },
      { op: 'set', path: ['00090010'], vr: 'LO', value: ['ACME 1.0'] },
      { op: 'set', path: ['00091001'], vr: 'LO', value: ['anonymised'] },
      { op: 'set', path: ['00091002'], vr: 'US', value: [1, 2] },
      { op: 'set', path: ['00280009'], vr: 'AT', value: ['00181063'] },
      { op: 'set', path: ['0020000D'], vr: 'UI', value: ['1.2.3.4'] },
      { op: 'remove', path: ['00101002'] },
      { op: 'remove', path: ['00101000'] },
      { op: 'modify', path: ['00100020'], pattern: '^', replacement: 'X-' },
      { op: 'modify', path: ['00080050'], pattern: 'a', replacement: '', flags: 'gi' },
    ]);
    expect(e.destinations[1]).toEqual({ destination: 'PLAIN', rule: 'r', mutations: [] });
  });

  it('keeps the order of set, delete and modify as written in the action', () => {
    const e = explain(
      lines('rules:', '  - name: r', '    then: [{add: A, modify: {PatientID: {pattern: x, replacement: y}}, delete: PatientID, set: {PatientID: Z}}]'),
    );
    expect(e.destinations[0]!.mutations.map((m) => m.op)).toEqual(['modify', 'remove', 'set']);
  });

  it('change updates a destination only when the instance already goes there', () => {
    const yaml = lines(
      'default: [ARCHIVE]',
      'rules:',
      '  - name: anonymise-cloud',
      '    then:',
      '      - change: ARCHIVE',
      '        delete: PatientName',
      '      - change: CLOUD',
      '        delete: PatientName',
    );
    const e = explain(yaml);
    expect(e.destinations).toEqual([{ destination: 'ARCHIVE', rule: 'anonymise-cloud', mutations: [{ op: 'remove', path: ['00100010'] }] }]);
    expect(e.removed).toEqual([]);
  });

  it('remove takes away a destination, including a default one, and explain names the rule', () => {
    const e = explain(lines('default: [ARCHIVE, BACKUP]', 'rules:', '  - name: no-archive', '    then: [{remove: ARCHIVE}, {remove: NEVER-ADDED}]'));
    expect(decided(e)).toEqual(['BACKUP<-default']);
    // a destination the instance never had is not "removed"
    expect(e.removed).toEqual([{ destination: 'ARCHIVE', rule: 'no-archive' }]);
  });
});

describe('order and overrides', () => {
  it('the last rule that adds or changes a destination decides it; its transcode wins, mutations accumulate', () => {
    const e = explain(
      lines(
        'default: [ARCHIVE]',
        'rules:',
        '  - name: first',
        '    then: [{add: PACS, transcode: jpeg2000-lossless, set: {InstitutionName: A}}]',
        '  - name: second',
        '    then: [{add: PACS, transcode: rle, set: {InstitutionName: B}}]',
        '  - name: third',
        '    then: [{add: PACS, delete: [PatientID]}, {add: ARCHIVE}]',
      ),
    );
    expect(e.destinations).toEqual([
      { destination: 'ARCHIVE', rule: 'third', mutations: [] },
      {
        destination: 'PACS',
        rule: 'third',
        transferSyntaxUid: '1.2.840.10008.1.2.5', // third did not transcode, so second's stays
        mutations: [
          { op: 'set', path: ['00080080'], vr: 'LO', value: ['A'] },
          { op: 'set', path: ['00080080'], vr: 'LO', value: ['B'] },
          { op: 'remove', path: ['00100020'] },
        ],
      },
    ]);
  });

  it('actions of one rule apply in order: add then remove is removed, remove then add is added', () => {
    const e = explain(lines('rules:', '  - name: r', '    then: [{add: A}, {remove: A}, {remove: B}, {add: B}]'));
    expect(decided(e)).toEqual(['B<-r']);
    expect(e.removed).toEqual([{ destination: 'A', rule: 'r' }]);
  });

  it('a destination removed and added again starts afresh and is no longer listed as removed', () => {
    const e = explain(
      lines(
        'default: [PACS]',
        'rules:',
        '  - name: one',
        '    then: [{add: PACS, transcode: rle, delete: PatientID}]',
        '  - name: two',
        '    then: [{remove: PACS}]',
        '  - name: three',
        '    then: [{add: PACS}]',
      ),
    );
    expect(e.destinations).toEqual([{ destination: 'PACS', rule: 'three', mutations: [] }]);
    expect(e.removed).toEqual([]);
  });

  it('removed names the last rule that took the destination away', () => {
    const e = explain(
      lines(
        'default: [PACS]',
        'rules:',
        '  - name: one',
        '    then: [{remove: PACS}]',
        '  - name: two',
        '    then: [{add: PACS}]',
        '  - name: three',
        '    then: [{remove: PACS}]',
        '  - name: four',
        '    then: [{remove: PACS}]', // already gone: changes nothing
      ),
    );
    expect(e.destinations).toEqual([]);
    expect(e.removed).toEqual([{ destination: 'PACS', rule: 'three' }]);
  });

  it('destinations are listed in order of first addition, defaults first', () => {
    const e = explain(lines('default: [D1, D2]', 'rules:', '  - name: r', '    then: [{add: Z}, {add: A}, {add: D1}]'));
    expect(e.destinations.map((d) => d.destination)).toEqual(['D1', 'D2', 'Z', 'A']);
  });
});

describe('stop', () => {
  const yaml = lines(
    'default: [ARCHIVE]',
    'rules:',
    '  - name: test-studies',
    '    when: {callingAeTitle: TESTMOD}',
    '    then: [{remove: ARCHIVE}]',
    '    stop: true',
    '  - name: quarantine-stop',
    '    when: {PatientID: QUARANTINE}',
    '    stop: true',
    '  - name: everything',
    '    then: [{add: PACS}]',
    '    stop: false',
    '  - name: after',
    '    then: [{add: LAST}]',
  );

  it('ends the evaluation after a matching rule; later rules are not evaluated nor listed', () => {
    const e = explain(yaml, CT, { source: 'dimse', callingAeTitle: 'TESTMOD' });
    expect(e.destinations).toEqual([]);
    expect(e.rules).toEqual([{ rule: 'test-studies', matched: true }]);
  });

  it('a rule with only `stop: true` keeps what earlier rules decided', () => {
    const e = explain(yaml, { '00100020': { vr: 'LO', Value: ['QUARANTINE'] } });
    expect(decided(e)).toEqual(['ARCHIVE<-default']);
    expect(e.rules.map((r) => `${r.rule}:${r.matched}`)).toEqual(['test-studies:false', 'quarantine-stop:true']);
  });

  it('does nothing on a rule that does not match, nor when false', () => {
    const e = explain(yaml);
    expect(decided(e)).toEqual(['ARCHIVE<-default', 'PACS<-everything', 'LAST<-after']);
    expect(e.rules.map((r) => r.rule)).toEqual(['test-studies', 'quarantine-stop', 'everything', 'after']);
  });
});

describe('explain', () => {
  it('lists every rule evaluated with whether it matched', () => {
    const e = explain(
      lines(
        'rules:',
        '  - name: mr',
        '    when: {Modality: MR}',
        '    then: [{add: MRPACS}]',
        '  - name: ct',
        '    when: {Modality: CT}',
        '    then: [{add: CTPACS}]',
        '  - name: from-mod1',
        '    when: {callingAeTitle: MOD1}',
        '    then: [{add: CTPACS, transcode: jpeg-ls-lossless}]',
      ),
    );
    expect(e).toEqual({
      destinations: [{ destination: 'CTPACS', rule: 'from-mod1', transferSyntaxUid: '1.2.840.10008.1.2.4.80', mutations: [] }],
      removed: [],
      rules: [
        { rule: 'mr', matched: false },
        { rule: 'ct', matched: true },
        { rule: 'from-mod1', matched: true },
      ],
    });
  });

  it('gives every evaluation its own mutation lists', () => {
    const routes = parseRoutes(lines('default: [A]', 'rules:', '  - name: r', '    then: [{add: A, delete: PatientID}]'));
    const first = evaluateRoutes(routes, CT, DIMSE);
    const second = evaluateRoutes(routes, CT, DIMSE);
    expect(second.destinations[0]!.mutations).toHaveLength(1);
    expect(first.destinations[0]!.mutations).not.toBe(second.destinations[0]!.mutations);
  });

  it('exposes the rule names and source of a RouteSet, and refuses a RouteSet it did not make', () => {
    const routes = parseRoutes(lines('rules:', '  - name: a', '    then: [{add: X}]', '  - name: b', '    then: [{add: Y}]'), 'r.yml');
    expect(routes.source).toBe('r.yml');
    expect(routes.ruleNames).toEqual(['a', 'b']);
    expect(() => evaluateRoutes({ source: 'x', ruleNames: [] }, CT, DIMSE)).toThrow(/not a RouteSet/);
  });

  it('routeDestinations lists default, add, change and remove targets once each, in order of mention', () => {
    const routes = parseRoutes(
      lines('default: [A, B]', 'rules:', '  - name: r', '    then: [{remove: C}, {add: B}, {change: D}, {add: E}]', '  - name: s', '    then: [{add: C}]'),
    );
    expect(routeDestinations(routes)).toEqual(['A', 'B', 'C', 'D', 'E']);
  });
});
