/**
 * `@portico/testing`: the test harness shared by every package's integration tests.
 *
 * Each backend comes from the environment first (`PORTICO_TEST_DATABASE_URL`, `PORTICO_TEST_REDIS_URL`,
 * `PORTICO_TEST_S3_ENDPOINT`), else from a local server that answers on its usual port, else from one
 * the harness starts (embedded PostgreSQL, `redis-server`, s3rver) and stops at exit. testcontainers
 * would be used only where a Docker engine answers; there is none on our machines, so it is not wired
 * in yet. Isolation is per test file: a database per file, and a {@link uniqueId} for Redis prefixes,
 * queue names, buckets and folders.
 */
export { corpusDir, corpusManifest } from './corpus.ts';
export { uniqueId } from './ids.ts';
export { freePort, holdPort } from './net.ts';
export { createTestDatabase, testPostgresUrl } from './postgres.ts';
export type { TestDatabase } from './postgres.ts';
export { testRedisUrl } from './redis.ts';
export { porticoCommand, PORTICO_LAUNCHER } from './launcher.ts';
export { run } from './run.ts';
export type { RunResult } from './run.ts';
export { startS3 } from './s3.ts';
export type { TestS3 } from './s3.ts';
export { syntheticHeader, syntheticInstance, syntheticStream, testUid } from './synthetic.ts';
export type { SyntheticOptions } from './synthetic.ts';
export { startOrthanc, ORTHANC_BINARY } from './orthanc.ts';
export type { TestOrthanc } from './orthanc.ts';
