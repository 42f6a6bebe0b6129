/**
 * Opening the backends a role needs, from config: the index database (external, or embedded in
 * standalone), the queue (Redis, or BullMQ's PostgreSQL backend in that database) and the object store
 * (S3, or a folder). Returns the handles and the steps to close them, in reverse order of opening.
 */
import path from 'node:path';
import { objectsDir, type PorticoConfig } from '@portico/config';
import type { Logger } from '@portico/logging';
import { openDb, migrate, assertSchemaCurrent, startEmbeddedPostgres, type Db } from '@portico/db';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues } from '@portico/jobs';

export interface Backends {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  /** Close steps, already in the order to run them. */
  readonly closeSteps: Array<readonly [string, () => Promise<unknown>]>;
}

export async function openBackends(config: PorticoConfig, log: Logger, opts: { embedded: boolean; migrate: boolean }): Promise<Backends> {
  const closeSteps: Array<readonly [string, () => Promise<unknown>]> = [];
  try {
    let url = config.database.url;
    if (!url) {
      if (!opts.embedded) throw new Error('PORTICO_DATABASE_URL is required outside standalone');
      const pg = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'pg'), port: config.database.embeddedPort, log });
      closeSteps.unshift(['embedded-postgres', () => pg.stop()]);
      url = pg.url;
    }
    const db = openDb(url, { poolSize: config.database.poolSize, onError: (err) => log.warn({ err: err.message }, 'idle database client error') });
    closeSteps.unshift(['database', () => db.close()]);
    if (opts.migrate) await migrate(db, log);
    await assertSchemaCurrent(db);

    const store = await openObjectStore(
      config.objects.s3Endpoint
        ? (() => {
            const u = new URL(config.objects.s3Endpoint);
            return {
              kind: 's3' as const,
              endPoint: u.hostname,
              port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80,
              useSSL: u.protocol === 'https:',
              accessKey: config.objects.s3AccessKey ?? '',
              secretKey: config.objects.s3SecretKey ?? '',
              bucket: config.objects.s3Bucket,
              region: config.objects.s3Region,
              pathStyle: true,
            };
          })()
        : { kind: 'fs' as const, root: objectsDir(config) },
    );
    closeSteps.unshift(['object store', () => store.close()]);

    const queues = await openJobQueues(
      config.queue.redisUrl
        ? { kind: 'redis', url: config.queue.redisUrl, prefix: config.queue.prefix }
        : { kind: 'postgres', url, schema: `${config.queue.prefix}_queue` },
      log,
    );
    closeSteps.unshift(['queues', () => queues.close()]);
    log.info({ database: config.database.url ? 'external' : 'embedded', queue: queues.backend, objects: store.kind }, 'backends open');
    return { db, store, queues, closeSteps };
  } catch (err) {
    for (const [, step] of closeSteps) await step().catch(() => undefined);
    throw err;
  }
}
