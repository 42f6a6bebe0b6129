export { startDimseServer, type DimseDeps, type DimseServer } from './scp.ts';
export { decideContext, STORAGE_TRANSFER_SYNTAXES, isStorageSopClass } from './presentation.ts';
export { StoreScu, EXPLICIT_LE, type ScuOptions, type ScuTls, type StoreOutcomeScu, type StoredObject } from './store-scu.ts';
export {
  requestStorageCommitment,
  newTransactionUid,
  commitmentRequestDataset,
  parseCommitmentReport,
  type CommitmentReport,
  type CommitmentRequestOutcome,
} from './commitment-scu.ts';
export { recordReport, STORAGE_COMMITMENT_PUSH, type CommitRef, type ReportRecorderDeps } from './commitment.ts';
