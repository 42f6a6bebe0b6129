/**
 * The router of a running worker: the routes file (docs/routing.md), hot-reloaded by @portico/routing's
 * watcher (an invalid new file is logged and the last valid rules stay in force), evaluated on each
 * indexed instance's DICOM JSON and how it arrived.
 */
import { evaluateRoutes, watchRoutes, type RoutesWatcher } from '@portico/routing';
import type { DicomJsonDataset } from '@portico/dicom';
import type { Logger } from '@portico/logging';
import type { Router } from './route.ts';

export interface FileRouter {
  readonly router: Router;
  readonly watcher: RoutesWatcher;
}

/** @throws RoutesError when the file is unreadable or invalid at start */
export function fileRouter(file: string, intervalMs: number, log: Logger): FileRouter {
  const watcher = watchRoutes(file, {
    intervalMs,
    onError: (err) => log.error({ routesFile: file, err: err.message }, 'routes file rejected; the last valid rules stay in force'),
    onReload: () => log.info({ routesFile: file }, 'routes reloaded'),
  });
  const router: Router = (indexed) =>
    evaluateRoutes(watcher.current(), indexed.json as DicomJsonDataset, {
      source: indexed.source,
      ...(indexed.callingAeTitle ? { callingAeTitle: indexed.callingAeTitle } : {}),
      ...(indexed.calledAeTitle ? { calledAeTitle: indexed.calledAeTitle } : {}),
    }).destinations.map((d) => ({
      destination: d.destination,
      rule: d.rule,
      ...(d.transferSyntaxUid ? { transferSyntaxUid: d.transferSyntaxUid } : {}),
      mutations: d.mutations,
    }));
  return { router, watcher };
}
