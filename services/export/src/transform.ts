/**
 * The copy of an instance made for one destination: transcoded and/or with the route's attribute
 * mutations applied (@portico/imaging transformInstance). One instance is held in memory while it is
 * made; the stored object is never changed. The imaging module (codecs, sharp) loads on first use.
 */
import type { ClaimedExport } from '@portico/db';
import type { ObjectStore } from '@portico/storage';

export interface DestinationCopy {
  readonly bytes: Buffer;
  readonly transferSyntaxUid: string;
}

async function readObject(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await store.get(key)) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Part-10 bytes of the copy: in `transferSyntaxUid` (undefined: as stored) with the item's mutations. */
export async function transformForDestination(
  store: ObjectStore,
  item: Pick<ClaimedExport, 'objectKey' | 'mutations'>,
  transferSyntaxUid: string | undefined,
): Promise<DestinationCopy> {
  const { transformInstance } = await import('@portico/imaging');
  const source = await readObject(store, item.objectKey);
  const out = await transformInstance(source, { ...(transferSyntaxUid ? { transferSyntaxUid } : {}), mutations: item.mutations });
  return { bytes: out.bytes, transferSyntaxUid: out.transferSyntaxUid };
}
