/**
 * `@portico/dicomweb`: QIDO-RS, WADO-RS, STOW-RS and the health endpoints over HTTP.
 */
export { buildApp } from './app.ts';
export type { DicomwebDeps } from './deps.ts';
export { startDicomweb, type RunningDicomweb } from './main.ts';
export { stowInstances } from './stow-client.ts';
export type { StowDestination, StowInstanceOutcome, StowItem, StowResult } from './stow-client.ts';
