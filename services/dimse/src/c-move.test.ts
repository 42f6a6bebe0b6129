import { describe, expect, it } from 'vitest';
import { finalStatus, isWarning, retrieveKeys } from './c-move.ts';

const ui = (v: string) => ({ vr: 'UI', Value: [v] });
const cs = (v: string) => ({ vr: 'CS', Value: [v] });

describe('C-MOVE identifier and status', () => {
  it('takes the unique keys of the level and above, lists included', () => {
    expect(retrieveKeys({ '00080052': cs('STUDY'), '0020000D': ui('1.2\\1.3') }, 'study')).toEqual({ studyInstanceUids: ['1.2', '1.3'] });
    expect(retrieveKeys({ '00080052': cs('PATIENT'), '00100020': { vr: 'LO', Value: ['P1'] } }, 'patient')).toEqual({ patientId: 'P1' });
    expect(retrieveKeys({ '00080052': cs('IMAGE'), '0020000D': ui('1.2'), '00080018': ui('1.2.3') }, 'study')).toEqual({
      studyInstanceUids: ['1.2'],
      sopInstanceUids: ['1.2.3'],
    });
  });
  it('refuses a level without its unique key, or PATIENT in Study Root', () => {
    expect(() => retrieveKeys({ '00080052': cs('SERIES'), '0020000D': ui('1.2') }, 'study')).toThrow(/without SeriesInstanceUID/);
    expect(() => retrieveKeys({ '00080052': cs('PATIENT'), '00100020': { vr: 'LO', Value: ['P'] } }, 'study')).toThrow(/not valid/);
    expect(() => retrieveKeys({}, 'study')).toThrow(/not valid/);
  });
  it('final status from the sub-operation counts (PS3.4 C.4.2.1.5)', () => {
    expect(finalStatus({ remaining: 0, completed: 3, failed: 0, warning: 0 }, false)).toBe(0x0000);
    expect(finalStatus({ remaining: 0, completed: 2, failed: 1, warning: 0 }, false)).toBe(0xb000);
    expect(finalStatus({ remaining: 0, completed: 0, failed: 0, warning: 2 }, false)).toBe(0xb000);
    expect(finalStatus({ remaining: 0, completed: 0, failed: 3, warning: 0 }, false)).toBe(0xa702);
    expect(finalStatus({ remaining: 2, completed: 1, failed: 0, warning: 0 }, true)).toBe(0xfe00);
    expect(isWarning(0xb007)).toBe(true);
    expect(isWarning(0xa700)).toBe(false);
  });
});
