import { describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { acceptsDicomJson, negotiateBulkData, negotiateFrames, negotiateInstances, parseAccept, parseMediaType, parseStowContentType } from './media-types.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof PorticoError ? e.code : 'not-a-PorticoError';
  }
  return undefined;
}

describe('parseMediaType', () => {
  it('lower-cases type and parameter names, unquotes values, keeps boundary case', () => {
    expect(parseMediaType('Multipart/Related; TYPE="Application/DICOM"; Boundary="AbC:d e"')).toEqual({
      type: 'multipart/related',
      params: { type: 'application/dicom', boundary: 'AbC:d e' },
    });
  });
  it('handles unquoted values, spaces, semicolons inside quotes and escapes', () => {
    expect(parseMediaType('multipart/related;type=application/dicom ;boundary=x-1')?.params).toEqual({ type: 'application/dicom', boundary: 'x-1' });
    expect(parseMediaType('a/b; p="x;y\\"z"')?.params).toEqual({ p: 'x;y"z' });
  });
  it('rejects garbage', () => {
    expect(parseMediaType('multipart')).toBeNull();
    expect(parseMediaType('a/b; novalue')).toBeNull();
    expect(parseMediaType('a/b; p="open')).toBeNull();
    expect(parseMediaType(undefined)).toBeNull();
  });
});

