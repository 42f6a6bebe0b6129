import { randomBytes } from 'node:crypto';

/**
 * A short id unique to this call, for per-test-file queue names, key prefixes, buckets and folders.
 *
 * The prefix is lower-cased, every run of characters outside `[a-z0-9-]` becomes `-` and it is cut to
 * 40 characters, so the result is also a valid S3 bucket name and never contains `:` (BullMQ rejects
 * `:` in queue and job ids). 40 random bits follow the prefix.
 *
 * @example uniqueId('ingest') // 'ingest-3f9a0c12be'
 */
export function uniqueId(prefix: string): string {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .slice(0, 40)
    .replace(/^-+|-+$/g, '');
  return `${clean || 'id'}-${randomBytes(5).toString('hex')}`;
}
