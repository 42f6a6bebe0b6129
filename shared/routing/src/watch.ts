/**
 * Hot reload of a routes file by polling. Polling rather than fs.watch: it behaves the same on every file
 * system (NFS, container bind mounts, Kubernetes ConfigMaps swapped by symlink), where change events are
 * unreliable. A change is applied only once the file has stayed the same for one whole interval, so an
 * editor's half-written save is not taken for the new rules; an invalid file is reported once and the last
 * valid rules stay in force.
 */
import { readFile, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { RoutesError } from './errors.ts';
import type { RouteSet } from './model.ts';
import { loadRoutes, parseRoutes } from './parse.ts';

export interface WatchRoutesOptions {
  /** how often to look at the file */
  readonly intervalMs: number;
  /** an unreadable or invalid version of the file: the rules in force do not change */
  onError(err: RoutesError | Error): void;
  /** a new valid version is in force */
  onReload?(routes: RouteSet): void;
}

export interface RoutesWatcher {
  /** the rules in force: the last valid version of the file */
  current(): RouteSet;
  stop(): void;
}

/** Identity of one version of the file: change time, size and inode (a rename onto it changes the inode). */
function signature(s: { mtimeNs: bigint; ctimeNs: bigint; size: bigint; ino: bigint }): string {
  return `${s.mtimeNs}:${s.ctimeNs}:${s.size}:${s.ino}`;
}

/**
 * Loads `file` now and re-reads it whenever it changes.
 * @throws RoutesError when the file is unreadable or invalid at start: there are no earlier rules to keep
 */
export function watchRoutes(file: string, opts: WatchRoutesOptions): RoutesWatcher {
  let loaded: string;
  try {
    loaded = signature(statSync(file, { bigint: true }));
  } catch (err) {
    throw new RoutesError(file, [{ reason: `cannot read the routes file: ${(err as Error).message}` }]);
  }
  let routes = loadRoutes(file);
  let pending: string | undefined;
  let lastStatError: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const report = (err: unknown): void => {
    try {
      opts.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // A failing error handler must not stop the watch.
    }
  };

  const check = async (): Promise<void> => {
    let seen: string;
    try {
      seen = signature(await stat(file, { bigint: true }));
      lastStatError = undefined;
    } catch (err) {
      const message = `routes file ${file}: ${(err as Error).message}`;
      if (message !== lastStatError) report(new RoutesError(file, [{ reason: `cannot read the routes file: ${(err as Error).message}` }]));
      lastStatError = message;
      return;
    }
    if (seen === loaded) {
      pending = undefined;
      return;
    }
    if (seen !== pending) {
      pending = seen;
      return;
    }
    // Unchanged for a whole interval: take it. Whatever the outcome, this version is not read again.
    pending = undefined;
    loaded = seen;
    let next: RouteSet;
    try {
      next = parseRoutes(await readFile(file, 'utf8'), file);
    } catch (err) {
      report(err);
      return;
    }
    if (stopped) return;
    routes = next;
    try {
      opts.onReload?.(next);
    } catch (err) {
      report(err);
    }
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      check().then(schedule, (err: unknown) => {
        report(err);
        schedule();
      });
    }, opts.intervalMs);
    // The watch alone must not keep a process alive that has nothing else to do.
    timer.unref();
  };
  schedule();

  return {
    current: () => routes,
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
