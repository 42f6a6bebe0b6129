export { startDimseServer, type DimseDeps, type DimseServer } from './scp.ts';
export { decideContext, STORAGE_TRANSFER_SYNTAXES, isStorageSopClass } from './presentation.ts';
export { StoreScu, EXPLICIT_LE, type ScuOptions, type ScuTls, type StoreOutcomeScu, type StoredObject } from './store-scu.ts';
