/**
 * @portico/routing — the routes.yml rule language of the store-and-forward router: which destinations an
 * instance goes to after ingest, transcoded and changed how, and which rule decided each. Pure logic on
 * the DICOM JSON Model plus reading (and hot-reloading) the file. The format and its exact semantics are
 * in docs/routing.md.
 */
export { RoutesError } from './errors.ts';
export type { RoutesIssue } from './errors.ts';
export type { RouteSet } from './model.ts';
export { DEFAULT_RULE, loadRoutes, parseRoutes, SOURCES } from './parse.ts';
export { evaluateRoutes, routeDestinations } from './evaluate.ts';
export type { RouteContext, RouteDecision, RouteExplanation } from './evaluate.ts';
export { TRANSCODE_TARGETS, transcodeTarget } from './transfer-syntaxes.ts';
export { watchRoutes } from './watch.ts';
export type { RoutesWatcher, WatchRoutesOptions } from './watch.ts';
