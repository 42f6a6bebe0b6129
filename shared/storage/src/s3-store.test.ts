import { describe, expect, it } from 'vitest';
import { DEFAULT_PART_SIZE, S3ObjectStore, partSizeFor } from './s3-store.ts';

const MiB = 1024 * 1024;
const base = { kind: 's3', endPoint: '127.0.0.1', port: 9, useSSL: false, accessKey: 'a', secretKey: 'b', bucket: 'x' } as const;

describe('partSizeFor', () => {
  it('keeps the configured part size while 10,000 parts suffice', () => {
    expect(partSizeFor(undefined, DEFAULT_PART_SIZE)).toBe(DEFAULT_PART_SIZE);
    expect(partSizeFor(DEFAULT_PART_SIZE * 10_000, DEFAULT_PART_SIZE)).toBe(DEFAULT_PART_SIZE);
  });
  it('grows in whole MiB so a declared size fits in 10,000 parts', () => {
    const size = DEFAULT_PART_SIZE * 10_000 + 1;
    const part = partSizeFor(size, DEFAULT_PART_SIZE);
    expect(part % MiB).toBe(0);
    expect(part * 10_000).toBeGreaterThanOrEqual(size);
    expect(part).toBe(DEFAULT_PART_SIZE + MiB);
  });
});

describe('S3ObjectStore config', () => {
  it('refuses part sizes S3 would reject', () => {
    expect(() => new S3ObjectStore({ ...base, partSize: 5 * MiB - 1 })).toThrow(RangeError);
    expect(() => new S3ObjectStore({ ...base, partSize: 5 * 1024 * MiB + 1 })).toThrow(RangeError);
  });
  it('defaults to a 16 MiB part', async () => {
    const store = new S3ObjectStore({ ...base });
    expect(DEFAULT_PART_SIZE).toBe(16 * MiB);
    await store.close();
  });
});
