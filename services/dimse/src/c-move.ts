/**
 * C-MOVE and C-GET SCP (PS3.4 §C.4.2, §C.4.3), Patient Root and Study Root.
 *
 * The identifier's unique keys select the instances (@portico/db findRetrieveSet); the Move Destination
 * is looked up in the nodes file (unknown: 0xA801); one new association to it carries the C-STORE
 * sub-operations, each sending the stored bytes as they are (store-scu.ts). After every sub-operation a
 * pending C-MOVE-RSP reports Remaining / Completed / Failed / Warning. C-CANCEL stops before the next
 * sub-operation (0xFE00). C-GET is the same with the sub-operations on the requester's own association
 * (the SCP side opens its sink in scp.ts).
 *
 * Final status: 0x0000 all completed; 0xB000 some failed or had warnings; 0xA702 none completed
 * (destination unreachable, every sub-operation failed); 0xA801 unknown destination; 0xA900 identifier
 * without the unique key of its level; 0xA701 index unreachable. With failures, the final response
 * carries the Failed SOP Instance UID List (0008,0058).
 */
import { findNode, type DicomNode } from '@portico/config';
import { findInstance, findRetrieveSet, type Db, type RetrieveItem, type RetrieveKeys } from '@portico/db';
import type { ObjectStore } from '@portico/storage';
import type { Logger } from '@portico/logging';
import { keyString, type JsonDataset } from './find-match.ts';
import { StoreScu, type Converter, type ObjectSource, type ScuTls } from './store-scu.ts';
import { READ_AHEAD_DEPTH, ReadAhead } from './read-ahead.ts';

export const PATIENT_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.1.2';
export const STUDY_ROOT_MOVE = '1.2.840.10008.5.1.4.1.2.2.2';
export const PATIENT_ROOT_GET = '1.2.840.10008.5.1.4.1.2.1.3';
export const STUDY_ROOT_GET = '1.2.840.10008.5.1.4.1.2.2.3';

/** Where sub-operations go: a new association (C-MOVE) or the requester's own (C-GET). */
export interface SubOperationSink {
  send(item: RetrieveItem): Promise<{ status: number }>;
  close(): Promise<void>;
}

export interface SubOperationCounts {
  remaining: number;
  completed: number;
  failed: number;
  warning: number;
}

export interface RetrieveOutcome {
  readonly status: number;
  readonly counts: SubOperationCounts;
  readonly failedUids: readonly string[];
  readonly errorComment?: string;
}

const LEVEL_KEY: Readonly<Record<string, { tag: string; name: string }>> = {
  PATIENT: { tag: '00100020', name: 'PatientID' },
  STUDY: { tag: '0020000D', name: 'StudyInstanceUID' },
  SERIES: { tag: '0020000E', name: 'SeriesInstanceUID' },
  IMAGE: { tag: '00080018', name: 'SOPInstanceUID' },
};

const list = (el: JsonDataset[string] | undefined): string[] | undefined => {
  const v = keyString(el).trim();
  return v === '' ? undefined : v.split('\\').map((s) => s.trim());
};

/** The retrieve keys of an identifier. @throws Error when the level or its unique key is missing */
export function retrieveKeys(identifier: JsonDataset, model: 'patient' | 'study'): RetrieveKeys {
  const level = keyString(identifier['00080052']).trim().toUpperCase();
  const key = LEVEL_KEY[level];
  if (!key || (level === 'PATIENT' && model === 'study')) throw new Error(`Query/Retrieve Level "${level.slice(0, 16)}" is not valid here`);
  if (list(identifier[key.tag]) === undefined) throw new Error(`${level} level retrieve without ${key.name}`);
  const patientId = keyString(identifier['00100020']).trim();
  return {
    ...(patientId !== '' ? { patientId } : {}),
    ...(list(identifier['0020000D']) ? { studyInstanceUids: list(identifier['0020000D'])! } : {}),
    ...(list(identifier['0020000E']) ? { seriesInstanceUids: list(identifier['0020000E'])! } : {}),
    ...(list(identifier['00080018']) ? { sopInstanceUids: list(identifier['00080018'])! } : {}),
  };
}

export function finalStatus(counts: SubOperationCounts, cancelled: boolean): number {
  if (cancelled) return 0xfe00;
  if (counts.failed === 0 && counts.warning === 0) return 0x0000;
  if (counts.completed === 0 && counts.warning === 0) return 0xa702;
  return 0xb000;
}

/** PS3.4 Annex B: 0xB000, 0xB006, 0xB007 are warnings; anything else but 0x0000 is a failure. */
export function isWarning(status: number): boolean {
  return (status & 0xf000) === 0xb000;
}

export interface RetrieveRun {
  readonly db: Db;
  readonly store: ObjectStore;
  readonly log: Logger;
  readonly onProgress: (counts: SubOperationCounts) => void;
  readonly cancelled: () => boolean;
}

export interface MoveRun extends RetrieveRun {
  readonly nodes: readonly DicomNode[];
  readonly aeTitle: string;
  readonly maxPduLength: number;
  readonly timeoutMs: number;
  readonly originator: { readonly aeTitle: string; readonly messageId: number };
  /** Our TLS materials, used for destinations listed with `tls: true`. */
  readonly clientTls?: ScuTls;
}

