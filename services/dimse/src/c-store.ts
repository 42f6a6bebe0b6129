/**
 * C-STORE SCP (PS3.4 Annex B, PS3.7 §9.1.1).
 *
 * The data set is never assembled in memory. dcmjs-dimse hands us each PDV fragment through the
 * Writable returned by `createStoreWritableStream`; {@link StoreSink} prefixes a File Meta group built
 * from the command (SOP class and instance) and the accepted transfer syntax, and tees the bytes into
 * (a) the object store under a staging key and (b) the streaming header parser, which validates the
 * data set and skips pixel data without keeping it.
 *
 * Back-pressure: when either consumer is slower than the network, the sink pauses the TCP socket and
 * resumes it on drain, so a slow object store slows the sender instead of growing our memory. The sink's
 * own high-water mark is set so dcmjs-dimse's writes always "succeed": its built-in drain handling awaits
 * inside a PDU handler that does not serialise PDUs, which can reorder fragments.
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
import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { parseInstance, writeFileMetaInformation, DicomParseError, type ParsedInstance } from '@portico/dicom';
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
  readonly socket: Socket;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
}

// Bytes each consumer may buffer before the socket is paused.
const CONSUMER_HIGH_WATER = 256 * 1024;

/** The Writable given to dcmjs-dimse for one C-STORE data set. */
export class StoreSink extends Writable {
  readonly stagingKey: string;
  readonly outcome: Promise<StoreOutcome>;
  // Both consumers get the same Buffers (no copies); see ChunkChannel.
  private readonly storeBody = new ChunkChannel(CONSUMER_HIGH_WATER);
  private readonly parseBody = new ChunkChannel(CONSUMER_HIGH_WATER);
  private readonly ctx: StoreContext;
  private storeFailed = false;
  private parseFailed = false;
  private paused = false;
  /** When the last PDV arrived (for the durable-store latency in debug logs). */
  private dataEndedAt = 0;
  private readonly createdAt = performance.now();

  constructor(ctx: StoreContext, command: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }) {
    // The high-water mark only keeps dcmjs-dimse from awaiting 'drain' (see file header); real buffering
    // is bounded by pausing the socket.
    super({ highWaterMark: 1 << 30 });
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
    });
    this.storeBody.write(meta);
    this.parseBody.write(meta);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const waits: Array<Promise<void>> = [];
    if (!this.storeFailed && !this.storeBody.write(chunk)) waits.push(this.storeBody.drained());
    if (!this.parseFailed && !this.parseBody.write(chunk)) waits.push(this.parseBody.drained());
    if (waits.length === 0) return cb();
    this.pauseSocket();
    void Promise.all(waits).then(() => {
      this.resumeSocket();
      cb();
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.dataEndedAt = performance.now();
    this.storeBody.end();
    this.parseBody.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.resumeSocket();
    // autoDestroy also lands here (err null) after a normal finish; only a real error — the association
    // aborted mid-transfer — fails the put, so the partial staging object is removed.
    if (err) {
      this.storeBody.destroy(err);
      this.parseBody.destroy(err);
    }
    cb(err);
  }

  private pauseSocket(): void {
    if (!this.paused) {
      this.paused = true;
      this.ctx.socket.pause();
    }
  }

  private resumeSocket(): void {
    if (this.paused) {
      this.paused = false;
      this.ctx.socket.resume();
    }
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
    const log = this.ctx.log.child({ sopInstanceUid: command.sopInstanceUid, stagingKey: this.stagingKey });
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
      log.debug(
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
      log.warn({ code: e.code, status: `0x${e.projection.dimseStatus.toString(16).padStart(4, '0')}`, reason: e.message }, 'C-STORE refused');
      const putError = await putSettled;
      if (enqueued) await this.ctx.queues.cancelIngest(this.stagingKey);
      if (!putError)
        await this.ctx.store
          .delete(this.stagingKey)
          .catch((delErr: unknown) => log.error({ err: (delErr as Error).message }, 'could not remove staging object'));
      // Error Comment (0000,0902) is at most 64 characters (PS3.7 Table C.2-1 / LO).
      return { status: e.projection.dimseStatus, errorComment: e.message.slice(0, 64) };
    }
  }
}
