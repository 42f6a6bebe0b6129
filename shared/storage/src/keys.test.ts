import { describe, expect, it } from 'vitest';
import { InvalidKeyError } from './errors.ts';
import { assertValidKey, assertValidRange } from './keys.ts';

describe('assertValidKey', () => {
  it.each([
    'staging/3f2a9c1e-0d7b-4a57-9a43-5b0c8f1d2e3a.dcm',
    'studies/1.2.840.113619.2.55.3/series/1.2.3.4/instances/1.2.3.4.5.dcm',
    'derived/thumbnails/x.jpg',
    'a',
    'tenant-1/studies/1..2/x', // '..' inside a segment is harmless
    '.hidden',
  ])('accepts %s', (key) => {
    expect(() => assertValidKey(key)).not.toThrow();
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'leading /'],
    ['../outside', '".." segment'],
    ['staging/../../outside', '".." segment'],
    ['a/./b', '"." segment'],
    ['a//b', 'empty segment'],
    ['a/', 'empty segment'],
    ['..', '".." segment'],
    ['a\\..\\b', 'backslash'],
    ['a\u0000b', 'control character'],
    ['x'.repeat(1025), 'longer than 1024 bytes'],
  ])('rejects %j (%s)', (key, reason) => {
    let caught: unknown;
    try {
      assertValidKey(key);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidKeyError);
    expect((caught as InvalidKeyError).code).toBe('InvalidKey');
    expect((caught as Error).message).toContain(reason);
  });
});

describe('assertValidRange', () => {
  it('accepts 0 <= start <= end', () => {
    expect(() => assertValidRange({ start: 0, end: 0 })).not.toThrow();
    expect(() => assertValidRange({ start: 5, end: 1e12 })).not.toThrow();
  });
  it.each([
    { start: -1, end: 3 },
    { start: 4, end: 3 },
    { start: 0.5, end: 3 },
    { start: 0, end: Number.NaN },
  ])('rejects %o', (range) => {
    expect(() => assertValidRange(range)).toThrow(RangeError);
  });
});