/** Runs one C-MOVE; never rejects. */
export async function runMove(run: MoveRun, model: 'patient' | 'study', identifier: JsonDataset, destinationAe: string): Promise<RetrieveOutcome> {
  const counts: SubOperationCounts = { remaining: 0, completed: 0, failed: 0, warning: 0 };
  const node = findNode(run.nodes, destinationAe);
  if (!node) return { status: 0xa801, counts, failedUids: [], errorComment: `unknown move destination ${destinationAe.trim()}`.slice(0, 64) };
  if (!node.services.includes('move') && !node.services.includes('store')) {
    // A node listed without 'store' does not take instances from us.
    return { status: 0xa801, counts, failedUids: [], errorComment: `${node.aeTitle} does not accept stores` };
  }
  return runRetrieve(run, model, identifier, async (items, objects) => {
    try {
      const scu = await StoreScu.open(
        {
          host: node.host,
          port: node.port,
          callingAeTitle: run.aeTitle,
          calledAeTitle: node.aeTitle,
          maxPduLength: run.maxPduLength,
          timeoutMs: run.timeoutMs,
          ...(node.tls ? { tls: run.clientTls ?? {} } : {}),
        },
        items,
      );
      return {
        send: (item) => scu.send(item, objects, run.originator, converter(run.db, run.store)),
        close: () => scu.release().catch(() => scu.abort()),
      };
    } catch (err) {
      run.log.warn({ destination: node.aeTitle, err: (err as Error).message }, 'C-MOVE: cannot open an association to the destination');
      return undefined;
    }
  });
}

/**
 * The common part of C-MOVE and C-GET: select, open the sink, run the sub-operations one by one with a
 * progress report after each, and decide the final status. The sink reads the objects through `objects`,
 * which reads ahead (ReadAhead). Never rejects.
 */
export async function runRetrieve(
  run: RetrieveRun,
  model: 'patient' | 'study',
  identifier: JsonDataset,
  openSink: (items: RetrieveItem[], objects: ObjectSource) => Promise<SubOperationSink | undefined>,
): Promise<RetrieveOutcome> {
  const counts: SubOperationCounts = { remaining: 0, completed: 0, failed: 0, warning: 0 };
  let keys: RetrieveKeys;
  try {
    keys = retrieveKeys(identifier, model);
  } catch (err) {
    return { status: 0xa900, counts, failedUids: [], errorComment: (err as Error).message.slice(0, 64) };
  }
  let items: RetrieveItem[];
  try {
    items = await findRetrieveSet(run.db, keys);
  } catch (err) {
    run.log.error({ err: (err as Error).message }, 'retrieve: index query failed');
    return { status: 0xa701, counts, failedUids: [], errorComment: 'index unavailable' };
  }
  counts.remaining = items.length;
  if (items.length === 0) return { status: 0x0000, counts, failedUids: [] };

  const objects = new ReadAhead(run.store);
  objects.prefetch(items[0]!);
  const sink = await openSink(items, objects);
  if (!sink) {
    return {
      status: 0xa702,
      counts: { remaining: 0, completed: 0, failed: items.length, warning: 0 },
      failedUids: items.map((i) => i.sopInstanceUid),
      errorComment: 'cannot open an association to the destination',
    };
  }
  const failedUids: string[] = [];
  let cancelled = false;
  try {
    for (const [i, item] of items.entries()) {
      if (run.cancelled()) {
        cancelled = true;
        break;
      }
      for (const next of items.slice(i + 1, i + 1 + READ_AHEAD_DEPTH)) objects.prefetch(next);
      let status: number;
      try {
        status = (await sink.send(item)).status;
      } catch (err) {
        run.log.warn({ sopInstanceUid: item.sopInstanceUid, err: (err as Error).message }, 'retrieve sub-operation failed');
        status = 0xa702;
      }
      await objects.release(item.objectKey);
      counts.remaining--;
      if (status === 0x0000) counts.completed++;
      else if (isWarning(status)) counts.warning++;
      else {
        counts.failed++;
        failedUids.push(item.sopInstanceUid);
      }
      if (counts.remaining > 0) run.onProgress({ ...counts });
    }
  } finally {
    await sink.close();
  }
  // On cancel the sub-operations not attempted stay in Remaining (PS3.4 §C.4.2.1.4).
  return { status: finalStatus(counts, cancelled), counts, failedUids };
}

/**
 * Decompression of a stored instance to Explicit VR Little Endian, for a destination that accepts
 * nothing else (@portico/imaging, loaded on first use: its codecs and sharp are not needed otherwise).
 */
export function converter(db: Db, store: ObjectStore): Converter {
  return async (object) => {
    const stored = await findInstance(db, object.sopInstanceUid);
    if (!stored) throw new Error('instance no longer indexed');
    const { rows } = await db.query<{ json: Record<string, never> }>('SELECT json FROM instance WHERE sop_instance_uid = $1', [object.sopInstanceUid]);
    const { decompressStored } = await import('@portico/imaging');
    const out = await decompressStored(store, { ...stored, json: rows[0]?.json ?? {} });
    return out.body;
  };
}
