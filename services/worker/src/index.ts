export { ingestInstance, instanceKey, type IngestDeps, type IndexedInstance } from './jobs/ingest-instance.ts';
export { routeIndexed, type Router, type RouteDeps } from './route.ts';
export { startWorker, type WorkerDeps } from './main.ts';
export { reconcileStaging, startReconciler } from './reconcile.ts';
export { fileRouter, type FileRouter } from './router.ts';
