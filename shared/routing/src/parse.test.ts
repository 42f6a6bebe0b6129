import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRoutes, parseRoutes, RoutesError } from './index.ts';

const lines = (...l: string[]): string => `${l.join('\n')}\n`;

function errorOf(yaml: string): RoutesError {
  try {
    parseRoutes(yaml, 'r.yml');
  } catch (err) {
    expect(err).toBeInstanceOf(RoutesError);
    return err as RoutesError;
  }
  throw new Error(`accepted:\n${yaml}`);
}

/** A rule whose `when` is the given block lines (indented under `when:` by the caller). */
const ruleWhen = (...when: string[]): string => lines('rules:', '  - name: r', '    when:', ...when, '    then: [{add: X}]');
/** A rule whose `then` is the given block lines. */
const ruleThen = (...then: string[]): string => lines('rules:', '  - name: r', '    then:', ...then);

type Row = [what: string, yaml: string, line: number, column: number, reason: RegExp];

describe('an invalid routes file is rejected with the line, the column and the reason', () => {
  const rows: Row[] = [
    // the file
    ['not YAML', lines('rules: [', '  - name: x'), 2, 3, /not valid YAML/],
    ['duplicate key', lines('default: [A]', 'default: [B]'), 2, 1, /not valid YAML: Map keys must be unique/],
    ['two documents', lines('default: [A]', '---', 'default: [B]'), 2, 1, /a routes file is one YAML document; this one has a second/],
    [
      'regex in double quotes',
      lines('rules:', '  - name: r', '    when: {SOPClassUID: {matches: "^1\\.2"}}', '    then: [{add: A}]'),
      3,
      38,
      /not valid YAML: Invalid escape sequence \\\./,
    ],
    ['empty file', '', 1, 1, /empty; write `default: \[\]`/],
    ['only a comment', '# nothing yet\n', 1, 1, /empty/],
    ['not a map', lines('- A'), 1, 1, /must be a map with `default` and `rules`/],
    ['unknown top-level key', lines('default: [A]', 'defaults: [B]'), 2, 1, /unknown key "defaults" at the top level \(expected one of: default, rules\)/],
    // destinations
    ['default as a map', lines('default: {A: 1}'), 1, 10, /`default` is a list of destinations/],
    ['destination with a backslash', lines('default: [A, "B\\\\C"]'), 1, 14, /"B\\C" is not a destination name/],
    ['destination too long', lines(`default: [${'A'.repeat(65)}]`), 1, 11, /not a destination name \(1-64 characters/],
    ['destination with leading space', lines("default: [' A']"), 1, 11, /not a destination name/],
    ['destination twice in default', lines('default:', '  - A', '  - B', '  - A'), 4, 5, /destination A is listed twice in default/],
    ['destination not text', lines('default: [[A]]'), 1, 11, /a destination must be a text value/],
    // rules
    ['rules as a map', lines('rules: {name: x}'), 1, 8, /`rules` is a list of rules/],
    ['rule not a map', lines('rules:', '  - just-a-name'), 2, 5, /a rule must be a map/],
    ['rule without a name', lines('rules:', '  - then: [{add: A}]'), 2, 5, /a rule needs a `name`/],
    [
      'unknown rule key',
      lines('rules:', '  - name: r', '    whne: {Modality: CT}', '    then: [{add: A}]'),
      3,
      5,
      /unknown key "whne" in a rule \(expected one of: name, when, then, stop\)/,
    ],
    [
      'duplicate rule name',
      lines('rules:', '  - name: r', '    then: [{add: A}]', '  - name: r', '    then: [{add: B}]'),
      4,
      11,
      /rule name "r" is already used on line 2/,
    ],
    ['reserved rule name', lines('rules:', '  - name: default', '    then: [{add: A}]'), 2, 11, /"default" is reserved/],
    ['empty rule name', lines('rules:', "  - name: ''", '    then: [{add: A}]'), 2, 11, /a rule name is 1-64 characters/],
    ['rule without then or stop', lines('rules:', '  - name: r', '    when: {Modality: CT}'), 2, 5, /rule r needs `then` \(or `stop: true`/],
    ['stop not a boolean', lines('rules:', '  - name: r', '    then: [{add: A}]', '    stop: yes'), 4, 11, /`stop` must be true or false/],
    // conditions
    ['when not a map', lines('rules:', '  - name: r', '    when: [Modality]', '    then: [{add: A}]'), 3, 11, /`when` takes a map of conditions/],
    ['unknown condition', ruleWhen('      calledAE: PACS'), 4, 7, /unknown condition "calledAE" \(expected all, any, not, calledAeTitle/],
    ['unknown keyword', ruleWhen('      Modality: CT', '      PatientNme: Doe'), 5, 7, /unknown attribute keyword "PatientNme"/],
    ['wrong-case keyword', ruleWhen('      modality: CT'), 4, 7, /unknown condition "modality"/],
    ['bad tag', ruleWhen('      (0010,001G): x'), 4, 7, /"\(0010,001G\)" is neither a PS3\.6 keyword nor a tag/],
    ['short tag', ruleWhen('      0010001: x'), 4, 7, /"0010001" is neither/],
    [
      'half a tag in flow style',
      ruleWhen('      {(0010,0020): x}'),
      4,
      8,
      /"\(0010" is half a tag: inside \{ \} and \[ \] a comma separates entries, so quote the tag/,
    ],
    ['File Meta tag', ruleWhen('      TransferSyntaxUID: 1.2.840.10008.1.2'), 4, 7, /TransferSyntaxUID is File Meta Information \(group 0002\)/],
    ['group length', ruleWhen('      (0008,0000): 4'), 4, 7, /is a group length/],
    ['path through a non-sequence', ruleWhen('      PatientName.PatientID: x'), 4, 7, /PatientName is not a sequence \(VR PN\)/],
    ['bad regex', ruleWhen("      SOPClassUID: {matches: '^1.2.(840'}"), 4, 30, /bad regular expression: \/\^1\.2\.\(840\/: Unterminated group/],
    ['two tests', ruleWhen('      Modality: {equals: CT, matches: C}'), 4, 17, /needs exactly one of equals, matches, present/],
    ['no test', ruleWhen('      Modality: {ignoreCase: true}'), 4, 17, /needs exactly one of equals, matches, present/],
    ['unknown test key', ruleWhen('      Modality: {regex: C}'), 4, 18, /unknown key "regex" in the test of Modality/],
    ['ignoreCase with present', ruleWhen('      Modality: {present: true, ignoreCase: true}'), 4, 33, /`ignoreCase` goes with equals or matches/],
    ['present not a boolean', ruleWhen('      Modality: {present: maybe}'), 4, 27, /`present` must be true or false/],
    ['null value', ruleWhen('      AccessionNumber: ~'), 4, 7, /write '' for an empty value, or \{present: false\} for an absent attribute/],
    ['missing value', ruleWhen('      AccessionNumber:', '      Modality: CT'), 4, 7, /write '' for an empty value/],
    ['empty list of values', ruleWhen('      Modality: []'), 4, 17, /an empty list matches nothing/],
    ['map of values', ruleWhen('      Modality: {equals: {a: b}}'), 4, 26, /must be text or a list of text/],
    ['number expected', ruleWhen('      SeriesNumber: three'), 4, 21, /SeriesNumber has VR IS and compares as a number: "three" is not one/],
    ['AT value that is no tag', ruleWhen('      FrameIncrementPointer: FrameTime'), 4, 30, /FrameIncrementPointer has VR AT: "FrameTime" is not a tag/],
    [
      'value test on a sequence',
      ruleWhen('      RequestAttributesSequence: x'),
      4,
      34,
      /RequestAttributesSequence is a sequence: only `present: true\|false` can test it/,
    ],
    ['value test on binary', ruleWhen('      PixelData: {matches: x}'), 4, 19, /PixelData is binary \(VR OW\): only `present/],
    ['unknown source', ruleWhen('      source: dicom'), 4, 15, /unknown source "dicom" \(expected dimse, stow-rs, import\)/],
    ['empty AE title', ruleWhen("      calledAeTitle: ''"), 4, 22, /an empty calledAeTitle is no AE title: write \{present: false\}/],
    ['source with a regex', ruleWhen('      source: {matches: dim}'), 4, 15, /`source` is one of dimse, stow-rs, import/],
    ['empty all', ruleWhen('      all: []'), 4, 12, /`all` takes a non-empty list of condition maps/],
    ['any not a list', ruleWhen('      any: {Modality: CT}'), 4, 12, /`any` takes a non-empty list/],
    ['item of all not a map', ruleWhen('      all: [Modality]'), 4, 13, /each item of `all` takes a map of conditions/],
    ['not with a list', ruleWhen('      not: [{Modality: CT}]'), 4, 12, /`not` takes a map of conditions/],
    [
      'nested error',
      ruleWhen('      any:', '        - Modality: CT', '        - not:', '            Modalty: MR'),
      7,
      13,
      /unknown attribute keyword "Modalty"/,
    ],
    // actions
    ['action not a map', ruleThen('      - IMAGEPACS'), 4, 9, /an action is a map: \{add: DEST\}, \{change: DEST\} or \{remove: DEST\}/],
    ['action without a destination', ruleThen('      - transcode: rle'), 4, 9, /an action needs add, change or remove/],
    ['action with two kinds', ruleThen('      - add: A', '        remove: B'), 5, 9, /an action has one of add, change, remove; this one has add and remove/],
    [
      'unknown action key',
      ruleThen('      - add: A', '        copy: B'),
      5,
      9,
      /unknown key "copy" in an action \(expected one of: add, change, remove, transcode, set, delete, modify\)/,
    ],
    ['transcode on remove', ruleThen('      - remove: A', '        transcode: rle'), 5, 9, /`transcode` applies to add or change, not to remove/],
    ['mutation on remove', ruleThen('      - remove: A', '        set: {InstitutionName: X}'), 5, 9, /`set` applies to add or change, not to remove/],
    ['delete on remove', ruleThen('      - remove: A', '        delete: PatientID'), 5, 9, /`delete` applies to add or change/],
    [
      'unknown transfer syntax',
      ruleThen('      - add: A', '        transcode: j2k'),
      5,
      20,
      /unknown transfer syntax "j2k" \(expected one of implicit-little-endian, .*rle, or one of their UIDs\)/,
    ],
    [
      'transfer syntax UID not offered',
      ruleThen('      - add: A', '        transcode: 1.2.840.10008.1.2.2'),
      5,
      20,
      /unknown transfer syntax "1\.2\.840\.10008\.1\.2\.2"/,
    ],
    ['bad destination in add', ruleThen('      - add: ""'), 4, 14, /"" is not a destination name/],
    // set
    ['set not a map', ruleThen('      - add: A', '        set: [PatientName]'), 5, 14, /`set` takes a map of attribute: value/],
    [
      'set private tag without vr',
      ruleThen('      - add: A', '        set:', '          (0009,1001): x'),
      6,
      11,
      /\(0009,1001\) is private or unknown to the dictionary: write \{vr: XX, value: \.\.\.\}/,
    ],
    ['set with an unknown vr', ruleThen('      - add: A', '        set:', '          (0009,1001): {vr: XX, value: x}'), 6, 29, /"XX" is not a VR/],
    ['set with vr but no value', ruleThen('      - add: A', '        set:', '          (0009,1001): {vr: LO}'), 6, 24, /needs a value/],
    [
      'set a sequence',
      ruleThen('      - add: A', '        set: {RequestAttributesSequence: x}'),
      5,
      15,
      /RequestAttributesSequence is a sequence: set can only give values to attributes inside its items/,
    ],
    ['set binary', ruleThen('      - add: A', '        set: {PixelData: x}'), 5, 15, /PixelData has binary VR OW/],
    ['set a number VR to text', ruleThen('      - add: A', '        set: {SeriesNumber: x}'), 5, 29, /SeriesNumber has VR IS: "x" is not a number/],
    ['set an integer VR to a fraction', ruleThen('      - add: A', '        set: {Rows: 1.5}'), 5, 21, /Rows has VR US: "1\.5" is not an integer/],
    ['set a bad UID', ruleThen('      - add: A', '        set: {StudyInstanceUID: 1.2.abc}'), 5, 33, /StudyInstanceUID: "1\.2\.abc" is not a UID/],
    ['set a bad AT', ruleThen('      - add: A', '        set: {FrameIncrementPointer: PatientName}'), 5, 38, /has VR AT: "PatientName" is not a tag/],
    ['set a backslash', ruleThen('      - add: A', '        set: {ImageType: "A\\\\B"}'), 5, 26, /a backslash separates values in DICOM; write a list instead/],
    ['set an unknown keyword', ruleThen('      - add: A', '        set: {InstitutionNam: X}'), 5, 15, /unknown attribute keyword "InstitutionNam"/],
    // delete
    ['delete nothing', ruleThen('      - add: A', '        delete: []'), 5, 17, /`delete` needs at least one attribute/],
    ['delete as a map', ruleThen('      - add: A', '        delete: {PatientID: x}'), 5, 17, /`delete` takes an attribute or a list/],
    [
      'delete an unknown keyword',
      ruleThen('      - add: A', '        delete: [PatientID, PatientIdentity]'),
      5,
      29,
      /unknown attribute keyword "PatientIdentity"/,
    ],
    // modify
    ['modify without replacement', ruleThen('      - add: A', '        modify: {PatientID: {pattern: x}}'), 5, 29, /modify needs both pattern and replacement/],
    ['modify with a bad pattern', ruleThen('      - add: A', "        modify: {PatientID: {pattern: '[', replacement: x}}"), 5, 39, /bad regular expression/],
    [
      'modify with bad flags',
      ruleThen('      - add: A', '        modify: {PatientID: {pattern: a, replacement: b, flags: q}}'),
      5,
      65,
      /bad regular expression: Invalid flags/,
    ],
    [
      'modify a number',
      ruleThen('      - add: A', '        modify: {SeriesNumber: {pattern: a, replacement: b}}'),
      5,
      18,
      /SeriesNumber has VR IS: modify rewrites text values only/,
    ],
    ['modify as text', ruleThen('      - add: A', '        modify: {PatientID: X-}'), 5, 29, /modify takes \{pattern, replacement, flags\}/],
    [
      'modify unknown key',
      ruleThen('      - add: A', '        modify: {PatientID: {pattern: a, replace: b}}'),
      5,
      42,
      /unknown key "replace" in the modify of PatientID/,
    ],
  ];

  it.each(rows)('%s', (_what, yaml, line, column, reason) => {
    const err = errorOf(yaml);
    expect(err.message.split('\n')[0]).toMatch(reason);
    expect({ line: err.line, column: err.column }).toEqual({ line, column });
    expect(err.source).toBe('r.yml');
    expect(err.message.startsWith(`r.yml:${line}:${column}: `)).toBe(true);
  });

  it('reports every problem of the file at once, in file order', () => {
    const err = errorOf(
      lines(
        'default: [A, A]',
        'rules:',
        '  - name: one',
        '    when: {Modalty: CT, source: fax}',
        '    then: [{add: B, transcode: zip}, {remove: C, set: {PatientID: x}}]',
        '  - name: one',
        '    then: []',
      ),
    );
    expect(err.issues.map((i) => `${i.line}:${i.column}`)).toEqual(['1:14', '4:12', '4:33', '5:32', '5:50', '6:11']);
    expect(err.message.split('\n')).toHaveLength(6);
    expect(err.message).toMatch(/^r\.yml:1:14: destination A is listed twice in default\nr\.yml:4:12: unknown attribute keyword "Modalty"/);
  });

  it('accepts what the rows above get wrong when written right', () => {
    expect(() =>
      parseRoutes(
        lines(
          'default: [ARCHIVE, "AE WITH SPACE"]',
          'rules:',
          '  - name: all-of-it',
          '    when:',
          '      (0010,0020): {present: true}',
          '      "(0040,0275).(0032,1060)": {matches: HEAD, ignoreCase: true}',
          '      00100010: {matches: "^Doe\\\\^"}',
          '      any: [{source: dimse}, {source: [stow-rs, import]}]',
          '      not: {calledAeTitle: {present: false}}',
          '    then:',
          '      - add: IMAGEPACS',
          '        transcode: 1.2.840.10008.1.2.4.90',
          '        set:',
          '          (0009,1001): {vr: LO, value: x}',
          '          PatientName:',
          '        delete: PatientID',
          '        modify: {AccessionNumber: {pattern: a, replacement: ~, flags: g}}',
          '    stop: True',
          '  - name: quarantine',
          '    stop: true',
        ),
      ),
    ).not.toThrow();
  });
});

describe('loadRoutes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-routes-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads and parses a file, naming the file in errors', () => {
    const file = join(dir, 'routes.yml');
    writeFileSync(file, 'default: [ARCHIVE]\n');
    expect(loadRoutes(file).source).toBe(file);
    writeFileSync(file, 'default: [ARCHIVE]\nrulez: []\n');
    expect(() => loadRoutes(file)).toThrow(`${file}:2:1: unknown key "rulez"`);
  });

  it('says when the file cannot be read', () => {
    const missing = join(dir, 'missing.yml');
    expect(() => loadRoutes(missing)).toThrow(RoutesError);
    expect(() => loadRoutes(missing)).toThrow(/cannot read the routes file: ENOENT/);
  });
});
