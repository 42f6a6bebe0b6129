import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DicomParseError } from './errors.ts';
import {
  hasPart10Preamble,
  PORTICO_IMPLEMENTATION_CLASS_UID,
  PORTICO_IMPLEMENTATION_VERSION_NAME,
  readFileMetaInformation,
  writeFileMetaInformation,
} from './file-meta.ts';
import { el } from './test-support/synthetic.ts';

const CORPUS = fileURLToPath(new URL('../../../../shared/dicom-corpus/', import.meta.url));

describe('writeFileMetaInformation', () => {
  const opts = {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    sopInstanceUid: '1.2.3.4.5.6.7', // odd length: needs a NUL pad
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    sourceApplicationEntityTitle: 'MODALITY1', // odd length: needs a space pad
  };

  it('writes preamble, DICM and an even-length Explicit VR LE group that reads back', () => {
    const buf = writeFileMetaInformation(opts);
    expect(buf.subarray(0, 128).every((b) => b === 0)).toBe(true);
    expect(buf.toString('latin1', 128, 132)).toBe('DICM');
    expect(hasPart10Preamble(buf)).toBe(true);
    // (0002,0000) UL 4 <group length>
    expect(buf.subarray(132, 140)).toEqual(Buffer.from([0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00]));
    expect(buf.readUInt32LE(140)).toBe(buf.length - 144);
    expect(buf.length % 2).toBe(0);

    const meta = readFileMetaInformation(buf);
    expect(meta).toEqual({
      sopClassUid: opts.sopClassUid,
      sopInstanceUid: opts.sopInstanceUid,
      transferSyntaxUid: opts.transferSyntaxUid,
      sourceApplicationEntityTitle: 'MODALITY1',
      implementationClassUid: PORTICO_IMPLEMENTATION_CLASS_UID,
      implementationVersionName: PORTICO_IMPLEMENTATION_VERSION_NAME,
      datasetOffset: buf.length,
    });
  });

  it('pads UIDs with NUL and AE/SH with a space, and writes version 00\\01', () => {
    const buf = writeFileMetaInformation(opts);
    const text = buf.toString('latin1');
    expect(text).toContain('1.2.3.4.5.6.7\0');
    expect(text).toContain('MODALITY1 ');
    expect(text).toContain('PORTICO_010 ');
    expect(text).toContain('\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01');
  });

  it('omits (0002,0016) when no AE title is given', () => {
    const { sourceApplicationEntityTitle: _unused, ...rest } = opts;
    const buf = writeFileMetaInformation(rest);
    expect(buf.includes(Buffer.from([0x02, 0x00, 0x16, 0x00]))).toBe(false);
    expect(readFileMetaInformation(buf).sourceApplicationEntityTitle).toBeUndefined();
  });

  it('refuses values that cannot be encoded', () => {
    expect(() => writeFileMetaInformation({ ...opts, sopInstanceUid: '' })).toThrow(RangeError);
    expect(() => writeFileMetaInformation({ ...opts, sopInstanceUid: '1.2.x' })).toThrow(RangeError);
    expect(() => writeFileMetaInformation({ ...opts, sopInstanceUid: '1.'.repeat(33) + '1' })).toThrow(RangeError);
    expect(() => writeFileMetaInformation({ ...opts, sourceApplicationEntityTitle: 'A'.repeat(17) })).toThrow(RangeError);
  });
});

describe('readFileMetaInformation', () => {
  const metaBody = (elements: Buffer[]): Buffer => Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), ...elements]);

  it('rejects input without the DICM prefix', () => {
    expect(() => readFileMetaInformation(Buffer.alloc(300))).toThrow(DicomParseError);
    expect(hasPart10Preamble(Buffer.from('DICM'))).toBe(false);
  });

  it('rejects a buffer that ends inside the group', () => {
    const buf = writeFileMetaInformation({ sopClassUid: '1.2', sopInstanceUid: '1.2.3', transferSyntaxUid: '1.2.840.10008.1.2' });
    try {
      readFileMetaInformation(buf.subarray(0, buf.length - 10));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(DicomParseError);
      expect((err as DicomParseError).code).toBe('TRUNCATED');
    }
  });

  it('reads a group without (0002,0000), ending at the first element of another group', () => {
    const buf = metaBody([
      el(0x00020002, 'UI', '1.2.840.10008.5.1.4.1.1.7'),
      el(0x00020003, 'UI', '9.8.7'),
      el(0x00020010, 'UI', '1.2.840.10008.1.2'),
      el(0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.7'),
    ]);
    const meta = readFileMetaInformation(buf);
    expect(meta.transferSyntaxUid).toBe('1.2.840.10008.1.2');
    expect(meta.sopInstanceUid).toBe('9.8.7');
    expect(meta.datasetOffset).toBe(buf.length - el(0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.7').length);
  });

  it('ignores a group length that stops while group 0002 continues', () => {
    const rest = [el(0x00020001, 'OB', Buffer.from([0, 1])), el(0x00020010, 'UI', '1.2.840.10008.1.2.2')];
    const wrongLength = Buffer.alloc(4);
    wrongLength.writeUInt32LE(rest[0]!.length); // covers only the first element
    const buf = metaBody([el(0x00020000, 'UL', wrongLength), ...rest]);
    expect(readFileMetaInformation(buf)).toMatchObject({ transferSyntaxUid: '1.2.840.10008.1.2.2', datasetOffset: buf.length });
  });

  it('skips a stray non-0002 element inside the group length (corpus: Philips US with (0008,0000))', () => {
    const buf = readFileSync(CORPUS + 'ts/jpeg-baseline_US_YBR422_philips.dcm');
    const meta = readFileMetaInformation(buf.subarray(0, 4096));
    expect(meta.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.50');
    expect(meta.sopInstanceUid).toBe('1.2.840.113663.1298.1.3.715.20000329.1115326');
    // 132 + (0002,0000) element (12) + group length 172 (which includes the stray (0008,0000) element)
    expect(meta.datasetOffset).toBe(132 + 12 + 172);
  });

  it('reads a group lacking (0002,0002)/(0002,0003) (corpus: NM multi-frame)', () => {
    const buf = readFileSync(CORPUS + 'objects/NM_multiframe_13frames.dcm');
    const meta = readFileMetaInformation(buf.subarray(0, 2048));
    expect(meta).toMatchObject({ transferSyntaxUid: '1.2.840.10008.1.2.1', sopClassUid: '', sopInstanceUid: '' });
  });
});
