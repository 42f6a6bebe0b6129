/**
 * `@portico/dicomweb`: QIDO-RS, WADO-RS, STOW-RS and the health endpoints over HTTP.
 */
export { buildApp } from './app.ts';
export type { DicomwebDeps } from './deps.ts';
export { startDicomweb, type RunningDicomweb } from './main.ts';
export { buildQidoQuery, type QidoQuery, type MatchingKeyValue, type SqlQuery } from './qido/query.ts';
export { MATCHING_KEYS, DEFAULT_TAGS, type Level, type MatchingKey } from './qido/attributes.ts';
