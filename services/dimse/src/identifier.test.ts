import { describe, expect, it } from 'vitest';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import { decodeIdentifier, encodeIdentifier } from './identifier.ts';
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

/** One element as a requester writes it: the value bytes as given, padded to even length. */
function element(tag: number, vr: string, value: string, explicit: boolean): Buffer {
  let bytes = Buffer.from(value, 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  const head = Buffer.alloc(8);
  head.writeUInt16LE(tag >>> 16, 0);
  head.writeUInt16LE(tag & 0xffff, 2);
  if (explicit) {
    head.write(vr, 4, 'latin1');
    head.writeUInt16LE(bytes.length, 6);
  } else head.writeUInt32LE(bytes.length, 4);
  return Buffer.concat([head, bytes]);
}

/** What the SCP got from dcmjs-dimse before: its parse of the identifier, denaturalized. */
function dcmjsJson(bytes: Buffer, ts: string): unknown {
  return DicomMetaDictionary.denaturalizeDataset(new Dataset(bytes, ts).getElements());
}

const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';

describe('decodeIdentifier', () => {
  it('reads typical identifiers as dcmjs does, Implicit and Explicit VR Little Endian', () => {
    const keys: Array<[number, string, string]> = [
      [0x00080020, 'DA', '20200101-20201231'],
      [0x00080030, 'TM', ''],
      [0x00080050, 'SH', ''],
      [0x00080052, 'CS', 'STUDY'],
      [0x00080061, 'CS', 'CT\\MR'],
      [0x00100010, 'PN', 'Bench*'],
      [0x00100020, 'LO', 'BENCHQR'],
      [0x0020000d, 'UI', '1.2.3\\1.2.44'],
      [0x00201208, 'IS', ''],
    ];
    for (const explicit of [false, true]) {
      const ts = explicit ? EXPLICIT : IMPLICIT;
      const bytes = Buffer.concat(keys.map(([tag, vr, v]) => element(tag, vr, v, explicit)));
      const ours = decodeIdentifier(bytes, ts);
      expect(ours).toBeDefined();
      expect(JSON.stringify(ours)).toBe(JSON.stringify(dcmjsJson(bytes, ts)));
    }
  });

  it('gives what dcmjs gives for random values, or leaves them to dcmjs', () => {
    const tags: Array<[number, string]> = [
      [0x00080054, 'AE'],
      [0x00101010, 'AS'],
      [0x00080052, 'CS'],
      [0x00080020, 'DA'],
      [0x00101020, 'DS'],
      [0x0008002a, 'DT'],
      [0x00201208, 'IS'],
      [0x00100020, 'LO'],
      [0x00100010, 'PN'],
      [0x00080050, 'SH'],
      [0x00080030, 'TM'],
      [0x0020000d, 'UI'],
      [0x00104000, 'LT'],
    ];
    const alphabet = ['A', 'b', '1', '.', ' ', ' ', '\\', '^', '*', '?', '-', '=', '\0', 'é'];
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let decoded = 0;
    const runs = 3000;
    for (let run = 0; run < runs; run++) {
      const explicit = random(2) === 1;
      const ts = explicit ? EXPLICIT : IMPLICIT;
      const chosen = tags.filter(() => random(3) === 0).sort((a, b) => a[0] - b[0]);
      const bytes = Buffer.concat(
        chosen.map(([tag, vr]) => {
          const weird = random(4) === 0;
          const chars = weird ? alphabet : vr === 'UI' ? ['1', '2', '.', '\\'] : alphabet.slice(0, 11);
          let value = '';
          for (let i = random(12); i > 0; i--) value += chars[random(chars.length)];
          return element(tag, vr, value, explicit);
        }),
      );
      const ours = decodeIdentifier(bytes, ts);
      if (ours === undefined) continue;
      decoded++;
      expect(JSON.stringify(ours), bytes.toString('latin1')).toBe(JSON.stringify(dcmjsJson(bytes, ts)));
    }
    // Some identifiers of only plain elements are among them (one odd element sends the whole to dcmjs).
    expect(decoded).toBeGreaterThan(runs / 15);
  });

  it('leaves sequences, character sets, private elements, non-ASCII text and other syntaxes to dcmjs', () => {
    const ts = EXPLICIT;
    const sq = Buffer.from('08001011' + '5351' + '0000' + 'ffffffff' + 'feffdde0' + '00000000', 'hex');
    expect(decodeIdentifier(sq, ts)).toBeUndefined();
    expect(decodeIdentifier(element(0x00080005, 'CS', 'ISO_IR 100', true), ts)).toBeUndefined();
    expect(decodeIdentifier(element(0x00091010, 'LO', 'x', true), ts)).toBeUndefined();
    expect(decodeIdentifier(element(0x00100010, 'PN', 'Müller', true), ts)).toBeUndefined();
    expect(decodeIdentifier(element(0x00100020, 'LO', 'P1', true), '1.2.840.10008.1.2.2')).toBeUndefined();
  });
});
