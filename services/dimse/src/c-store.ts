/**
 * C-STORE SCP (PS3.4 Annex B, PS3.7 §9.1.1).
 *
 * The data set is never assembled in memory. The raw receive path (p-data.ts) hands us each data-set PDV
 * fragment as a view of the received PDU; {@link StoreSink} prefixes a File Meta group built from the
 * command (SOP class and instance) and the accepted transfer syntax, and tees the bytes into (a) the
 * object store under a staging key and (b) the streaming header parser, which validates the data set and
 * skips pixel data without keeping it. No Writable stream sits in between: a fragment is two array pushes.
 *
 * Back-pressure: {@link StoreSink.write} returns false when either consumer is more than
 * CONSUMER_HIGH_WATER bytes behind; the caller then pauses the TCP socket until {@link StoreSink.drained},
 * so a slow object store slows the sender instead of growing our memory.
 *
 * An acknowledgement is a promise: Success (0x0000) is sent only after the staging object is durable and
 * the ingest job is enqueued (the two overlap: see finish()). Statuses returned (PS3.4 Table B.2-1):
 * - 0x0000 Success
 * - 0xA700 Refused: Out of Resources — object store or queue unavailable
 * - 0xA900 Error: Data Set does not match SOP Class — data set UIDs contradict the command
 * - 0xC000 Error: Cannot understand — the bytes are not a parseable data set
 * A data set without Study or Series Instance UID is accepted (the worker derives them; see
 * ingest-instance.ts): a gateway must not lose what a modality produced.
 */
import { randomUUID } from 'node:crypto';
import { parseInstance, receivedHeaders, writeFileMetaInformation, DicomParseError, type ParsedInstance } from '@portico/dicom';
import { PorticoError, toPorticoError } from '@portico/errors';
import { ChunkChannel, type ObjectStore } from '@portico/storage';
import type { JobQueues } from '@portico/jobs';
import type { Logger } from '@portico/logging';

export interface StoreOutcome {
  readonly status: number;
  readonly errorComment?: string;
  readonly stagingKey?: string;
}

export interface StoreContext {
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  readonly log: Logger;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
}

// Bytes each consumer may buffer before the socket is paused.
const CONSUMER_HIGH_WATER = 256 * 1024;

/** One C-STORE data set on its way to the object store and the header parser. */
export class StoreSink {
  readonly stagingKey: string;
  readonly outcome: Promise<StoreOutcome>;
  // Both consumers get the same Buffers (no copies); see ChunkChannel.
  private readonly storeBody = new ChunkChannel(CONSUMER_HIGH_WATER);
  private readonly parseBody = new ChunkChannel(CONSUMER_HIGH_WATER);
  private readonly ctx: StoreContext;
  private storeFailed = false;
  private parseFailed = false;
  /** True once end() or abort() was called: no more bytes. */
  private closed = false;
  /** When the last PDV arrived (for the durable-store latency in debug logs). */
  private dataEndedAt = 0;
  private readonly createdAt = performance.now();
  /** Bytes queued for the object store (File Meta group included). */
  private bytes = 0;

