import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DicomParseError } from './errors.ts';
import { writeFileMetaInformation } from './file-meta.ts';
import { indexAttributes } from './index-attributes.ts';
import { parseInstance } from './parse-instance.ts';
import type { ParsedInstance } from './parse-instance.ts';
import {
  chunked,
  el,
  encapsulatedPixelData,
  EXPLICIT_BE,
  header,
  identifying,
  imagePixel,
  IMPLICIT_LE,
  item,
  part10,
  prng,
  sequence,
  UNDEFINED,
  us,
} from './test-support/synthetic.ts';

const CORPUS = fileURLToPath(new URL('../../../../shared/dicom-corpus/', import.meta.url));
if (!existsSync(join(CORPUS, 'MANIFEST.tsv'))) {
  throw new Error(
    `DICOM test corpus not found at ${CORPUS} (expected ../shared/dicom-corpus beside the repository, with MANIFEST.tsv). ` +
      'These tests need it; they do not skip.',
  );
}

interface ManifestRow {
  file: string;
  transferSyntaxUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
}

function readManifest(): ManifestRow[] {
  const [head, ...lines] = readFileSync(join(CORPUS, 'MANIFEST.tsv'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  const cols = head!.split('\t');
  const col = (name: string): number => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`MANIFEST.tsv has no column "${name}"`);
    return i;
  };
  const [file, ts, sop, study] = [col('file'), col('transfer syntax UID'), col('SOP instance UID'), col('study instance UID')];
  return lines.map((l) => {
    const c = l.split('\t');
    return { file: c[file]!, transferSyntaxUid: c[ts] ?? '', sopInstanceUid: c[sop] ?? '', studyInstanceUid: c[study] ?? '' };
  });
}

function listCorpus(dir = CORPUS): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return listCorpus(p);
    return name === 'MANIFEST.tsv' || name.endsWith('.md') ? [] : [relative(CORPUS, p)];
  });
}

const manifest = readManifest();
const parseable = manifest.filter((r) => !r.file.startsWith('broken/'));
const corpusFile = (rel: string): string => join(CORPUS, rel);
const parseFile = (rel: string): Promise<ParsedInstance> => parseInstance(createReadStream(corpusFile(rel)));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('corpus', () => {
  it('MANIFEST.tsv lists exactly the files present', () => {
    expect(listCorpus().sort()).toEqual(manifest.map((r) => r.file).sort());
  });

  it.each(parseable.map((r) => [r.file, r] as const))('%s: UIDs and transfer syntax match the manifest', async (_name, row) => {
    const p = await parseFile(row.file);
    if (row.transferSyntaxUid === '') {
      expect(p.hasFileMeta).toBe(false);
      expect(p.transferSyntaxUid).toBe('1.2.840.10008.1.2');
    } else {
      expect(p.hasFileMeta).toBe(true);
      expect(p.transferSyntaxUid).toBe(row.transferSyntaxUid);
    }
    if (row.sopInstanceUid === '') expect(p.json['00080018']).toBeUndefined();
    else expect(p.sopInstanceUid).toBe(row.sopInstanceUid);
    expect(p.studyInstanceUid).toBe(row.studyInstanceUid);

    // Structural invariants: no File Meta in the data set JSON, every byte range inside the object.
    const size = statSync(corpusFile(row.file)).size;
    expect(Object.keys(p.json).filter((k) => k.startsWith('0002'))).toEqual([]);
    for (const [path, range] of Object.entries(p.bulkData)) {
      expect(p.json[path.split('/')[0]!]).toBeDefined();
      if (range) expect(range.offset + range.length).toBeLessThanOrEqual(size);
    }
    for (const frame of p.pixelData?.frames ?? []) {
      for (const r of frame) expect(r.offset + r.length).toBeLessThanOrEqual(size);
    }
  });

  it.each([
    ['broken/not_dicom.png', 'NOT_DICOM'],
    ['broken/truncated_MR_pixeldata.dcm', 'TRUNCATED'],
    ['broken/truncated_in_pixel_sequence_MR.dcm', 'TRUNCATED'],
  ])('%s rejects with DicomParseError %s', async (file, code) => {
    const err = await rejection(parseFile(file));
    expect(err).toBeInstanceOf(DicomParseError);
    expect((err as DicomParseError).code).toBe(code);
  });

  it('every file in broken/ is covered above', () => {
    expect(manifest.filter((r) => r.file.startsWith('broken/')).map((r) => r.file)).toHaveLength(3);
  });

  // The receivers parse the arriving stream and hand the result to the ingest worker (handoff.ts), which
  // otherwise parses the stored object with seeks over pixel data: the two must give the same result.
  it('parses the same from a seekable source (the ingest worker) as from the arriving stream (the receivers)', async () => {
    let seeks = 0;
    for (const row of parseable) {
      const buf = readFileSync(corpusFile(row.file));
      const streamed = await parseInstance(chunked(buf, 16 * 1024, buf.length));
      const source = {
        position: 0,
        async seek(position: number): Promise<boolean> {
          seeks++;
          this.position = position;
          return true;
        },
        async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
          while (this.position < buf.length) {
            const start = this.position;
            this.position = Math.min(buf.length, start + 64 * 1024);
            yield buf.subarray(start, this.position);
          }
        },
      };
      expect(await parseInstance(source), row.file).toEqual(streamed);
    }
    // The corpus has pixel data large enough to be skipped by seeking, so both paths were exercised.
    expect(seeks).toBeGreaterThan(0);
  });

  it('parses the same whether the stream arrives whole or in 1..7-byte chunks', async () => {
    for (const row of parseable) {
      const buf = readFileSync(corpusFile(row.file));
      const whole = await parseInstance([buf]);
      const tiny = await parseInstance(chunked(buf, 7, buf.length));
      expect(tiny, row.file).toEqual(whole);
    }
  });
});

