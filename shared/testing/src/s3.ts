/**
 * An S3-protocol server for tests: env `PORTICO_TEST_S3_ENDPOINT` (a MinIO or any S3, e.g.
 * `http://127.0.0.1:9000`, with `PORTICO_TEST_S3_ACCESS_KEY` / `PORTICO_TEST_S3_SECRET_KEY`); else
 * s3rver in this process. No MinIO server can be installed on our machines and there is no Docker engine
 * for testcontainers (that step would slot in before s3rver). s3rver 3.7 speaks enough S3 for
 * `@portico/storage`: PUT/GET (with Range)/HEAD/DELETE, server-side copy, bucket create/HEAD, and
 * initiate/upload-part/complete multipart; it does not list or abort multipart uploads.
 */
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/** Connection pieces of an S3 endpoint; they spread into `@portico/storage`'s `{ kind: 's3', … }` config. */
export interface TestS3 {
  endPoint: string;
  port: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  /** Stops the server this call started (no-op for an endpoint from the environment). */
  stop(): Promise<void>;
}

/**
 * An S3-protocol endpoint: from `PORTICO_TEST_S3_ENDPOINT` (+ `_ACCESS_KEY`, `_SECRET_KEY`) when set,
 * else a new s3rver on 127.0.0.1, port 0, storing into a fresh temp folder that `stop()` removes.
 * Use a unique bucket per test file ({@link uniqueId}) since an env endpoint is shared.
 */
export async function startS3(): Promise<TestS3> {
  const endpoint = process.env['PORTICO_TEST_S3_ENDPOINT'];
  if (endpoint) return fromEnv(endpoint);
  const directory = await mkdtemp(join(tmpdir(), 'portico-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory });
  keepFolders(server);
  const { port } = await server.run();
  return {
    endPoint: '127.0.0.1',
    port,
    useSSL: false,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    stop: async () => {
      // Keep-alive sockets from clients would hold close() open until they time out.
      server.httpServer?.closeAllConnections();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

function fromEnv(endpoint: string): TestS3 {
  const url = new URL(endpoint);
  const accessKey = process.env['PORTICO_TEST_S3_ACCESS_KEY'];
  const secretKey = process.env['PORTICO_TEST_S3_SECRET_KEY'];
  if (!accessKey || !secretKey) {
    throw new Error('PORTICO_TEST_S3_ENDPOINT is set but PORTICO_TEST_S3_ACCESS_KEY / PORTICO_TEST_S3_SECRET_KEY are not');
  }
  const useSSL = url.protocol === 'https:';
  return {
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey,
    secretKey,
    stop: async () => undefined,
  };
}

interface S3rverStore {
  deleteObject(bucket: string, key: string): Promise<void>;
  getResourcePath(bucket: string, key: string, resource: string): string;
}

/**
 * s3rver 3.7 removes a folder when its last object is deleted; a PUT that has just created that folder
 * then fails to open its file, and the write stream's error has no listener, so the whole server crashes
 * (ENOENT …/staging/<uuid>.dcm._S3rver_object). Portico PUTs and DELETEs `staging/…` objects
 * concurrently. S3 and MinIO have no folders at all, so deleting an object here leaves folders in place.
 */
function keepFolders(server: S3rver): void {
  const store = (server as unknown as { store: S3rverStore }).store;
  store.deleteObject = async (bucket, key) => {
    await Promise.all(
      ['object', 'object.md5', 'metadata.json'].map((resource) =>
        unlink(store.getResourcePath(bucket, key, resource)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      ),
    );
  };
}