  constructor(ctx: StoreContext, command: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }) {
    this.ctx = ctx;
    this.stagingKey = `staging/${randomUUID()}.dcm`;
    let markVisible!: () => void;
    const visible = new Promise<void>((resolve) => (markVisible = resolve));
    const put = ctx.store.put(this.stagingKey, this.storeBody, { onVisible: () => markVisible() }).catch((err: unknown) => {
      this.storeFailed = true;
      throw err;
    });
    const parse = parseInstance(this.parseBody).catch((err: unknown) => {
      this.parseFailed = true;
      throw err;
    });
    // Both consumers are awaited later; mark rejections handled now so an early one is not "unhandled".
    put.catch(() => undefined);
    parse.catch(() => undefined);
    this.outcome = this.finish(put, visible, parse, command);
    const meta = writeFileMetaInformation({
      sopClassUid: command.sopClassUid,
      sopInstanceUid: command.sopInstanceUid,
      transferSyntaxUid: command.transferSyntaxUid,
      sourceApplicationEntityTitle: ctx.callingAeTitle,
      // How it arrived, kept with the bytes: routing needs it even when the ingest job (which also
      // carries it) is lost and the reconciler re-ingests the staged object.
      sendingApplicationEntityTitle: ctx.callingAeTitle,
      receivingApplicationEntityTitle: ctx.calledAeTitle,
    });
    this.bytes = meta.length;
    this.storeBody.write(meta);
    this.parseBody.write(meta);
  }

  /** True while bytes are still expected (neither end() nor abort() called). */
  get receiving(): boolean {
    return !this.closed;
  }

  /**
   * Queues one data-set fragment for both consumers (read-only from here on). False when either is
   * more than its high-water mark behind: stop reading until {@link drained} resolves.
   */
  write(chunk: Buffer): boolean {
    if (this.closed) return true;
    this.bytes += chunk.length;
    const stored = this.storeFailed || this.storeBody.write(chunk);
    const parsed = this.parseFailed || this.parseBody.write(chunk);
    return stored && parsed;
  }

  /** Resolves when both consumers are below their high-water marks (or gone). */
  async drained(): Promise<void> {
    await this.storeBody.drained();
    await this.parseBody.drained();
  }

  /** The last fragment was written. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.dataEndedAt = performance.now();
    this.storeBody.end();
    this.parseBody.end();
  }

  /**
   * The association ended before the last fragment: the put fails, so the partial staging object is
   * removed, and the outcome is a failure nobody will read.
   */
  abort(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.storeBody.destroy(err);
    this.parseBody.destroy(err);
  }

  /**
   * Once the data set is parsed and the staging object readable, the ingest job is enqueued while the
   * object store flushes the object (see ObjectStore.put onVisible): Success waits for both, so the
   * promise holds, and the flush and the queue commit overlap instead of running one after the other.
   */
  private async finish(
    put: Promise<{ size: number }>,
    visible: Promise<void>,
    parse: Promise<ParsedInstance>,
    command: { sopClassUid: string; sopInstanceUid: string },
  ): Promise<StoreOutcome> {
    const putSettled = put.then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    await Promise.all([parse.catch(() => undefined), Promise.race([visible, putSettled])]);
    // Created only when something is logged: a pino child with redaction costs ~30 µs, per instance.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= this.ctx.log.child({ sopInstanceUid: command.sopInstanceUid, stagingKey: this.stagingKey }));
    const visibleAt = performance.now();
    let enqueued = false;
    try {
      let parsed: ParsedInstance;
      try {
        parsed = await parse;
      } catch (err) {
        throw err instanceof DicomParseError
          ? new PorticoError('CANNOT_UNDERSTAND', `data set cannot be parsed: ${err.message}`)
          : toPorticoError(err, 'CANNOT_UNDERSTAND');
      }
      if (parsed.sopInstanceUid !== command.sopInstanceUid)
        throw new PorticoError('DATASET_MISMATCH', 'SOP Instance UID of the data set differs from the C-STORE command');
      if (parsed.sopClassUid !== command.sopClassUid)
        throw new PorticoError('DATASET_MISMATCH', 'SOP Class UID of the data set differs from the C-STORE command');
      const early = await Promise.race([putSettled, Promise.resolve(undefined)]);
      if (early) throw new PorticoError('OUT_OF_RESOURCES', `object store: ${early.message}`);
      // Before the job exists: an ingest worker in this process takes the parsed header from here.
      receivedHeaders.offer(this.stagingKey, parsed, this.bytes);
      const enqueue = this.ctx.queues
        .enqueueIngest({
          stagingKey: this.stagingKey,
          sopInstanceUid: command.sopInstanceUid,
          studyInstanceUid: parsed.studyInstanceUid,
          seriesInstanceUid: parsed.seriesInstanceUid,
          source: 'dimse',
          callingAeTitle: this.ctx.callingAeTitle,
          calledAeTitle: this.ctx.calledAeTitle,
          receivedAt: new Date().toISOString(),
        })
        .then(
          () => {
            enqueued = true;
            return performance.now();
          },
          (err: unknown) => {
            throw new PorticoError('OUT_OF_RESOURCES', `queue: ${(err as Error).message}`);
          },
        );
      const [enqueueResult, putError] = await Promise.all([
        enqueue.then(
          (at) => ({ at }),
          (err: unknown) => ({ err }),
        ),
        putSettled,
      ]);
      if (putError) throw new PorticoError('OUT_OF_RESOURCES', `object store: ${putError.message}`);
      if ('err' in enqueueResult) throw enqueueResult.err;
      if (this.ctx.log.isLevelEnabled('debug'))
        log().debug(
          {
            receivedMs: Math.round(this.dataEndedAt - this.createdAt),
            visibleMs: Math.round(visibleAt - this.dataEndedAt),
            enqueuedMs: Math.round(enqueueResult.at - visibleAt),
            durableMs: Math.round(performance.now() - visibleAt),
          },
          'C-STORE staged',
        );
      return { status: 0x0000, stagingKey: this.stagingKey };
    } catch (err) {
      const e = toPorticoError(err);
      log().warn({ code: e.code, status: `0x${e.projection.dimseStatus.toString(16).padStart(4, '0')}`, reason: e.message }, 'C-STORE refused');
      receivedHeaders.withdraw(this.stagingKey);
      const putError = await putSettled;
      if (enqueued) await this.ctx.queues.cancelIngest(this.stagingKey);
      if (!putError)
        await this.ctx.store
          .delete(this.stagingKey)
          .catch((delErr: unknown) => log().error({ err: (delErr as Error).message }, 'could not remove staging object'));
      // Error Comment (0000,0902) is at most 64 characters (PS3.7 Table C.2-1 / LO).
      return { status: e.projection.dimseStatus, errorComment: e.message.slice(0, 64) };
    }
  }
}
