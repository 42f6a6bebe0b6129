export { ingestInstance, instanceKey, type IngestDeps } from './jobs/ingest-instance.ts';
export { startWorker, type WorkerDeps } from './main.ts';
export { reconcileStaging, startReconciler } from './reconcile.ts';
