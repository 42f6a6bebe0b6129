/**
 * The S3-protocol server for the cluster-shape ingest benchmark, in a process of its own so that its CPU
 * and memory are not counted against the load generator in bench/ingest.ts (s3rver is a JavaScript
 * server; sharing the benchmark's event loop would slow the STOW-RS client and the QIDO polling).
 *
 * Usage: node bench/s3-server.ts <info-file> <bucket>
 * Starts `startS3()` from `@portico/testing` (env `PORTICO_TEST_S3_ENDPOINT` when set, else s3rver on
 * 127.0.0.1 and a free port), creates <bucket>, writes the connection details as JSON to <info-file>, and
 * stops (removing s3rver's temp folder) on SIGTERM or SIGINT.
 *
 * s3rver 3.7 race: deleting the last object under a prefix removes the now-empty folder, and a PUT under
 * the same prefix that has just made that folder then fails to open its file; the write stream's error has
 * no listener, so the whole server crashes (ENOENT …/staging/<uuid>.dcm._S3rver_object). Portico PUTs
 * and DELETEs `staging/…` objects concurrently, so a sentinel object keeps `staging/` from ever being
 * empty. MinIO and S3 have no such folders; the sentinel is harmless there.
 */
import { rename, writeFile } from 'node:fs/promises';
import { Client } from 'minio';
import { startS3 } from '@portico/testing';

const [infoFile, bucket] = process.argv.slice(2);
if (!infoFile || !bucket) {
  process.stderr.write('usage: node bench/s3-server.ts <info-file> <bucket>\n');
  process.exit(2);
}
const s3 = await startS3();
const stop = (): void => {
  void s3.stop().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
const { endPoint, port, useSSL, accessKey, secretKey } = s3;
const client = new Client({ endPoint, port, useSSL, accessKey, secretKey, pathStyle: true });
if (!(await client.bucketExists(bucket))) await client.makeBucket(bucket, 'us-east-1');
await client.putObject(bucket, 'staging/.portico-bench-keep', Buffer.from('keeps staging/ from being removed by s3rver\n'));
// Written then renamed, so the benchmark never reads a half-written file.
await writeFile(`${infoFile}.tmp`, JSON.stringify({ endPoint, port, useSSL, accessKey, secretKey }));
await rename(`${infoFile}.tmp`, infoFile);