describe('parseStowContentType', () => {
  it('accepts the forms clients send', () => {
    expect(parseStowContentType('multipart/related; type="application/dicom"; boundary="b0undary"')).toEqual({
      boundary: 'b0undary',
      rootType: 'application/dicom',
    });
    expect(parseStowContentType('multipart/related; type=application/dicom; boundary=abc')).toEqual({ boundary: 'abc', rootType: 'application/dicom' });
    expect(parseStowContentType('MULTIPART/RELATED; BOUNDARY=Xy; Type="APPLICATION/DICOM"')).toEqual({ boundary: 'Xy', rootType: 'application/dicom' });
    expect(parseStowContentType('multipart/related; boundary=abc')).toEqual({ boundary: 'abc', rootType: undefined });
  });
  it('415 for other media types and for the XML metadata form, 400 without boundary', () => {
    expect(code(() => parseStowContentType(undefined))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(code(() => parseStowContentType('application/dicom'))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(code(() => parseStowContentType('multipart/form-data; boundary=x'))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(parseStowContentType('multipart/related; type="application/dicom+json"; boundary=x')).toEqual({ boundary: 'x', rootType: 'application/dicom+json' });
    expect(code(() => parseStowContentType('multipart/related; type="application/dicom+xml"; boundary=x'))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(code(() => parseStowContentType('multipart/related; type="application/dicom"'))).toBe('BAD_REQUEST');
    expect(code(() => parseStowContentType('multipart/related; type="application/dicom"; boundary=""'))).toBe('BAD_REQUEST');
    expect(code(() => parseStowContentType(`multipart/related; boundary=${'x'.repeat(71)}`))).toBe('BAD_REQUEST');
  });
});

describe('parseAccept', () => {
  it('absent or empty means */*', () => {
    expect(parseAccept(undefined)).toEqual([{ type: '*/*', params: {}, q: 1 }]);
    expect(parseAccept('')).toEqual([{ type: '*/*', params: {}, q: 1 }]);
  });
  it('orders by q, then specificity, drops q=0, keeps quoted commas together', () => {
    const a = parseAccept('*/*;q=0.1, application/json;q=0.5, multipart/related; type="application/dicom"; transfer-syntax=*, text/html;q=0, x/y; p="a,b"');
    expect(a.map((e) => e.type)).toEqual(['multipart/related', 'x/y', 'application/json', '*/*']);
    expect(a[0]!.params).toEqual({ type: 'application/dicom', 'transfer-syntax': '*' });
    expect(a[1]!.params).toEqual({ p: 'a,b' });
  });
  it('joins repeated headers', () => {
    expect(parseAccept(['application/dicom+json', 'application/json']).length).toBe(2);
  });
});

describe('JSON negotiation', () => {
  it('accepts dicom+json, json, */* and application/*; refuses xml-only', () => {
    for (const h of [undefined, '*/*', 'application/dicom+json', 'application/json', 'application/*']) expect(acceptsDicomJson(parseAccept(h))).toBe(true);
    expect(acceptsDicomJson(parseAccept('application/dicom+xml'))).toBe(false);
  });
});

describe('negotiateInstances', () => {
  const stored = new Set(['1.2.840.10008.1.2.4.50']);
  it('as stored for absent, */*, multipart without or with * transfer syntax, the stored one', () => {
    for (const h of [
      undefined,
      '*/*',
      'multipart/related; type="application/dicom"',
      'multipart/related; type=application/dicom; transfer-syntax=*',
      'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
      'application/dicom',
      'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type="application/dicom"; transfer-syntax=*;q=0.5',
    ]) {
      expect(
        code(() => negotiateInstances(parseAccept(h), stored)),
        String(h),
      ).toBeUndefined();
    }
  });
  it('406 for another transfer syntax or media type', () => {
    expect(code(() => negotiateInstances(parseAccept('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'), stored))).toBe(
      'NOT_ACCEPTABLE',
    );
    expect(code(() => negotiateInstances(parseAccept('multipart/related; type="application/octet-stream"'), stored))).toBe('NOT_ACCEPTABLE');
    expect(code(() => negotiateInstances(parseAccept('application/dicom+json'), stored))).toBe('NOT_ACCEPTABLE');
  });
  it('a specific transfer syntax must match every instance', () => {
    const mixed = new Set(['1.2.840.10008.1.2.1', '1.2.840.10008.1.2.4.50']);
    expect(code(() => negotiateInstances(parseAccept('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'), mixed))).toBe(
      'NOT_ACCEPTABLE',
    );
  });
});

describe('negotiateInstances with decompression', () => {
  const jpeg = new Set(['1.2.840.10008.1.2.4.50']);
  const evrle = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1';
  it('Explicit VR LE is produced when every stored syntax can be decompressed', () => {
    expect(negotiateInstances(parseAccept(evrle), jpeg, () => true)).toBe('decompress');
    expect(negotiateInstances(parseAccept(evrle), new Set(['1.2.840.10008.1.2.1', '1.2.840.10008.1.2']), (ts) => ts === '1.2.840.10008.1.2')).toBe(
      'decompress',
    );
    expect(code(() => negotiateInstances(parseAccept(evrle), new Set(['1.2.840.10008.1.2.4.100']), (ts) => ts !== '1.2.840.10008.1.2.4.100'))).toBe(
      'NOT_ACCEPTABLE',
    );
  });
  it('as stored stays the answer for absent, * and the stored syntax; preference order decides', () => {
    expect(negotiateInstances(parseAccept(undefined), jpeg, () => true)).toBe('as-stored');
    expect(negotiateInstances(parseAccept(`${evrle}, multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5`), jpeg, () => true)).toBe(
      'decompress',
    );
    expect(negotiateInstances(parseAccept(`${evrle}; q=0.4, multipart/related; type="application/dicom"; transfer-syntax=*`), jpeg, () => true)).toBe(
      'as-stored',
    );
    expect(
      code(() => negotiateInstances(parseAccept('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'), jpeg, () => true)),
    ).toBe('NOT_ACCEPTABLE');
  });
});

describe('negotiateFrames with a decoder', () => {
  const yes = (): boolean => true;
  it('octet-stream without or with Explicit VR LE decodes encapsulated frames; * keeps them as stored', () => {
    const JPEG = '1.2.840.10008.1.2.4.50';
    for (const h of [
      'multipart/related; type="application/octet-stream"',
      'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
    ])
      expect(negotiateFrames(parseAccept(h), JPEG, true, yes)).toEqual({
        type: 'application/octet-stream',
        partContentType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1',
        decode: true,
      });
    expect(negotiateFrames(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=*'), JPEG, true, yes).decode).toBeUndefined();
    expect(negotiateFrames(parseAccept(undefined), JPEG, true, yes)).toEqual({ type: 'image/jpeg', partContentType: `image/jpeg; transfer-syntax=${JPEG}` });
  });
  it('big endian and deflated native frames are decoded', () => {
    for (const ts of ['1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99']) {
      expect(negotiateFrames(parseAccept(undefined), ts, false, yes).decode).toBe(true);
      expect(negotiateFrames(parseAccept('multipart/related; type="application/octet-stream"'), ts, false, yes).decode).toBe(true);
    }
    expect(negotiateFrames(parseAccept(undefined), '1.2.840.10008.1.2', false, yes).decode).toBeUndefined();
  });
});

describe('negotiateFrames', () => {
  const JPEG_LL = '1.2.840.10008.1.2.4.70';
  it('native little endian → octet-stream with Explicit VR LE', () => {
    for (const h of [
      undefined,
      'multipart/related; type="application/octet-stream"',
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
      'application/octet-stream',
    ]) {
      expect(negotiateFrames(parseAccept(h), '1.2.840.10008.1.2', false)).toEqual({
        type: 'application/octet-stream',
        partContentType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1',
      });
    }
    expect(code(() => negotiateFrames(parseAccept('multipart/related; type="image/jpeg"'), '1.2.840.10008.1.2.1', false))).toBe('NOT_ACCEPTABLE');
  });
  it('big endian and deflated → 406', () => {
    expect(code(() => negotiateFrames(parseAccept(undefined), '1.2.840.10008.1.2.2', false))).toBe('NOT_ACCEPTABLE');
    expect(code(() => negotiateFrames(parseAccept(undefined), '1.2.840.10008.1.2.1.99', false))).toBe('NOT_ACCEPTABLE');
  });
  it('encapsulated → its image type, or octet-stream only with transfer-syntax * or the stored one', () => {
    expect(negotiateFrames(parseAccept(undefined), JPEG_LL, true)).toEqual({ type: 'image/jpeg', partContentType: `image/jpeg; transfer-syntax=${JPEG_LL}` });
    expect(negotiateFrames(parseAccept(`multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_LL}`), JPEG_LL, true).type).toBe('image/jpeg');
    expect(negotiateFrames(parseAccept('multipart/related; type="image/*"; transfer-syntax=*'), JPEG_LL, true).type).toBe('image/jpeg');
    expect(negotiateFrames(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=*'), JPEG_LL, true)).toEqual({
      type: 'application/octet-stream',
      partContentType: `application/octet-stream; transfer-syntax=${JPEG_LL}`,
    });
    expect(code(() => negotiateFrames(parseAccept('multipart/related; type="application/octet-stream"'), JPEG_LL, true))).toBe('NOT_ACCEPTABLE');
    // image/jpeg without transfer-syntax means baseline (.50) per PS3.18 Table 8.7.3-2
    expect(code(() => negotiateFrames(parseAccept('multipart/related; type="image/jpeg"'), JPEG_LL, true))).toBe('NOT_ACCEPTABLE');
    expect(negotiateFrames(parseAccept('multipart/related; type="image/jpeg"'), '1.2.840.10008.1.2.4.50', true).type).toBe('image/jpeg');
  });
  it('knows the aliases dicomweb-client sends', () => {
    expect(
      negotiateFrames(parseAccept('multipart/related; type="image/x-jls"; transfer-syntax=1.2.840.10008.1.2.4.80'), '1.2.840.10008.1.2.4.80', true).type,
    ).toBe('image/jls');
    expect(negotiateFrames(parseAccept('multipart/related; type="image/x-dicom-rle"; transfer-syntax=*'), '1.2.840.10008.1.2.5', true).type).toBe(
      'image/dicom-rle',
    );
    expect(negotiateFrames(parseAccept('multipart/related; type="image/jhc"; transfer-syntax=*'), '1.2.840.10008.1.2.4.201', true).type).toBe('image/jphc');
  });
});

describe('negotiateBulkData', () => {
  it('multipart by default, single part when asked', () => {
    expect(negotiateBulkData(parseAccept(undefined))).toBe('multipart');
    expect(negotiateBulkData(parseAccept('multipart/related; type="application/octet-stream"'))).toBe('multipart');
    expect(negotiateBulkData(parseAccept('application/octet-stream'))).toBe('single');
    expect(code(() => negotiateBulkData(parseAccept('image/png')))).toBe('NOT_ACCEPTABLE');
  });
});
