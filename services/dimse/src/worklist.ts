/**
 * Modality Worklist SCP (PS3.4 Annex K) in front of an upstream worklist (a RIS or MWL SCP such as
 * dcmtk wlmscpfs), with a cache so modalities keep getting their worklist while the upstream is down.
 *
 * A modality's C-FIND goes to the upstream as it came (C-FIND SCU, `worklist.upstream`) and what comes
 * back is answered. When the upstream cannot be reached (or does not answer within
 * `dimse.scuTimeoutMs`), the query is answered from the `worklist_item` table instead, matched in
 * code against the stored items (find-match.ts: wildcards, ranges, lists, sequence matching on the
 * Scheduled Procedure Step Sequence). That table is filled by a refresh every `worklist.refreshIntervalMs`
 * that pulls the whole upstream worklist with every return key, so the cache answers even queries no
 * modality has made yet; items not seen for `worklist.cacheTtlMs` are dropped.
 */
import { createHash } from 'node:crypto';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import type { Db } from '@portico/db';
import type { Logger } from '@portico/logging';
import { keyString, matchElement, type JsonDataset, type JsonElement } from './find-match.ts';

const { Client, Dataset } = dimse;
const { CFindRequest } = dimse.requests;
const { DicomMetaDictionary } = dcmjs.data;

export const MWL_FIND = '1.2.840.10008.5.1.4.31';

export interface WorklistUpstream {
  readonly aeTitle: string;
  readonly host: string;
  readonly port: number;
}

/** `AE@host:port`. @throws Error naming what is wrong */
export function parseUpstream(text: string): WorklistUpstream {
  const m = /^([^@\\]{1,16})@([^:]+):(\d{1,5})$/.exec(text.trim());
  if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new Error(`worklist upstream "${text}" is not AE@host:port`);
  return { aeTitle: m[1]!.trim(), host: m[2]!, port: Number(m[3]) };
}

/** The identifier of the periodic refresh: every item, with the attributes modalities ask for. */
function refreshIdentifier(): Record<string, unknown> {
  // dcmjs-dimse's worklist request carries the usual return keys (patient, order, scheduled step).
  return (CFindRequest.createWorklistFindRequest({}).getDataset()?.getElements() ?? {}) as Record<string, unknown>;
}

