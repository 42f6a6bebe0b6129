export { ingestInstance, instanceKey, type IngestDeps, type IndexedInstance } from './jobs/ingest-instance.ts';
export type { Router } from './route.ts';
export { startWorker, type WorkerDeps } from './main.ts';
export { reconcileStaging, startReconciler } from './reconcile.ts';
export { fileRouter, type FileRouter } from './router.ts';
