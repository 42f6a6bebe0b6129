import { describe, expect, it } from 'vitest';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import { encodeIdentifier } from './identifier.ts';
import type { JsonDataset } from './find-match.ts';

const { Dataset } = dimse;
const { DicomMetaDictionary } = dcmjs.data;

/** What dcmjs-dimse writes for a response identifier (as the SCP did before, scp.ts build()). */
function dcmjsBytes(identifier: JsonDataset, ts: string): Buffer {
  const ds = new Dataset(DicomMetaDictionary.naturalizeDataset(identifier), ts) as unknown as {
    getDenaturalizedDataset(options: unknown, nameMap: unknown): Buffer;
  };
  return Buffer.from(ds.getDenaturalizedDataset({}, undefined));
}

const STUDY: JsonDataset = {
  '00080020': { vr: 'DA', Value: ['20210310'] },
  '00080030': { vr: 'TM' },
  '00080050': { vr: 'SH', Value: ['ACC1'] }, // even length
  '00080052': { vr: 'CS', Value: ['STUDY'] }, // odd length: space padded
  '00080054': { vr: 'AE', Value: ['PORTICO'] },
  '00080061': { vr: 'CS', Value: ['CT', 'MR'] },
  '00081030': { vr: 'LO', Value: ['Chest \\ abdomen'.replace('\\', '/')] },
  '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }] },
  '00100020': { vr: 'LO', Value: ['P2'] },
  '0020000D': { vr: 'UI', Value: ['1.2.840.113619.2.55.3'] }, // odd length: NUL padded
  '00201206': { vr: 'IS', Value: [2] },
  '00201208': { vr: 'IS', Value: [500] },
  '00321060': { vr: 'LO', Value: [] },
  '0040A160': { vr: 'UT', Value: ['long text'] },
};

describe('encodeIdentifier', () => {
  it('writes the bytes dcmjs writes, Implicit and Explicit VR Little Endian', () => {
    for (const ts of ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']) {
      const ours = encodeIdentifier(STUDY, ts);
      expect(ours).toBeDefined();
      expect(ours!.toString('hex')).toBe(dcmjsBytes(STUDY, ts).toString('hex'));
    }
  });

  it('leaves to dcmjs what it does not write: sequences, binary VRs, other syntaxes, non-ASCII, multi-part names', () => {
    const ts = '1.2.840.10008.1.2.1';
    expect(encodeIdentifier({ '00081110': { vr: 'SQ', Value: [] } }, ts)).toBeUndefined();
    expect(encodeIdentifier({ '00280010': { vr: 'US', Value: [512] } }, ts)).toBeUndefined();
    expect(encodeIdentifier(STUDY, '1.2.840.10008.1.2.2')).toBeUndefined();
    expect(encodeIdentifier({ '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller^Jürgen' }] } }, ts)).toBeUndefined();
    expect(encodeIdentifier({ '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }] } }, ts)).toBeUndefined();
    expect(encodeIdentifier({ '00201208': { vr: 'DS', Value: [1.5] } }, ts)).toBeUndefined();
  });
});
