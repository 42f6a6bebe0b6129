import { InvalidKeyError } from './errors.ts';

/** S3's limit on key length, applied to both stores so a key that works standalone works in a cluster. */
export const MAX_KEY_BYTES = 1024;

/**
 * Throws {@link InvalidKeyError} unless key is a relative, '/'-separated path that cannot leave the store
 * root: non-empty, at most 1024 UTF-8 bytes, no leading or trailing '/', no empty, '.' or '..' segment,
 * no backslash, no control character.
 */
export function assertValidKey(key: string): void {
  if (typeof key !== 'string' || key === '') throw new InvalidKeyError(String(key), 'empty');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new InvalidKeyError(key, `longer than ${MAX_KEY_BYTES} bytes`);
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'leading /');
  if (/[\\\u0000-\u001f\u007f]/.test(key)) throw new InvalidKeyError(key, 'backslash or control character');
  for (const segment of key.split('/')) {
    if (segment === '..' || segment === '.') throw new InvalidKeyError(key, `"${segment}" segment`);
    if (segment === '') throw new InvalidKeyError(key, 'empty segment');
  }
}

/** Validates a `get` range: integers with 0 <= start <= end. */
export function assertValidRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end}: need integers with 0 <= start <= end`);
  }
}
