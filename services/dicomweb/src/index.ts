/**
 * `@portico/dicomweb`: QIDO-RS, WADO-RS, STOW-RS and the health endpoints over HTTP.
 */
export { buildApp } from './app.ts';
export type { DicomwebDeps } from './deps.ts';
export { startDicomweb, type RunningDicomweb } from './main.ts';
