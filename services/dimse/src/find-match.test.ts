import { describe, expect, it } from 'vitest';
import { IdentifierError, matchElement, planFind, responseIdentifier, type JsonDataset } from './find-match.ts';

const level = (l: string): JsonDataset => ({ '00080052': { vr: 'CS', Value: [l] } });

describe('planFind', () => {
  it('splits index-backed keys, stored-JSON filters and return keys', () => {
    const plan = planFind(
      {
        ...level('STUDY'),
        '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe*' }] },
        '00080020': { vr: 'DA', Value: ['20200101-'] },
        '00081030': { vr: 'LO' },
        '00321060': { vr: 'LO', Value: ['CHEST*'] },
        '00201208': { vr: 'IS' },
      },
      'study',
    );
    expect(plan.level).toBe('study');
    expect(plan.indexed).toEqual([
      { tag: '00100010', value: 'Doe*' },
      { tag: '00080020', value: '20200101-' },
    ]);
    expect(plan.filters.map((f) => f.tag)).toEqual(['00321060']);
    expect(plan.returnTags).toEqual(['00080052', '00100010', '00080020', '00081030', '00321060', '00201208']);
  });

  it('refuses a missing or unknown level, PATIENT in Study Root, and a key below the level', () => {
    expect(() => planFind({}, 'study')).toThrow(IdentifierError);
    expect(() => planFind(level('FRAME'), 'study')).toThrow(/not PATIENT, STUDY, SERIES or IMAGE/);
    expect(() => planFind(level('PATIENT'), 'study')).toThrow(/no PATIENT level/);
    expect(() => planFind({ ...level('STUDY'), '00080060': { vr: 'CS', Value: ['CT'] } }, 'study')).toThrow(/Modality is below/);
    expect(() => planFind({ ...level('PATIENT'), '00080020': { vr: 'DA', Value: ['20200101'] } }, 'patient')).toThrow(/StudyDate is below/);
    // An empty lower-level key is only a return key: allowed.
    expect(planFind({ ...level('STUDY'), '00080060': { vr: 'CS' } }, 'study').indexed).toEqual([]);
  });
});

describe('matchElement', () => {
  const pn = (v: string) => ({ vr: 'PN', Value: [{ Alphabetic: v }] });
  it('matches Person Names without regard to case, accents or trailing empty components', () => {
    expect(matchElement(pn('Buc^Jérôme^^'), pn('BUC^JEROME'))).toBe(true);
    expect(matchElement(pn('Buc^Jérôme'), pn('b*'))).toBe(true);
    expect(matchElement(pn('Buc^Jérôme'), pn('Bu?^J*'))).toBe(true);
    expect(matchElement(pn('Buc^Jérôme'), pn('Buc'))).toBe(false);
  });
  it('matches lists, wildcards and exact text case-sensitively', () => {
    const cs = (v: string) => ({ vr: 'CS', Value: v.split('\\') });
    expect(matchElement(cs('CT'), cs('MR\\CT'))).toBe(true);
    expect(matchElement(cs('ct'), cs('CT'))).toBe(false);
    expect(matchElement({ vr: 'LO', Value: ['CHEST (PA)'] }, { vr: 'LO', Value: ['CHEST*'] })).toBe(true);
    expect(matchElement({ vr: 'LO', Value: ['a.b'] }, { vr: 'LO', Value: ['a?b'] })).toBe(true);
    expect(matchElement({ vr: 'LO', Value: ['axb'] }, { vr: 'LO', Value: ['a.b'] })).toBe(false);
  });
  it('matches date and time ranges, an upper time bound covering what it prefixes', () => {
    const da = (v: string) => ({ vr: 'DA', Value: [v] });
    expect(matchElement(da('20200315'), da('20200101-20201231'))).toBe(true);
    expect(matchElement(da('20210101'), da('20200101-20201231'))).toBe(false);
    expect(matchElement(da('20200315'), da('-20200315'))).toBe(true);
    expect(matchElement({ vr: 'TM', Value: ['101559.5'] }, { vr: 'TM', Value: ['0900-1015'] })).toBe(true);
    expect(matchElement({ vr: 'TM', Value: ['101600'] }, { vr: 'TM', Value: ['0900-1015'] })).toBe(false);
  });
  it('treats an empty key as universal, and an absent attribute as no match', () => {
    expect(matchElement(undefined, { vr: 'LO' })).toBe(true);
    expect(matchElement(undefined, { vr: 'LO', Value: ['x'] })).toBe(false);
  });
  it('matches sequences item by item', () => {
    const stored = {
      vr: 'SQ',
      Value: [{ '00080100': { vr: 'SH', Value: ['A1'] }, '00080102': { vr: 'SH', Value: ['LN'] } }, { '00080100': { vr: 'SH', Value: ['B2'] } }],
    };
    expect(matchElement(stored, { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['B2'] } }] })).toBe(true);
    expect(matchElement(stored, { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['B2'] }, '00080102': { vr: 'SH', Value: ['LN'] } }] })).toBe(false);
    expect(matchElement(stored, { vr: 'SQ', Value: [{ '00080100': { vr: 'SH' } }] })).toBe(true);
  });
});

describe('responseIdentifier', () => {
  it('returns the requested keys only, empty when unknown or bulk data, and flags UTF-8', () => {
    const plan = planFind({ ...level('IMAGE'), '00100010': { vr: 'PN' }, '00091001': { vr: 'LO' }, '7FE00010': { vr: 'OW' } }, 'study');
    const out = responseIdentifier(
      plan,
      {
        json: {
          '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller' }] },
          '7FE00010': { vr: 'OW', BulkDataURI: 'x' },
          '00100020': { vr: 'LO', Value: ['P1'] },
        },
        computed: {},
      },
      'IMAGE',
      'PORTICO',
    );
    expect(out).toEqual({
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller' }] },
      '00091001': { vr: 'UN' },
      '7FE00010': { vr: 'OW' },
      '00080052': { vr: 'CS', Value: ['IMAGE'] },
      '00080054': { vr: 'AE', Value: ['PORTICO'] },
      '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    });
  });
});
