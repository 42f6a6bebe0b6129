/**
 * Delivery to a DIMSE destination: C-STORE over associations we open, with the pass-through path of
 * @portico/dimse (the stored bytes as they are) whenever the destination accepts the stored transfer
 * syntax and the route changes nothing, else a copy made for the destination (transcoded, attributes
 * changed) by @portico/imaging's transformInstance.
 *
 * A batch (the instances of one study claimed together) goes over one association. Associations are kept
 * open for `idleMs` after a batch and reused by the next batch of the same destination when they
 * negotiated what it needs, so a study arriving instance by instance still goes over one association.
 */
import { StoreScu, type ScuTls } from '@portico/dimse';
import type { ClaimedExport } from '@portico/db';
import type { DicomNode } from '@portico/config';
import type { ObjectStore } from '@portico/storage';
import type { Logger } from '@portico/logging';
import { classifyStoreStatus, type SendResult } from './outcome.ts';
import { transformForDestination } from './transform.ts';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';

/**
 * Transfer syntaxes to propose for an instance, best first. An image whose route asks for a syntax: that
 * one (the stored one is no longer a candidate), then the destination's preferred syntax and the
 * uncompressed ones as fallbacks. Otherwise (no transcode asked, or a non-image, which has no pixel data
 * to compress): the stored syntax, then the preferred and uncompressed ones. Limited to what the
 * destination accepts when its list is configured.
 */
export function proposalsFor(
  item: Pick<ClaimedExport, 'transferSyntaxUid' | 'storedTransferSyntaxUid' | 'hasPixelData'>,
  node: Pick<DicomNode, 'transferSyntaxes' | 'preferredTransferSyntax'>,
): string[] {
  const first = item.transferSyntaxUid && item.hasPixelData ? item.transferSyntaxUid : item.storedTransferSyntaxUid;
  const unique = [...new Set([first, ...(node.preferredTransferSyntax ? [node.preferredTransferSyntax] : []), EXPLICIT_LE, IMPLICIT_LE])];
  if (!node.transferSyntaxes) return unique;
  const accepted = unique.filter((ts) => node.transferSyntaxes!.includes(ts));
  return accepted.length > 0 ? accepted : [...node.transferSyntaxes];
}

interface Pooled {
  readonly scu: StoreScu;
  readonly callingAeTitle: string;
  readonly contexts: Set<string>;
  timer?: NodeJS.Timeout;
}

export interface DimseSenderOptions {
  readonly store: ObjectStore;
  readonly ourAeTitle: string;
  readonly maxPduLength: number;
  readonly timeoutMs: number;
  readonly tls?: ScuTls;
  readonly idleMs: number;
  readonly log: Logger;
}

export class DimseSender {
  private readonly idle = new Map<string, Pooled[]>();
  private readonly opts: DimseSenderOptions;
  private closed = false;

  constructor(opts: DimseSenderOptions) {
    this.opts = opts;
  }

  /** Sends a batch; one result per item, never rejects. */
  async sendBatch(node: DicomNode, items: readonly ClaimedExport[]): Promise<SendResult[]> {
    // Impersonation calls with each sender's AE title: one association per calling AE.
    const groups = new Map<string, ClaimedExport[]>();
    for (const item of items) {
      const calling = node.impersonate && item.callingAeTitle ? item.callingAeTitle : (node.callingAeTitle ?? this.opts.ourAeTitle);
      groups.set(calling, [...(groups.get(calling) ?? []), item]);
    }
    const results: SendResult[] = [];
    for (const [calling, group] of groups) results.push(...(await this.sendGroup(node, calling, group)));
    return results;
  }

  private async sendGroup(node: DicomNode, callingAeTitle: string, items: readonly ClaimedExport[]): Promise<SendResult[]> {
    const wanted = items.map((item) => ({
      sopClassUid: item.sopClassUid,
      transferSyntaxUid: item.storedTransferSyntaxUid,
      proposals: proposalsFor(item, node),
    }));
    // The best syntax in a presentation context of its own, the fallbacks in another: in one context the
    // acceptor picks (Orthanc takes Explicit VR Little Endian over JPEG 2000), in two we do.
    const contexts = wanted.flatMap((w) => [
      { sopClassUid: w.sopClassUid, transferSyntaxUid: w.transferSyntaxUid, proposals: w.proposals.slice(0, 1) },
      ...(w.proposals.length > 1 ? [{ sopClassUid: w.sopClassUid, transferSyntaxUid: w.transferSyntaxUid, proposals: w.proposals.slice(1) }] : []),
    ]);
    const keys = new Set(contexts.map((w) => `${w.sopClassUid} ${w.proposals.join(',')}`));
    let pooled: Pooled;
    try {
      pooled = this.take(node.aeTitle, callingAeTitle, keys) ?? (await this.open(node, callingAeTitle, contexts, keys));
    } catch (err) {
      const detail = `association with ${node.aeTitle} at ${node.host}:${node.port}: ${(err as Error).message}`;
      return items.map((i) => ({ exportPk: i.exportPk, generation: i.generation, outcome: 'failed', detail }));
    }
    const results: SendResult[] = [];
    let broken: string | undefined;
    for (const [n, item] of items.entries()) {
      if (broken) {
        results.push({ exportPk: item.exportPk, generation: item.generation, outcome: 'failed', detail: broken });
        continue;
      }
      try {
        results.push(await this.sendOne(pooled.scu, item, wanted[n]!.proposals));
      } catch (err) {
        broken = `association with ${node.aeTitle} failed: ${(err as Error).message}`;
        results.push({ exportPk: item.exportPk, generation: item.generation, outcome: 'failed', detail: broken });
      }
    }
    if (broken || !pooled.scu.usable()) pooled.scu.abort();
    else this.giveBack(node.aeTitle, pooled);
    return results;
  }

