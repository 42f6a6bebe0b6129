/**
 * The ingest worker of `portico standalone`, on a thread of its own.
 *
 * In one process the worker's CPU work (header parse, DICOM JSON, index statements) ran on the same event
 * loop as the DIMSE and HTTP edges and delayed every C-STORE response behind it. On its own thread it runs
 * in parallel, with its own connections to the same embedded PostgreSQL, folder and queue. The main thread
 * posts `close` at shutdown; the thread drains its jobs, closes its backends and answers `closed`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PorticoConfig } from '@portico/config';
import { createLogger, runShutdown } from '@portico/logging';
import { startWorker } from '@portico/worker';
import { openBackends } from './backends.ts';

interface WorkerThreadData {
  readonly config: PorticoConfig;
  readonly databaseUrl: string;
}

const { config, databaseUrl } = workerData as WorkerThreadData;
const log = createLogger({ service: 'portico', level: config.log.level }).child({ thread: 'worker' });
const backends = await openBackends({ ...config, database: { ...config.database, url: databaseUrl } }, log, { embedded: false, migrate: false });
const workers = await startWorker({ ...backends, log, concurrency: config.queue.workerConcurrency });
parentPort!.postMessage({ type: 'ready' });
parentPort!.on('message', (message: { type: string }) => {
  if (message.type !== 'close') return;
  void runShutdown(log, config.shutdownGraceMs, [['worker', () => workers.close()], ...backends.closeSteps]).then((ok) => {
    parentPort!.postMessage({ type: 'closed', ok });
    parentPort!.close();
  });
});
