import { describe, expect, it } from 'vitest';
import { itemKey, parseUpstream, projectItem } from './worklist.ts';

describe('worklist helpers', () => {
  it('parses AE@host:port and refuses anything else', () => {
    expect(parseUpstream('RIS@10.0.0.5:104')).toEqual({ aeTitle: 'RIS', host: '10.0.0.5', port: 104 });
    expect(() => parseUpstream('RIS:104')).toThrow(/AE@host:port/);
    expect(() => parseUpstream('RIS@h:70000')).toThrow(/AE@host:port/);
  });
  it('keys an item by study, requested procedure, step and accession; by hash without them', () => {
    const item = {
      '0020000D': { vr: 'UI', Value: ['1.2'] },
      '00401001': { vr: 'SH', Value: ['RP1'] },
      '00080050': { vr: 'SH', Value: ['A1'] },
      '00400100': { vr: 'SQ', Value: [{ '00400009': { vr: 'SH', Value: ['SPS1'] } }] },
    };
    expect(itemKey(item)).toBe('1.2|RP1|SPS1|A1');
    expect(itemKey({ '00100010': { vr: 'PN', Value: [{ Alphabetic: 'X' }] } })).toMatch(/^[0-9a-f]{64}$/);
  });
  it('projects an item onto the keys asked for, inside sequences too, flagging UTF-8', () => {
    const item = {
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller^Jo' }] },
      '00100020': { vr: 'LO', Value: ['P1'] },
      '00400100': { vr: 'SQ', Value: [{ '00080060': { vr: 'CS', Value: ['MR'] }, '00400001': { vr: 'AE', Value: ['S1'] } }] },
    };
    const out = projectItem(item, { '00100010': { vr: 'PN' }, '00080050': { vr: 'SH' }, '00400100': { vr: 'SQ', Value: [{ '00080060': { vr: 'CS' } }] } });
    expect(out).toEqual({
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller^Jo' }] },
      '00080050': { vr: 'SH' },
      '00400100': { vr: 'SQ', Value: [{ '00080060': { vr: 'CS', Value: ['MR'] } }] },
      '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    });
  });
});
