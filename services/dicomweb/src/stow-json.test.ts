import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseInstance } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { buildInstance, formatDs, type BulkPart } from './stow-json.ts';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const base = {
  '00080016': { vr: 'UI', Value: [CT] },
  '00080018': { vr: 'UI', Value: ['1.2.3.4.5'] },
  '0020000D': { vr: 'UI', Value: ['1.2.3'] },
  '0020000E': { vr: 'UI', Value: ['1.2.3.4'] },
};
const octet = (body: Buffer): BulkPart => ({ mediaType: { type: 'application/octet-stream', params: {} }, body });
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (err) {
    return err instanceof PorticoError ? `${err.code} ${err.message}` : String(err);
  }
  return undefined;
};

describe('buildInstance', () => {
  it('writes values by VR and reads back as the same DICOM JSON', async () => {
    const ds = {
      ...base,
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Müller^Jürgen', Ideographic: '山田^太郎' }, null] },
      '00100020': { vr: 'LO', Value: ['ID\u00e91'] },
      '00200013': { vr: 'IS', Value: [7] },
      '00280030': { vr: 'DS', Value: [0.1234567890123456, -2.5] },
      '00280010': { vr: 'US', Value: [2] },
      '00189219': { vr: 'SS', Value: [-3] },
      '00209165': { vr: 'AT', Value: ['00100020', '7FE00010'] },
      '00181150': { vr: 'IS' },
      '00081115': {
        vr: 'SQ',
        Value: [{ '00081150': { vr: 'UI', Value: ['1.2'] }, '00081155': { vr: 'UI', Value: ['1.2.9'] } }, {}],
      },
      '00091010': { vr: 'OB', InlineBinary: Buffer.from([1, 2, 3, 4]).toString('base64') },
      '7FE00010': { vr: 'OW', BulkDataURI: 'http://x/bulk/1' },
    };
    const pixels = Buffer.from([1, 0, 2, 0]);
    const built = buildInstance(ds, new Map([['http://x/bulk/1', [octet(pixels)]]]));
    expect(built.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect([...built.used]).toEqual(['http://x/bulk/1']);
    const parsed = await parseInstance(Readable.from([built.bytes]), { inlineBinaryMax: 16 });
    expect(parsed.hasFileMeta).toBe(true);
    expect(parsed.sopInstanceUid).toBe('1.2.3.4.5');
    const j = parsed.json;
    expect(j['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
    expect(j['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen', Ideographic: '山田^太郎' }, null]);
    expect(j['00100020']!.Value).toEqual(['IDé1']);
    expect(j['00200013']!.Value).toEqual([7]);
    expect(j['00280030']!.Value).toEqual([0.123456789012346, -2.5]);
    expect(j['00189219']!.Value).toEqual([-3]);
    expect(j['00209165']!.Value).toEqual(['00100020', '7FE00010']);
    expect(j['00181150']).toEqual({ vr: 'IS' });
    expect(j['00081115']!.Value).toEqual([{ '00081150': { vr: 'UI', Value: ['1.2'] }, '00081155': { vr: 'UI', Value: ['1.2.9'] } }, {}]);
    expect(j['00091010']!.InlineBinary).toBe(Buffer.from([1, 2, 3, 4]).toString('base64'));
    const px = parsed.pixelData!;
    expect(built.bytes.subarray(px.valueOffset, px.valueOffset + px.valueLength!)).toEqual(pixels);
  });

  it('ASCII-only data sets keep their Specific Character Set and get none added', async () => {
    const built = buildInstance({ ...base, '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }] } }, new Map());
    const parsed = await parseInstance(Readable.from([built.bytes]));
    expect(parsed.json['00080005']).toBeUndefined();
  });

  it('compressed Pixel Data: encapsulated with a Basic Offset Table, one fragment per frame, odd frames padded', async () => {
    const f1 = Buffer.from([0xff, 0xd8, 1, 0xff, 0xd9]);
    const f2 = Buffer.from([0xff, 0xd8, 2, 3, 0xff, 0xd9]);
    const jpeg = (body: Buffer): BulkPart => ({ mediaType: { type: 'image/jpeg', params: { 'transfer-syntax': '1.2.840.10008.1.2.4.50' } }, body });
    const ds = {
      ...base,
      '00280008': { vr: 'IS', Value: [2] },
      '7FE00001': { vr: 'OV', InlineBinary: Buffer.alloc(16).toString('base64') },
      '7FE00002': { vr: 'OV', InlineBinary: Buffer.alloc(16).toString('base64') },
      '7FE00010': { vr: 'OB', BulkDataURI: 'f' },
    };
    const built = buildInstance(ds, new Map([['f', [jpeg(f1), jpeg(f2)]]]));
    expect(built.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.50');
    const parsed = await parseInstance(Readable.from([built.bytes]));
    expect(parsed.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.50');
    expect(parsed.pixelData!.encapsulated).toBe(true);
    expect(parsed.json['7FE00001']).toBeUndefined();
    expect(parsed.json['7FE00002']).toBeUndefined();
    const frames = parsed.pixelData!.frames.map((ranges) => Buffer.concat(ranges.map((r) => built.bytes.subarray(r.offset, r.offset + r.length))));
    expect(frames.map((f) => f.subarray(0, f.lastIndexOf(0xd9) + 1))).toEqual([f1, f2]);
    // Basic Offset Table: item tag, length 8, offsets 0 and 8 + 6 (5 bytes padded)
    const bot = built.bytes.subarray(parsed.pixelData!.valueOffset, parsed.pixelData!.valueOffset + 16);
    expect(bot.readUInt32LE(4)).toBe(8);
    expect([bot.readUInt32LE(8), bot.readUInt32LE(12)]).toEqual([0, 14]);
    // without transfer-syntax the media type's default applies (PS3.18 Table 8.7.3-5)
    const dflt = buildInstance(
      { ...base, '7FE00010': { vr: 'OB', BulkDataURI: 'f' } },
      new Map([['f', [{ mediaType: { type: 'image/jls', params: {} }, body: f1 }]]]),
    );
    expect(dflt.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.80');
  });

  it('refuses what it cannot encode, naming the attribute', () => {
    expect(code(() => buildInstance({ '00080016': base['00080016'] }, new Map()))).toMatch(/^MISSING_ATTRIBUTE .*SOPInstanceUID/);
    expect(code(() => buildInstance({ ...base, '7FE00010': { vr: 'OW', BulkDataURI: 'nope' } }, new Map()))).toMatch(
      /^CANNOT_UNDERSTAND 7FE00010: no bulk data part/,
    );
    expect(code(() => buildInstance({ ...base, '00280010': { vr: 'US', Value: ['x'] } }, new Map()))).toMatch(/^CANNOT_UNDERSTAND 00280010/);
    expect(code(() => buildInstance({ ...base, '00280010': { vr: 'US', Value: [70000] } }, new Map()))).toMatch(/out of range/);
    expect(code(() => buildInstance({ ...base, x: { vr: 'US' } }, new Map()))).toMatch(/not a tag/);
    expect(code(() => buildInstance({ ...base, '00100010': { vr: 'PN', Value: ['Doe'] } }, new Map()))).toMatch(/PN values are objects/);
    expect(code(() => buildInstance({ ...base, '00100010': { vr: 'XX', Value: ['a'] } }, new Map()))).toMatch(/unknown VR/);
    expect(code(() => buildInstance([], new Map()))).toMatch(/^CANNOT_UNDERSTAND/);
    const frames = { ...base, '00280008': { vr: 'IS', Value: [3] }, '7FE00010': { vr: 'OB', BulkDataURI: 'f' } };
    const one = new Map([['f', [{ mediaType: { type: 'image/jpeg', params: {} }, body: Buffer.from([1]) }]]]);
    expect(code(() => buildInstance(frames, one))).toMatch(/one part per frame: 1 parts for 3 frames/);
    expect(
      code(() =>
        buildInstance(
          { ...base, '7FE00010': { vr: 'OB', BulkDataURI: 'f' } },
          new Map([['f', [{ mediaType: { type: 'image/png', params: {} }, body: Buffer.from([1]) }]]]),
        ),
      ),
    ).toMatch(/without a transfer-syntax/);
  });
});

describe('formatDs', () => {
  it('fits 16 characters', () => {
    for (const n of [0, 1, -2.5, 0.1234567890123456, 1e-20, -1.2345678901234567e300, 123456789012345680]) {
      const s = formatDs(n);
      expect(s.length).toBeLessThanOrEqual(16);
      expect(Math.abs(Number(s) - n)).toBeLessThanOrEqual(Math.abs(n) * 1e-10);
    }
  });
});
