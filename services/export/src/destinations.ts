/**
 * Export destinations: the DIMSE nodes and DICOMweb destinations of the nodes file plus those added
 * through the admin API, in one name space (AE title or DICOMweb name). Reloaded on a timer, so a node
 * added through the admin API or a changed file is picked up without a restart; a failed reload keeps
 * the last good list.
 */
import { statSync } from 'node:fs';
import { loadNodesFile, mergeNodes, nodeFromDbRow, parseDicomwebDestination, type DicomNode, type DicomwebDestination } from '@portico/config';
import { listDbDicomwebDestinations, listDbNodes, type Db } from '@portico/db';
import type { Logger } from '@portico/logging';

export type Destination =
  | { readonly kind: 'dimse'; readonly name: string; readonly node: DicomNode }
  | { readonly kind: 'dicomweb'; readonly name: string; readonly dicomweb: DicomwebDestination };

/** Concurrency, rate and batch size of a destination, whatever its kind. */
export function deliveryLimits(d: Destination): { concurrency: number; maxPerSecond?: number; batchSize: number } {
  const o = d.kind === 'dimse' ? d.node : d.dicomweb;
  return { concurrency: o.maxAssociations, batchSize: o.batchSize, ...(o.maxPerSecond ? { maxPerSecond: o.maxPerSecond } : {}) };
}

/** Reads every destination once. @throws Error when the nodes file is invalid */
export async function loadDestinations(db: Db, nodesFile: string | undefined, log: Logger): Promise<Map<string, Destination>> {
  const file = loadNodesFile(nodesFile);
  const dbNodes = (await listDbNodes(db)).flatMap((row) => {
    try {
      return [nodeFromDbRow(row)];
    } catch (err) {
      log.warn({ aeTitle: row.aeTitle, err: (err as Error).message }, 'ignoring an invalid node from the database');
      return [];
    }
  });
  const out = new Map<string, Destination>();
  for (const node of mergeNodes(file.nodes, dbNodes)) out.set(node.aeTitle, { kind: 'dimse', name: node.aeTitle, node });
  const web = [...file.dicomweb];
  for (const row of await listDbDicomwebDestinations(db)) {
    try {
      web.push(parseDicomwebDestination({ ...row.definition, name: row.name }));
    } catch (err) {
      log.warn({ destination: row.name, err: (err as Error).message }, 'ignoring an invalid DICOMweb destination from the database');
    }
  }
  for (const d of web) {
    // The file wins over the database, and an AE title over a DICOMweb name.
    if (!out.has(d.name)) out.set(d.name, { kind: 'dicomweb', name: d.name, dicomweb: d });
  }
  return out;
}

export interface DestinationRegistry {
  get(name: string): Destination | undefined;
  all(): Destination[];
  /** Calls fn after each reload that changed the list. */
  onChange(fn: (all: Destination[]) => void): void;
  reload(): Promise<void>;
  stop(): void;
}

/** Loads the destinations (a bad nodes file stops the start) and reloads them every intervalMs. */
export async function startDestinationRegistry(db: Db, nodesFile: string | undefined, intervalMs: number, log: Logger): Promise<DestinationRegistry> {
  let current = await loadDestinations(db, nodesFile, log);
  let fingerprint = JSON.stringify([...current.values()]);
  const listeners: Array<(all: Destination[]) => void> = [];
  let fileMtime = nodesFile ? statSync(nodesFile, { throwIfNoEntry: false })?.mtimeMs : undefined;
  const reload = async (): Promise<void> => {
    try {
      const next = await loadDestinations(db, nodesFile, log);
      const fp = JSON.stringify([...next.values()]);
      if (fp === fingerprint) return;
      current = next;
      fingerprint = fp;
      const mtime = nodesFile ? statSync(nodesFile, { throwIfNoEntry: false })?.mtimeMs : undefined;
      if (mtime !== fileMtime) log.info({ nodesFile }, 'nodes file changed: destinations reloaded');
      fileMtime = mtime;
      for (const fn of listeners) fn([...current.values()]);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'destinations reload failed; keeping the last list');
    }
  };
  const timer = setInterval(() => void reload(), intervalMs);
  timer.unref();
  return {
    get: (name) => current.get(name),
    all: () => [...current.values()],
    onChange: (fn) => void listeners.push(fn),
    reload,
    stop: () => clearInterval(timer),
  };
}