/** One C-FIND to the upstream; resolves with every pending identifier, rejects on any failure. */
export async function queryUpstream(
  up: WorklistUpstream,
  callingAeTitle: string,
  naturalized: Record<string, unknown>,
  timeoutMs: number,
): Promise<JsonDataset[]> {
  const client = new Client();
  const request = new CFindRequest();
  request.setAffectedSopClassUid(MWL_FIND);
  request.setDataset(new Dataset(naturalized, '1.2.840.10008.1.2'));
  const items: JsonDataset[] = [];
  return new Promise<JsonDataset[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        client.abort();
      } catch {
        // not connected yet
      }
      reject(new Error(`worklist upstream ${up.aeTitle} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    let final: number | undefined;
    // The answer is complete with the final response; what the connection does afterwards (dcmjs-dimse
    // may send its release more than once, and some peers then reset) does not change it.
    request.on('response', (response: InstanceType<typeof dimse.responses.CFindResponse>) => {
      const status = response.getStatus();
      if (status === 0xff00 || status === 0xff01) {
        const ds = response.getDataset();
        if (ds) items.push(DicomMetaDictionary.denaturalizeDataset(ds.getElements()) as JsonDataset);
        return;
      }
      final = status;
      clearTimeout(timer);
      if (status === 0x0000) resolve(items);
      else reject(new Error(`worklist upstream answered 0x${status.toString(16)}`));
    });
    client.addRequest(request);
    const failed = (err: Error): void => {
      if (final !== undefined) return;
      clearTimeout(timer);
      reject(err);
    };
    client.on('networkError', failed);
    client.on('associationRejected', () => failed(new Error(`worklist upstream ${up.aeTitle} rejected the association`)));
    client.on('closed', () => failed(new Error(`worklist upstream ${up.aeTitle} closed without a final response`)));
    client.send(up.host, up.port, callingAeTitle, up.aeTitle, { connectTimeout: timeoutMs, associationTimeout: timeoutMs, pduTimeout: timeoutMs });
  });
}

/** A stable key per scheduled procedure step: study, requested procedure and step IDs, else the item's hash. */
export function itemKey(item: JsonDataset): string {
  const sps = ((item['00400100']?.Value ?? [])[0] ?? {}) as JsonDataset;
  const parts = [keyString(item['0020000D']), keyString(item['00401001']), keyString(sps['00400009']), keyString(item['00080050'])].map((s) => s.trim());
  if (parts.some((p) => p !== '')) return parts.join('|');
  return createHash('sha256').update(JSON.stringify(item)).digest('hex');
}

export async function cacheItems(db: Db, items: readonly JsonDataset[]): Promise<void> {
  if (items.length === 0) return;
  await db.query(
    `INSERT INTO worklist_item (item_key, json, fetched_at)
       SELECT k, j, now() FROM unnest($1::text[], $2::jsonb[]) AS t(k, j)
     ON CONFLICT (item_key) DO UPDATE SET json = EXCLUDED.json, fetched_at = now()`,
    [items.map(itemKey), items.map((i) => JSON.stringify(i))],
  );
}

export async function pruneCache(db: Db, ttlMs: number): Promise<number> {
  const r = await db.query('DELETE FROM worklist_item WHERE fetched_at < now() - make_interval(secs => $1::double precision / 1000)', [ttlMs]);
  return r.rowCount ?? 0;
}

/** Keys of the identifier with a value: what an item must match (group 0008,0005 and 0000 aside). */
function matchingKeys(identifier: JsonDataset): Array<[string, JsonElement]> {
  return Object.entries(identifier).filter(([tag]) => !tag.startsWith('0000') && tag !== '00080005');
}

/** The identifier's keys filled from the item (PS3.4 K.4.1.1.3.2: the keys asked for, empty when unknown). */
export function projectItem(item: JsonDataset, identifier: JsonDataset): JsonDataset {
  const out: JsonDataset = {};
  for (const [tag, key] of Object.entries(identifier)) {
    if (tag.startsWith('0000') || tag === '00080005') continue;
    const stored = item[tag];
    if (key.vr === 'SQ' && stored?.vr === 'SQ') {
      const keyItem = ((key.Value ?? [])[0] ?? {}) as JsonDataset;
      out[tag] = { vr: 'SQ', Value: ((stored.Value ?? []) as JsonDataset[]).map((s) => (Object.keys(keyItem).length > 0 ? projectItem(s, keyItem) : s)) };
    } else out[tag] = stored ?? { vr: key.vr };
  }
  if (/[^\x20-\x7e]/.test(JSON.stringify(out))) out['00080005'] = { vr: 'CS', Value: ['ISO_IR 192'] };
  return out;
}

/** Cached items that match the identifier, read in pages. */
export async function* cachedMatches(db: Db, identifier: JsonDataset): AsyncGenerator<JsonDataset> {
  const keys = matchingKeys(identifier);
  for (let after = ''; ;) {
    const { rows } = await db.query<{ item_key: string; json: JsonDataset }>(
      'SELECT item_key, json FROM worklist_item WHERE item_key > $1 ORDER BY item_key LIMIT 200',
      [after],
    );
    for (const r of rows) {
      after = r.item_key;
      if (keys.every(([tag, key]) => matchElement(r.json[tag], key))) yield r.json;
    }
    if (rows.length < 200) return;
  }
}

export interface WorklistService {
  /** Answers one MWL C-FIND: each match to onMatch; resolves with where the answer came from. */
  find(identifier: JsonDataset, onMatch: (item: JsonDataset) => Promise<void>): Promise<{ source: 'upstream' | 'cache'; matches: number }>;
  stop(): void;
}

export function startWorklist(opts: {
  db: Db;
  log: Logger;
  upstream: WorklistUpstream;
  aeTitle: string;
  timeoutMs: number;
  refreshIntervalMs: number;
  cacheTtlMs: number;
}): WorklistService {
  const { db, log, upstream } = opts;
  const refresh = async (): Promise<void> => {
    try {
      const items = await queryUpstream(upstream, opts.aeTitle, refreshIdentifier(), opts.timeoutMs);
      await cacheItems(db, items);
      const pruned = await pruneCache(db, opts.cacheTtlMs);
      log.debug({ items: items.length, pruned }, 'worklist cache refreshed');
    } catch (err) {
      log.warn({ upstream: upstream.aeTitle, err: (err as Error).message }, 'worklist refresh failed; the cache keeps answering');
    }
  };
  void refresh();
  const timer = setInterval(() => void refresh(), opts.refreshIntervalMs);
  timer.unref();
  return {
    async find(identifier, onMatch) {
      let items: JsonDataset[] | undefined;
      try {
        items = await queryUpstream(upstream, opts.aeTitle, DicomMetaDictionary.naturalizeDataset(identifier), opts.timeoutMs);
      } catch (err) {
        log.warn({ upstream: upstream.aeTitle, err: (err as Error).message }, 'worklist upstream unavailable: answering from the cache');
      }
      let matches = 0;
      if (items) {
        // Live answers carry only the keys the modality asked for: the cache is filled by the refresh,
        // whose identifier asks for every attribute a worklist item has.
        for (const item of items) {
          matches++;
          await onMatch(projectItem(item, identifier));
        }
        return { source: 'upstream', matches };
      }
      for await (const item of cachedMatches(db, identifier)) {
        matches++;
        await onMatch(projectItem(item, identifier));
      }
      return { source: 'cache', matches };
    },
    stop() {
      clearInterval(timer);
    },
  };
}
