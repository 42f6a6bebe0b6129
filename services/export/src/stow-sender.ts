/**
 * Delivery to a DICOMweb destination: one STOW-RS POST per batch (the instances of one study claimed
 * together, at most the destination's batchSize), stored bytes streamed from the object store, or the
 * copy made for the destination when the route transcodes or changes attributes.
 */
import type { DicomwebDestination } from '@portico/config';
import type { ClaimedExport } from '@portico/db';
import type { ObjectStore } from '@portico/storage';
import type { StowItem } from '@portico/dicomweb';
import type { SendResult } from './outcome.ts';
import { transformForDestination } from './transform.ts';

export function stowHeaders(d: DicomwebDestination): Record<string, string> {
  if (d.authorization) return { authorization: d.authorization };
  if (d.bearerToken) return { authorization: `Bearer ${d.bearerToken}` };
  return {};
}

/** Sends a batch in one request; one result per item, never rejects. */
export async function stowBatch(store: ObjectStore, dest: DicomwebDestination, items: readonly ClaimedExport[]): Promise<SendResult[]> {
  const results = new Map<string, SendResult>();
  const parts: StowItem[] = [];
  for (const item of items) {
    const base = { exportPk: item.exportPk, generation: item.generation };
    const transcode =
      item.transferSyntaxUid && item.hasPixelData && item.transferSyntaxUid !== item.storedTransferSyntaxUid ? item.transferSyntaxUid : undefined;
    if (transcode || item.mutations.length > 0) {
      try {
        const copy = await transformForDestination(store, item, transcode);
        parts.push({ sopInstanceUid: item.sopInstanceUid, sopClassUid: item.sopClassUid, body: copy.bytes, size: copy.bytes.length });
      } catch (err) {
        results.set(item.exportPk, { ...base, outcome: 'refused', detail: `cannot prepare the copy for this destination: ${(err as Error).message}` });
      }
      continue;
    }
    parts.push({
      sopInstanceUid: item.sopInstanceUid,
      sopClassUid: item.sopClassUid,
      body: async () => (await store.get(item.objectKey)) as NodeJS.ReadableStream,
      size: item.objectSize,
    });
  }
  if (parts.length > 0) {
    try {
      // Loaded on first use: an export role with DIMSE destinations only never loads the HTTP client side.
      const { stowInstances } = await import('@portico/dicomweb');
      const r = await stowInstances({ url: dest.url, headers: stowHeaders(dest), timeoutMs: dest.timeoutMs }, parts);
      for (const item of items) {
        if (results.has(item.exportPk)) continue;
        const one = r.perInstance.get(item.sopInstanceUid);
        const base = { exportPk: item.exportPk, generation: item.generation };
        if (one?.ok) results.set(item.exportPk, { ...base, outcome: 'delivered', ...(one.reason ? { detail: one.reason } : {}) });
        else results.set(item.exportPk, { ...base, outcome: 'failed', detail: `STOW-RS ${r.httpStatus}: ${one?.reason ?? 'not acknowledged'}` });
      }
    } catch (err) {
      for (const item of items) {
        if (!results.has(item.exportPk))
          results.set(item.exportPk, { exportPk: item.exportPk, generation: item.generation, outcome: 'failed', detail: (err as Error).message });
      }
    }
  }
  return items.map((i) => results.get(i.exportPk)!);
}
