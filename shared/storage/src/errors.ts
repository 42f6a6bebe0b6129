/** Rejection of `get`/`move` for a key with no object. Test with `err.code === 'NotFound'`. */
export class ObjectNotFoundError extends Error {
  readonly code = 'NotFound';
  readonly key: string;
  constructor(key: string, options?: { cause?: unknown }) {
    super(`object not found: ${key}`, options);
    this.name = 'ObjectNotFoundError';
    this.key = key;
  }
}

/** Rejection for a key that is empty, absolute, has a `.`/`..`/empty segment, a backslash or a control character. */
export class InvalidKeyError extends TypeError {
  readonly code = 'InvalidKey';
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key)}: ${reason}`);
    this.name = 'InvalidKeyError';
    this.key = key;
  }
}

/** Rejection of a ranged `get` whose start lies at or beyond the end of the object (HTTP 416). */
export class InvalidRangeError extends RangeError {
  readonly code = 'InvalidRange';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InvalidRangeError';
  }
}

/** True for any store error that means "no such object", ours or a client library's. */
export function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'ENOENT';
}