  private async sendOne(scu: StoreScu, item: ClaimedExport, proposals: readonly string[]): Promise<SendResult> {
    const accepted = scu.acceptedSyntaxes(item.sopClassUid);
    const target = proposals.find((ts) => accepted.includes(ts));
    const base = { exportPk: item.exportPk, generation: item.generation };
    if (!target) {
      return {
        ...base,
        outcome: 'refused',
        detail: accepted.length
          ? `destination accepts none of ${proposals.join(', ')} for this SOP class`
          : `destination does not accept SOP class ${item.sopClassUid}`,
      };
    }
    let response;
    if (target === item.storedTransferSyntaxUid && item.mutations.length === 0) {
      response = await scu.send(
        { sopClassUid: item.sopClassUid, sopInstanceUid: item.sopInstanceUid, transferSyntaxUid: item.storedTransferSyntaxUid, objectKey: item.objectKey },
        this.opts.store,
      );
    } else {
      let copy;
      try {
        copy = await transformForDestination(this.opts.store, item, target === item.storedTransferSyntaxUid ? undefined : target);
      } catch (err) {
        return { ...base, outcome: 'refused', detail: `cannot prepare the copy for this destination: ${(err as Error).message}` };
      }
      if (!accepted.includes(copy.transferSyntaxUid)) {
        return { ...base, outcome: 'refused', detail: `the copy is in ${copy.transferSyntaxUid}, which the destination did not accept` };
      }
      response = await scu.sendPrepared(
        { sopClassUid: item.sopClassUid, sopInstanceUid: item.sopInstanceUid, transferSyntaxUid: copy.transferSyntaxUid },
        (async function* () {
          yield copy.bytes;
        })(),
      );
    }
    return { ...base, ...classifyStoreStatus(response.status, response.errorComment) };
  }

  private take(destination: string, callingAeTitle: string, keys: ReadonlySet<string>): Pooled | undefined {
    const list = this.idle.get(destination) ?? [];
    const at = list.findIndex((p) => p.callingAeTitle === callingAeTitle && p.scu.usable() && [...keys].every((k) => p.contexts.has(k)));
    if (at < 0) return undefined;
    const [pooled] = list.splice(at, 1);
    clearTimeout(pooled!.timer);
    return pooled;
  }

  private giveBack(destination: string, pooled: Pooled): void {
    if (this.closed || this.opts.idleMs === 0) {
      void pooled.scu.release().catch(() => pooled.scu.abort());
      return;
    }
    const list = this.idle.get(destination) ?? [];
    list.push(pooled);
    this.idle.set(destination, list);
    pooled.timer = setTimeout(() => {
      const l = this.idle.get(destination) ?? [];
      const at = l.indexOf(pooled);
      if (at >= 0) l.splice(at, 1);
      void pooled.scu.release().catch(() => pooled.scu.abort());
    }, this.opts.idleMs);
    pooled.timer.unref();
  }

  private async open(
    node: DicomNode,
    callingAeTitle: string,
    wanted: ReadonlyArray<{ sopClassUid: string; transferSyntaxUid: string; proposals: readonly string[] }>,
    keys: Set<string>,
  ): Promise<Pooled> {
    if (keys.size > 128) throw new Error(`${keys.size} presentation contexts needed; at most 128 fit one association`);
    const scu = await StoreScu.open(
      {
        host: node.host,
        port: node.port,
        callingAeTitle,
        calledAeTitle: node.aeTitle,
        maxPduLength: this.opts.maxPduLength,
        timeoutMs: this.opts.timeoutMs,
        ...(node.tls ? { tls: this.opts.tls ?? {} } : {}),
      },
      wanted,
    );
    return { scu, callingAeTitle, contexts: keys };
  }

  /** Releases idle associations. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(
      all.map(async (p) => {
        clearTimeout(p.timer);
        await p.scu.release().catch(() => p.scu.abort());
      }),
    );
  }
}
