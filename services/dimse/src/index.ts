export { startDimseServer, type DimseDeps, type DimseServer } from './scp.ts';
export { decideContext, STORAGE_TRANSFER_SYNTAXES, isStorageSopClass } from './presentation.ts';
