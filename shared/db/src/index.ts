/**
 * The PostgreSQL index: connection, numbered migrations, the embedded server for standalone, and the
 * repository functions. Repository functions take the handle (`upsertInstance(db, …)`); SQL is
 * parameterised, always.
 */
export { asQuery, openDb, type Db, type NamedStatement, type Queryable } from './pool.ts';
export { migrate, assertSchemaCurrent, LATEST_SCHEMA_VERSION, listMigrations } from './migrate.ts';
export { startEmbeddedPostgres, type EmbeddedPostgresHandle } from './embedded.ts';
export {
  upsertInstance,
  findInstance,
  rowToStored,
  recordEvent,
  type InstanceRow,
  type InstanceRecord,
  type StoredInstance,
  type UpsertResult,
} from './instances.ts';
export { normalizePersonName } from './normalize.ts';
export { STUDY_LEVEL_TAGS, SERIES_LEVEL_TAGS, pickTags } from './levels.ts';
export {
  buildQidoQuery,
  withoutComputedAttributes,
  buildPatientQuery,
  PATIENT_KEY_TAGS,
  wildcardToLike,
  type PatientRow,
  type QidoQuery,
  type MatchingKeyValue,
  type SqlQuery,
  type StudyRow as QidoStudyRow,
  type SeriesRow as QidoSeriesRow,
  type InstanceRow as QidoInstanceRow,
} from './query/query.ts';
export { MATCHING_KEYS, DEFAULT_TAGS, TAG, LEVEL_DEPTH, matchingKeyByTag, type Level, type MatchingKey, type MatchKind } from './query/attributes.ts';
export { findRetrieveSet, type RetrieveKeys, type RetrieveItem } from './query/retrieve.ts';
export { deleteInstances, type DeleteScope } from './delete.ts';
export {
  listDbNodes,
  putDbNode,
  deleteDbNode,
  listDbDicomwebDestinations,
  putDbDicomwebDestination,
  deleteDbDicomwebDestination,
  type NodeRow,
} from './nodes.ts';
export {
  planExports,
  claimExports,
  renewLease,
  finishExports,
  findStrandedExports,
  listExports,
  retryExports,
  replayExports,
  cancelExports,
  instanceJourney,
  destinationStats,
  instanceRoutingInput,
  EXPORT_STATUSES,
  type ExportStatus,
  type ExportPlan,
  type ExportRef,
  type ClaimedExport,
  type ExportOutcome,
  type ExportFilter,
  type ExportRow,
  type InstanceJourney,
  type DestinationStats,
} from './exports.ts';
export {
  markCommitmentRequested,
  markCommitmentRefused,
  recordCommitmentReport,
  expireCommitments,
  COMMITMENT_STATUSES,
  type CommitmentStatus,
  type CommitmentReportRecord,
  type CommitmentReportOutcome,
} from './commitment.ts';