describe('character sets (corpus)', () => {
  const patientName = async (file: string, path: (p: ParsedInstance) => unknown = (p) => p.json['00100010']?.Value?.[0]) => path(await parseFile(file));

  it.each([
    ['charset/ISO_IR_100_french.dcm', { Alphabetic: 'Buc^Jérôme' }],
    ['charset/ISO_IR_144_cyrillic.dcm', { Alphabetic: 'Люкceмбypг' }],
    ['charset/ISO_IR_127_arabic.dcm', { Alphabetic: 'قباني^لنزار' }],
    ['charset/ISO_IR_192_utf8.dcm', { Alphabetic: 'Wang^XiaoDong', Ideographic: '王^小東' }],
    ['charset/ISO_2022_IR_87_japanese.dcm', { Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }],
    ['charset/ISO_2022_IR_149_korean.dcm', { Alphabetic: 'Hong^Gildong', Ideographic: '洪^吉洞', Phonetic: '홍^길동' }],
  ])('%s', async (file, expected) => {
    expect(await patientName(file)).toEqual(expected);
  });

  it('applies a sequence item’s own Specific Character Set inside that item only', async () => {
    const p = await parseFile('charset/ISO_IR_100_in_SQ_ISO_IR_192.dcm');
    expect(p.specificCharacterSet).toEqual(['ISO_IR 192']);
    const itemJson = p.json['00321064']?.Value?.[0] as ParsedInstance['json'];
    expect(itemJson['00080005']?.Value).toEqual(['ISO 2022 IR 13', 'ISO 2022 IR 87']);
    expect(itemJson['00100010']?.Value?.[0]).toEqual({ Alphabetic: 'ﾔﾏﾀﾞ^ﾀﾛｳ', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' });
    expect(p.json['00321032']?.Value?.[0]).toEqual({ Alphabetic: 'Doctor^Who^^MD' });
  });

  it('reads an empty Specific Character Set as the default repertoire', async () => {
    const p = await parseFile('odd/empty_specific_charset.dcm');
    expect(p.json['00080005']).toEqual({ vr: 'CS' });
    expect(p.specificCharacterSet).toEqual([]);
    expect(p.json['00080008']?.Value).toEqual(['ORIGINAL', 'PRIMARY', 'SINGLE PLANE']);
  });
});

describe('frames', () => {
  const fileBytes = (rel: string): Buffer => readFileSync(corpusFile(rel));

  it('10-frame encapsulated JPEG 2000: one fragment per frame, each starting with SOC FF4F', async () => {
    const rel = 'ts/j2k-lossless_emri_small_10frames.dcm';
    const p = await parseFile(rel);
    const buf = fileBytes(rel);
    expect(p.pixelData).toMatchObject({ tag: '7FE00010', encapsulated: true, deflated: false, valueLength: null, numberOfFrames: 10 });
    expect(p.pixelData!.frames).toHaveLength(10);
    for (const [first] of p.pixelData!.frames) {
      expect(buf.readUInt16BE(first!.offset)).toBe(0xff4f);
      // the 8 bytes before a fragment value are its item header (FFFE,E000) + length
      expect(buf.readUInt32LE(first!.offset - 4)).toBe(first!.length);
      expect(buf.readUInt16LE(first!.offset - 8)).toBe(0xfffe);
    }
  });

  it('30-frame JPEG baseline: frames start with SOI FFD8', async () => {
    const rel = 'objects/US_multiframe_jpeg_30frames.dcm';
    const p = await parseFile(rel);
    const buf = fileBytes(rel);
    expect(p.pixelData!.frames).toHaveLength(30);
    for (const frame of p.pixelData!.frames) expect(buf.readUInt16BE(frame[0]!.offset)).toBe(0xffd8);
  });

  it('single-frame images with several fragments: all fragments form the frame', async () => {
    const p = await parseFile('ts/j2k-lossy_CR_RG3_J2KI.dcm');
    expect(p.pixelData!.frames).toHaveLength(1);
    expect(p.pixelData!.frames[0]!.length).toBeGreaterThan(1);
  });

  it.each([
    ['objects/MR_enhanced_bruker_4frames.dcm', 4],
    ['objects/NM_multiframe_13frames.dcm', 13],
    ['objects/RTDOSE_15frames.dcm', 15],
    ['objects/SM_wsi_highdicom.dcm', 25],
    ['objects/SEG_liver_3frames.dcm', 3],
  ])('native %s: %i contiguous frames inside the Pixel Data value', async (rel, n) => {
    const p = await parseFile(rel);
    const pd = p.pixelData!;
    expect(pd.encapsulated).toBe(false);
    expect(pd.numberOfFrames).toBe(n);
    expect(pd.frames).toHaveLength(n);
    const ranges = pd.frames.map((f) => f[0]!);
    expect(ranges[0]!.offset).toBe(pd.valueOffset);
    for (let i = 1; i < n; i++) expect(ranges[i]!.offset).toBe(ranges[i - 1]!.offset + ranges[i - 1]!.length);
    expect(ranges[n - 1]!.offset + ranges[n - 1]!.length).toBeLessThanOrEqual(pd.valueOffset + pd.valueLength!);
    const json = p.json;
    const num = (tag: string): number => json[tag]!.Value![0] as number;
    const expectedLength =
      num('00280100') === 1 ? (num('00280010') * num('00280011')) / 8 : num('00280010') * num('00280011') * num('00280002') * (num('00280100') / 8);
    expect(ranges[0]!.length).toBe(expectedLength);
  });

  it('odd-length native Pixel Data (no pad byte) gives one frame of the exact length', async () => {
    const p = await parseFile('objects/DX_monochrome1.dcm');
    expect(p.pixelData!.valueLength).toBe(169 * 211);
    expect(p.pixelData!.frames).toEqual([[{ offset: p.pixelData!.valueOffset, length: 169 * 211 }]]);
  });

  it('deflated data set: pixel data found, positions flagged as not in the stored object', async () => {
    const p = await parseFile('ts/deflate_image_dfl.dcm');
    expect(p.pixelData).toMatchObject({ deflated: true, encapsulated: false, valueLength: 512 * 512, frames: [] });
    expect(p.bulkData).toHaveProperty('7FE00010', undefined);
    expect(p.json['00280010']?.Value).toEqual([512]);
    expect(p.json['00100010']?.Value).toEqual([{ Alphabetic: '^^^^' }]);
  });
});

describe('encodings (corpus)', () => {
  it('Explicit VR Big Endian: numbers, SS by explicit VR, strings', async () => {
    const p = await parseFile('ts/explicit-be_MR_small_bigendian.dcm');
    expect(p.json['00280010']).toEqual({ vr: 'US', Value: [64] });
    expect(p.json['00280107']).toEqual({ vr: 'SS', Value: [4000] });
    expect(p.json['00200032']).toEqual({ vr: 'DS', Value: [-83.9063, -91.2, 6.6406] });
    expect(p.json['00100010']?.Value).toEqual([{ Alphabetic: 'CompressedSamples^MR1' }]);
    expect(p.pixelData).toMatchObject({ valueLength: 8192, frames: [[{ offset: p.pixelData!.valueOffset, length: 8192 }]] });
  });

  it('no preamble, no File Meta: read as Implicit VR Little Endian', async () => {
    const p = await parseFile('odd/no_meta_implicit_le_MR.dcm');
    expect(p).toMatchObject({ hasFileMeta: false, transferSyntaxUid: '1.2.840.10008.1.2', sopClassUid: '1.2.840.10008.5.1.4.1.1.4' });
    expect(p.fileMeta).toBeUndefined();
  });

  it('File Meta lacking (0002,0002)/(0002,0003): UIDs come from the data set', async () => {
    const p = await parseFile('objects/NM_multiframe_13frames.dcm');
    expect(p.sopInstanceUid).toBe('2.16.840.1.113662.5.8796818449476.121423489.1.1.3101.5309511143');
    expect(p.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.20');
  });

  it('UN private sequence of undefined length is parsed as an Implicit VR LE sequence (PS3.5 §6.2.2)', async () => {
    const p = await parseFile('odd/UN_private_sequence.dcm');
    const outer = p.json['4453100C'];
    expect(outer?.vr).toBe('SQ');
    const item0 = outer!.Value![0] as ParsedInstance['json'];
    expect(item0['0020000D']?.Value).toEqual(['1.2.840.113619.2.327.3.185221411.476.1398588725.795']);
    const series = (item0['00081115']!.Value![0] as ParsedInstance['json'])['00081199']!.Value![0] as ParsedInstance['json'];
    expect(series['00081155']?.Value).toEqual(['1.2.840.113619.2.327.3.185221411.476.1398588726.278.80']);
  });

  it('nested private sequences of undefined length in Implicit VR', async () => {
    const p = await parseFile('odd/private_SQ_nested.dcm');
    const inner = (p.json['00010001']!.Value![0] as ParsedInstance['json'])['00010001']!;
    expect(inner.vr).toBe('SQ');
    const leaf = (inner.Value![0] as ParsedInstance['json'])['00010001']!;
    expect(Buffer.from(leaf.InlineBinary!, 'base64').toString('latin1')).toBe('Double Nested SQ');
  });

  it('nested pixel data (Icon Image Sequence) is bulk data with an item path, not the instance pixel data', async () => {
    const p = await parseFile('odd/jpeg_with_icon_sequence.dcm');
    expect(p.json['00880200']!.Value![0]).toMatchObject({ '7FE00010': { BulkDataURI: '00880200/0/7FE00010' } });
    expect(p.bulkData['00880200/0/7FE00010']).toEqual({ offset: expect.any(Number), length: 4096 });
    expect(p.pixelData).toMatchObject({ tag: '7FE00010', encapsulated: true });
  });

  it('large binary values inside sequences become bulk data with their tag path (ECG waveform)', async () => {
    const rel = 'objects/ECG_12lead_waveform.dcm';
    const p = await parseFile(rel);
    expect((p.json['54000100']!.Value![0] as ParsedInstance['json'])['54001010']).toEqual({ vr: 'OW', BulkDataURI: '54000100/0/54001010' });
    const range = p.bulkData['54000100/0/54001010']!;
    const buf = readFileSync(corpusFile(rel));
    // the element header ends right before the value: (5400,1010) OW 00 00 <length>
    expect(buf.readUInt32LE(range.offset - 4)).toBe(range.length);
    expect(buf.subarray(range.offset - 12, range.offset - 8)).toEqual(Buffer.from([0x00, 0x54, 0x10, 0x10]));
  });
});

describe('indexAttributes', () => {
  it('flattens the index keys of a CT', async () => {
    const attrs = indexAttributes(await parseFile('objects/CT_small.dcm'));
    expect(attrs).toMatchObject({
      PatientName: 'CompressedSamples^CT1',
      PatientID: '1CT1',
      PatientBirthDate: '',
      PatientSex: 'O',
      IssuerOfPatientID: '',
      StudyInstanceUID: '1.3.6.1.4.1.5962.1.2.1.20040119072730.12322',
      StudyDate: '20040119',
      StudyTime: '072730',
      AccessionNumber: '',
      StudyID: '1CT1',
      StudyDescription: 'e+1',
      ReferringPhysicianName: '',
      SeriesInstanceUID: '1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322',
      Modality: 'CT',
      SeriesNumber: '1',
      SOPClassUID: '1.2.840.10008.5.1.4.1.1.2',
      SOPInstanceUID: '1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322',
      InstanceNumber: '1',
      NumberOfFrames: '',
      Rows: '128',
      Columns: '128',
      BitsAllocated: '16',
    });
    expect(Object.keys(attrs)).toHaveLength(24);
  });

  it('falls back to File Meta UIDs', async () => {
    const attrs = indexAttributes(await parseFile('odd/private_SQ_undefined_length.dcm'));
    expect(attrs.SOPInstanceUID).toBe('1.1.111.111111.1.111.1111111111.1111.1111111111.111');
    expect(attrs.PatientName).toBe('');
  });
});

describe('synthetic encodings', () => {
  const ENC_DEFLATED = '1.2.840.10008.1.2.1.99';

  it('Implicit VR LE: VRs from the dictionary, UN for unknown, SS for US-or-SS when Pixel Representation is 1', async () => {
    const ds = Buffer.concat([
      identifying(IMPLICIT_LE),
      el(0x00091010, '', Buffer.from([1, 2, 3, 4]), IMPLICIT_LE),
      us(0x00280103, [1], IMPLICIT_LE),
      el(0x00280106, '', Buffer.from([0xfe, 0xff]), IMPLICIT_LE),
    ]);
    const p = await parseInstance([part10(ds, '1.2.840.10008.1.2')]);
    expect(p.json['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }] });
    expect(p.json['00091010']).toEqual({ vr: 'UN', InlineBinary: 'AQIDBA==' });
    expect(p.json['00280106']).toEqual({ vr: 'SS', Value: [-2] });
  });

  it('Explicit VR Big Endian: binary inline values are given little endian (PS3.18 §F.2.7)', async () => {
    const ds = Buffer.concat([identifying(EXPLICIT_BE), el(0x00091011, 'OW', Buffer.from([0x12, 0x34]), EXPLICIT_BE), us(0x00280010, [258], EXPLICIT_BE)]);
    const p = await parseInstance([part10(ds, '1.2.840.10008.1.2.2')]);
    expect(p.json['00091011']).toEqual({ vr: 'OW', InlineBinary: Buffer.from([0x34, 0x12]).toString('base64') });
    expect(p.json['00280010']).toEqual({ vr: 'US', Value: [258] });
  });

  it('Deflated: the data set after File Meta is raw deflate', async () => {
    const ds = Buffer.concat([identifying(), imagePixel({ rows: 2, columns: 2, bitsAllocated: 8 }), el(0x7fe00010, 'OB', Buffer.alloc(4, 7))]);
    const file = Buffer.concat([
      writeFileMetaInformation({ sopClassUid: '1.2.3', sopInstanceUid: '1.2.3.4.5', transferSyntaxUid: ENC_DEFLATED }),
      deflateRawSync(ds),
    ]);
    const p = await parseInstance(chunked(file, 5));
    expect(p.sopInstanceUid).toBe('1.2.3.4.5');
    expect(p.pixelData).toMatchObject({ deflated: true, valueLength: 4, frames: [] });
    const truncated = await rejection(parseInstance([file.subarray(0, file.length - 6)]));
    expect(truncated).toBeInstanceOf(DicomParseError);
  });

  it('bare Explicit VR LE data set without preamble is recognised', async () => {
    const p = await parseInstance([identifying()]);
    expect(p).toMatchObject({ hasFileMeta: false, transferSyntaxUid: '1.2.840.10008.1.2.1', sopInstanceUid: '1.2.3.4.5' });
  });

  it('UN with a known public tag is read with the dictionary VR; a defined-length UN sequence as Implicit VR LE', async () => {
    const items = item(el(0x00081150, '', '1.2.840.10008.5.1.4.1.1.2', IMPLICIT_LE), IMPLICIT_LE);
    const ds = Buffer.concat([
      identifying(),
      el(0x00081030, 'UN', 'Brain MRI'), // StudyDescription written as UN
      header(0x00081199, 'UN', items.length), // ReferencedSOPSequence written as UN: its content is Implicit VR LE
      items,
    ]);
    const p = await parseInstance([part10(ds)]);
    expect(p.json['00081030']).toEqual({ vr: 'LO', Value: ['Brain MRI'] });
    expect(p.json['00081199']).toEqual({ vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] } }] });
  });

  it('values: IS/DS numbers (junk -> null), AT, PN groups, empty values, 64-bit integers, group lengths dropped', async () => {
    const sv = Buffer.alloc(16);
    sv.writeBigInt64LE(-5n, 0);
    sv.writeBigInt64LE(2n ** 60n, 8);
    const ds = Buffer.concat([
      el(0x00080000, 'UL', Buffer.from([4, 0, 0, 0])),
      identifying(),
      el(0x00181060, 'DS', '1.5\\n/a\\ 2E2 '),
      el(0x00200013, 'IS', '+12'),
      el(0x00209165, 'AT', Buffer.from([0x28, 0x00, 0x10, 0x00])),
      el(0x00321032, 'PN', 'Doe^Jane=^=  '),
      el(0x00321060, 'LO', 'a\\\\b'),
      el(0x00400254, 'LO', ''),
      el(0x00720082, 'SV', sv),
    ]);
    const p = await parseInstance([part10(ds)]);
    expect(p.json['00080000']).toBeUndefined();
    expect(p.json['00181060']).toEqual({ vr: 'DS', Value: [1.5, null, 200] });
    expect(p.json['00200013']).toEqual({ vr: 'IS', Value: [12] });
    expect(p.json['00209165']).toEqual({ vr: 'AT', Value: ['00280010'] });
    expect(p.json['00321032']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane', Ideographic: '^' }] });
    expect(p.json['00321060']).toEqual({ vr: 'LO', Value: ['a', null, 'b'] });
    expect(p.json['00400254']).toEqual({ vr: 'LO' });
    expect(p.json['00720082']).toEqual({ vr: 'SV', Value: [-5, '1152921504606846976'] });
  });

  it('inlineBinaryMax decides InlineBinary vs BulkDataURI', async () => {
    const ds = Buffer.concat([identifying(), el(0x00091011, 'OB', Buffer.alloc(16, 1)), el(0x00091012, 'OB', Buffer.alloc(18, 2))]);
    const file = part10(ds);
    const p = await parseInstance([file], { inlineBinaryMax: 16 });
    expect(p.json['00091011']?.InlineBinary).toBe(Buffer.alloc(16, 1).toString('base64'));
    expect(p.json['00091012']).toEqual({ vr: 'OB', BulkDataURI: '00091012' });
    expect(p.bulkData['00091012']).toEqual({ offset: file.length - 18, length: 18 });
  });

  it('Basic Offset Table groups several fragments per frame', async () => {
    const frags = [Buffer.from([0xff, 0xd8, 1, 2]), Buffer.from([3, 4]), Buffer.from([0xff, 0xd8, 5, 6]), Buffer.from([7, 8])];
    // offsets of frame starts relative to the first fragment item: item header (8) + value
    const ds = Buffer.concat([
      identifying(),
      imagePixel({ rows: 1, columns: 1, bitsAllocated: 8, frames: 2 }),
      encapsulatedPixelData([0, 8 + 4 + 8 + 2], frags),
    ]);
    const file = part10(ds, '1.2.840.10008.1.2.4.50');
    const p = await parseInstance([file]);
    const frames = p.pixelData!.frames;
    expect(frames.map((f) => f.map((r) => file.subarray(r.offset, r.offset + r.length)))).toEqual([
      [frags[0], frags[1]],
      [frags[2], frags[3]],
    ]);
  });

  it('without a Basic Offset Table, JPEG frame starts are found by SOI markers; non-JPEG gives no frames', async () => {
    const frags = [Buffer.from([0xff, 0xd8, 1, 2]), Buffer.from([3, 4]), Buffer.from([0xff, 0xd8, 5, 6]), Buffer.from([7, 8]), Buffer.from([0xff, 0xd8])];
    const ds = Buffer.concat([identifying(), imagePixel({ rows: 1, columns: 1, bitsAllocated: 8, frames: 3 }), encapsulatedPixelData([], frags)]);
    const jpeg = await parseInstance([part10(ds, '1.2.840.10008.1.2.4.50')]);
    expect(jpeg.pixelData!.frames.map((f) => f.length)).toEqual([2, 2, 1]);
    const rle = await parseInstance([part10(ds, '1.2.840.10008.1.2.5')]);
    expect(rle.pixelData!.frames).toEqual([]);
  });

  it('Extended Offset Table (7FE0,0001) maps frames to fragments', async () => {
    const frags = [Buffer.from([1, 2]), Buffer.from([3, 4, 5, 6]), Buffer.from([7, 8])];
    const eot = Buffer.alloc(16);
    eot.writeBigUInt64LE(0n, 0);
    eot.writeBigUInt64LE(BigInt(8 + 2 + 8 + 4), 8); // frame 2 starts at the third fragment
    const lengths = Buffer.alloc(16);
    lengths.writeBigUInt64LE(6n, 0);
    lengths.writeBigUInt64LE(2n, 8);
    const ds = Buffer.concat([
      identifying(),
      imagePixel({ rows: 1, columns: 1, bitsAllocated: 8, frames: 2 }),
      el(0x7fe00001, 'OV', eot),
      el(0x7fe00002, 'OV', lengths),
      encapsulatedPixelData([], frags),
    ]);
    const p = await parseInstance([part10(ds, '1.2.840.10008.1.2.4.201')]);
    expect(p.pixelData!.frames.map((f) => f.map((r) => r.length))).toEqual([[2, 4], [2]]);
    expect(p.json['7FE00001']).toEqual({ vr: 'OV', InlineBinary: eot.toString('base64') });
  });

  it('Bits Allocated 1: frames are bit-packed, ranges cover the bytes holding each frame', async () => {
    // 3x3 1-bit frames: 9 bits each, frame 1 starts at bit 9 (byte 1, bit 1)
    const ds = Buffer.concat([identifying(), imagePixel({ rows: 3, columns: 3, bitsAllocated: 1, frames: 3 }), el(0x7fe00010, 'OB', Buffer.alloc(4))]);
    const p = await parseInstance([part10(ds)]);
    const base = p.pixelData!.valueOffset;
    expect(p.pixelData!.frames).toEqual([[{ offset: base, length: 2 }], [{ offset: base + 1, length: 2 }], [{ offset: base + 2, length: 2 }]]);
  });

  it('sequences and items of defined and undefined length, nested, with empty items', async () => {
    const leaf = el(0x00100020, 'LO', 'ID1');
    const nested = sequence(0x00400275, [item(leaf, undefined, true), item(Buffer.alloc(0))], undefined, true);
    const ds = Buffer.concat([identifying(), sequence(0x00081115, [item(nested), item(leaf, undefined, true)])]);
    const p = await parseInstance(chunked(part10(ds), 3));
    expect(p.json['00081115']).toEqual({
      vr: 'SQ',
      Value: [{ '00400275': { vr: 'SQ', Value: [{ '00100020': { vr: 'LO', Value: ['ID1'] } }, {}] } }, { '00100020': { vr: 'LO', Value: ['ID1'] } }],
    });
  });
});

describe('robustness', () => {
  it('rejects with HEADER_TOO_LARGE instead of buffering beyond maxHeaderBytes', async () => {
    const ds = Buffer.concat([identifying(), header(0x00091010, 'UT', 0x7ffffff0)]);
    const err = await rejection(parseInstance([part10(ds)], { maxHeaderBytes: 1024 * 1024 }));
    expect((err as DicomParseError).code).toBe('HEADER_TOO_LARGE');
  });

  it('rejects absurd nesting and endless empty elements cleanly', async () => {
    let nested = el(0x00100020, 'LO', 'X');
    for (let i = 0; i < 300; i++) nested = sequence(0x00081115, [item(nested, undefined, true)], undefined, true);
    const deep = await rejection(parseInstance([part10(Buffer.concat([identifying(), nested]))]));
    expect((deep as DicomParseError).code).toBe('MALFORMED');

    async function* zeros(): AsyncGenerator<Buffer> {
      yield part10(identifying());
      for (;;) yield Buffer.alloc(64 * 1024);
    }
    const endless = await rejection(parseInstance(zeros(), { maxHeaderBytes: 4 * 1024 * 1024 }));
    expect((endless as DicomParseError).code).toBe('HEADER_TOO_LARGE');
  });

  it('lets errors of the source itself through unchanged', async () => {
    const boom = new Error('socket reset');
    async function* failing(): AsyncGenerator<Buffer> {
      yield part10(identifying()).subarray(0, 150);
      throw boom;
    }
    expect(await rejection(parseInstance(failing()))).toBe(boom);
  });

  it.each([
    ['empty input', 'NOT_DICOM', Buffer.alloc(0)],
    ['a PDF', 'NOT_DICOM', Buffer.from('%PDF-1.4\n%âãÏÓ\n1 0 obj')],
    ['a JPEG', 'NOT_DICOM', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46])],
    ['preamble only', 'TRUNCATED', Buffer.concat([Buffer.alloc(128), Buffer.from('DICM')])],
    ['item outside a sequence', 'MALFORMED', part10(Buffer.concat([identifying(), header(0xfffee000, '', 0)]))],
    ['undefined length on UT', 'MALFORMED', part10(Buffer.concat([identifying(), header(0x00081030, 'UT', UNDEFINED)]))],
  ])('%s -> %s', async (_name, code, input) => {
    const err = await rejection(parseInstance([input]));
    expect(err).toBeInstanceOf(DicomParseError);
    expect((err as DicomParseError).code).toBe(code);
  });

  it('every truncation of a file either parses (cut at a top-level element boundary) or rejects with DicomParseError', async () => {
    for (const rel of ['objects/KOS_for_MR_jpeg_extended.dcm', 'odd/UN_private_sequence.dcm', 'ts/jpeg-ls-near-lossless_16bit_small.dcm']) {
      const buf = readFileSync(corpusFile(rel));
      for (let cut = 0; cut < buf.length; cut++) {
        try {
          await parseInstance([buf.subarray(0, cut)]);
        } catch (err) {
          expect(err, `${rel} cut at ${cut}`).toBeInstanceOf(DicomParseError);
        }
      }
    }
  });

  it('random corruption never produces anything but a result or a DicomParseError', async () => {
    const rnd = prng(20240611);
    const files = ['objects/SR_basic_text.dcm', 'charset/ISO_2022_IR_87_japanese.dcm', 'objects/PR_gsps_for_CR.dcm', 'ts/deflate_image_dfl.dcm'];
    for (const rel of files) {
      const original = readFileSync(corpusFile(rel));
      for (let round = 0; round < 150; round++) {
        const buf = Buffer.from(original);
        const flips = 1 + Math.floor(rnd() * 8);
        for (let i = 0; i < flips; i++) buf[132 + Math.floor(rnd() * (buf.length - 132))] = Math.floor(rnd() * 256);
        try {
          await parseInstance(chunked(buf, 4096, round));
        } catch (err) {
          expect(err, `${rel} round ${round}`).toBeInstanceOf(DicomParseError);
        }
      }
    }
  });

  it('does not retain pixel data: a lazily generated 200 MB native stream adds < 50 MB RSS', async () => {
    // Collect garbage while streaming so RSS reflects what is retained, not what the GC has yet to free.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const rows = 1000;
    const columns = 1000;
    const frames = 100;
    const size = rows * columns * 2 * frames;
    async function* stream(): AsyncGenerator<Buffer> {
      yield part10(Buffer.concat([identifying(), imagePixel({ rows, columns, bitsAllocated: 16, frames }), header(0x7fe00010, 'OW', size)]));
      const chunk = 64 * 1024;
      for (let sent = 0; sent < size; sent += chunk) {
        if (sent % (16 * 1024 * 1024) === 0) gc();
        yield Buffer.alloc(Math.min(chunk, size - sent), sent & 0xff);
      }
    }
    gc();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2);
    try {
      const p = await parseInstance(stream());
      peak = Math.max(peak, process.memoryUsage().rss);
      expect(p.pixelData).toMatchObject({ valueLength: size, numberOfFrames: frames });
      expect(p.pixelData!.frames).toHaveLength(frames);
    } finally {
      clearInterval(sampler);
    }
    expect(peak - before).toBeLessThan(50 * 1024 * 1024);
  });
});
