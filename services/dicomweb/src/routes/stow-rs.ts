/**
 * STOW-RS: `POST {root}/studies[/{StudyInstanceUID}]` with `multipart/related; type="application/dicom"`.
 *
 * Each part is received once and teed, with back-pressure, into two consumers running side by side: the
 * object store (`staging/<uuid>.dcm`, durable when `put` resolves) and the streaming header parser. Only
 * when the parse succeeded, the object is readable and the data set passes our checks is the ingest job
 * enqueued (while the store flushes the object: see ObjectStore.put onVisible), and only when both the
 * flush and the enqueue resolved does the instance go into ReferencedSOPSequence: the acknowledgement is
 * a promise (DESIGN.md).
 * Any failure before that deletes the staging object and yields a FailedSOPSequence item whose
 * FailureReason comes from the PorticoError table. Nothing buffers a whole request or part.
 *
 * Statuses (PS3.18 §10.5.3, Table 10.5.3-1): 200 all stored; 202 some stored, some failed; 409 none
 * stored; 400 malformed request; 406 unsupported Accept; 413 over PORTICO_STOW_MAX_BYTES; 415 wrong
 * media type (including the XML metadata form `type="application/dicom+xml"`, not implemented).
 *
 * The metadata + bulk data form (`type="application/dicom+json"`, PS3.18 §10.5.1.1) cannot stream: a data
 * set is complete only when every bulk data part it names has arrived, in any order. Its parts are held in
 * memory (bounded by {@link JSON_FORM_MAX_BYTES}), each data set is encoded as Part 10 (stow-json.ts) and
 * then goes through storePart like an application/dicom part, one at a time.
 * Failure reasons: 0xC000 cannot understand / missing attribute, 0xA900 study does not match the URL
 * (§10.5.3 "the Study Instance UID … does not match"), 0xA700 store or queue unavailable, 0x0110 part of
 * another media type.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { ChunkChannel, flowingChunks } from '@portico/storage';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DicomParseError, hasPart10Preamble, hierarchyUids, isValidUid, parseInstance, receivedHeaders, type ParsedInstance } from '@portico/dicom';
import { PorticoError, toPorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';
import { el, type DicomJson } from '../dicom-json.ts';
import { parseAccept, parseMediaType, parseStowContentType, requireDicomJson } from '../media-types.ts';
import { readMultipart, type IncomingPart, type ReadMultipartResult } from '../multipart.ts';
import { buildInstance, datasetUids, type BulkPart } from '../stow-json.ts';
import { sendProblem, traceIdOf } from '../problem.ts';
import { instanceUrl, serviceBase, studyUrl } from '../urls.ts';

/** UIDs become URL and object key segments: anything else is refused. @see PS3.5 §9.1 */

const PART10_HEADER_LENGTH = 132;

export type PartOutcome =
  | { readonly ok: true; readonly sopClassUid: string; readonly sopInstanceUid: string; readonly studyInstanceUid: string; readonly seriesInstanceUid: string }
  | { readonly ok: false; readonly sopClassUid: string; readonly sopInstanceUid: string; readonly error: PorticoError };

interface PartContext {
  readonly deps: RouteDeps;
  readonly log: FastifyBaseLogger;
  readonly studyFromUrl: string | undefined;
  readonly rootType: string | undefined;
  readonly traceparent: string | undefined;
}

/**
 * Feeds chunks to one consumer through a zero-copy ChunkChannel (a PassThrough read by async iteration
 * joins its buffered chunks into new Buffers on every read); gives up on the consumer once it settled.
 */
class Sink {
  readonly stream = new ChunkChannel(256 * 1024);
  settled = false;

  watch<T>(p: Promise<T>): Promise<T> {
    const stop = (): void => {
      this.settled = true;
      // A consumer that stopped early (error, or it needed no more) would never drain again.
      this.stream.destroy(new Error('consumer finished'));
    };
    p.then(stop, stop);
    return p;
  }

  write(chunk: Buffer): void {
    if (!this.settled) this.stream.write(chunk);
  }
}

/** Reads one part into staging + parser, checks it, enqueues it. Never rejects. */
export async function storePart(ctx: PartContext, part: IncomingPart): Promise<PartOutcome> {
  const { deps, log } = ctx;
  const fail = (error: PorticoError, parsed?: ParsedInstance): PartOutcome => ({
    ok: false,
    sopClassUid: parsed?.sopClassUid ?? '',
    sopInstanceUid: parsed?.sopInstanceUid ?? '',
    error,
  });

  // RFC 2387: a part without Content-Type has the type of the root, named by the request's `type`.
  const ctHeader = part.headers['content-type'];
  const partType =
    ctHeader === undefined ? (ctx.rootType ?? 'application/dicom') : (parseMediaType(Array.isArray(ctHeader) ? ctHeader[0] : ctHeader)?.type ?? '(malformed)');
  if (partType !== 'application/dicom') {
    part.body.resume();
    await new Promise<void>((resolve) => part.body.once('close', resolve).once('end', resolve));
    return fail(new PorticoError('UNSUPPORTED_MEDIA_TYPE', `part ${part.index} is ${partType}; STOW-RS stores application/dicom parts only`));
  }

  // "stow-": how it arrived stays known if its ingest job is lost and the reconciler re-ingests it.
  const stagingKey = `staging/stow-${randomUUID()}.dcm`;
  const storeSink = new Sink();
  const parseSink = new Sink();
  let markVisible!: () => void;
  const visible = new Promise<void>((resolve) => (markVisible = resolve));
  const stored = storeSink.watch(deps.store.put(stagingKey, storeSink.stream, { contentType: 'application/dicom', onVisible: () => markVisible() }));
  const parsing = parseSink.watch(parseInstance(parseSink.stream));
  // Both are awaited below; keep an early rejection from being reported as unhandled meanwhile.
  stored.catch(() => undefined);
  parsing.catch(() => undefined);

  let head = Buffer.alloc(0);
  let bytes = 0;
  let early: PorticoError | undefined;
  try {
    for await (const chunk of flowingChunks(part.body)) {
      if (early) continue; // drain to reach the next part
      if (head.length < PART10_HEADER_LENGTH) {
        head = Buffer.concat([head, chunk.subarray(0, PART10_HEADER_LENGTH - head.length)]);
        if (head.length === PART10_HEADER_LENGTH && !hasPart10Preamble(head)) {
          early = new PorticoError('CANNOT_UNDERSTAND', `part ${part.index} is not a DICOM Part-10 file (no 128-byte preamble and "DICM" prefix; PS3.10 §7.1)`);
          storeSink.stream.destroy(early);
          parseSink.stream.destroy(early);
          continue;
        }
      }
      bytes += chunk.length;
      storeSink.write(chunk);
      parseSink.write(chunk);
      await Promise.all([storeSink.stream.drained(), parseSink.stream.drained()]);
    }
    if (!early && head.length < PART10_HEADER_LENGTH) {
      early = new PorticoError('CANNOT_UNDERSTAND', `part ${part.index} is too short to be a DICOM Part-10 file (${head.length} bytes)`);
      storeSink.stream.destroy(early);
      parseSink.stream.destroy(early);
    }
    storeSink.stream.end();
    parseSink.stream.end();
  } catch (err) {
    // The request broke off inside this part (client gone, limit, truncated multipart).
    storeSink.stream.destroy(err as Error);
    parseSink.stream.destroy(err as Error);
    early = toPorticoError(err, 'CANNOT_UNDERSTAND');
  }

  // The job is enqueued as soon as the object is readable under its key, while the store flushes it
  // (ObjectStore.put onVisible); the part is acknowledged only when both are done.
  const putSettled = stored.then(
    () => undefined,
    (err: unknown) => err as Error,
  );
  await Promise.all([parsing.catch(() => undefined), Promise.race([visible, putSettled])]);
  const parseResult = await parsing.then(
    (value) => ({ value }),
    (reason: unknown) => ({ reason }),
  );
  const parsed = 'value' in parseResult ? parseResult.value : undefined;
  let enqueued = false;
  const discard = async (error: PorticoError): Promise<PartOutcome> => {
    receivedHeaders.withdraw(stagingKey);
    const putError = await putSettled;
    if (enqueued) await deps.queues.cancelIngest(stagingKey);
    if (!putError) {
      await deps.store.delete(stagingKey).catch((err: unknown) => log.warn({ stagingKey, err: (err as Error).message }, 'could not delete staging object'));
    }
    log.info({ part: part.index, stagingKey, sopInstanceUid: parsed?.sopInstanceUid, code: error.code, reason: error.message }, 'STOW-RS part failed');
    return fail(error, parsed);
  };
  const storeFailed = (err: Error): Promise<PartOutcome> => {
    log.error({ stagingKey, err: err.message }, 'object store put failed');
    return discard(new PorticoError('OUT_OF_RESOURCES', 'the object store could not store the instance', { cause: err }));
  };

  if (early) return discard(early);
  if ('reason' in parseResult) {
    const err = parseResult.reason;
    return discard(
      err instanceof DicomParseError
        ? new PorticoError('CANNOT_UNDERSTAND', `part ${part.index}: ${err.message}`, { cause: err })
        : toPorticoError(err, 'PROCESSING_FAILURE'),
    );
  }
  const putFailedEarly = await Promise.race([putSettled, Promise.resolve(undefined)]);
  if (putFailedEarly) return storeFailed(putFailedEarly);
  const p = parsed!;
  const problem = checkParsed(p, part.index, ctx.studyFromUrl);
  if (problem) return discard(problem);

  // Before the job exists: an ingest worker in this process takes the parsed header from here.
  receivedHeaders.offer(stagingKey, p, bytes);
  const enqueue = deps.queues
    .enqueueIngest({
      stagingKey,
      sopInstanceUid: p.sopInstanceUid,
      studyInstanceUid: p.studyInstanceUid,
      seriesInstanceUid: p.seriesInstanceUid,
      source: 'stow-rs',
      receivedAt: new Date().toISOString(),
      ...(ctx.traceparent ? { traceparent: ctx.traceparent } : {}),
    })
    .then(
      () => void (enqueued = true),
      (err: unknown) => err as Error,
    );
  const [enqueueError, putError] = await Promise.all([enqueue, putSettled]);
  if (putError) return storeFailed(putError);
  if (enqueueError) {
    log.error({ stagingKey, sopInstanceUid: p.sopInstanceUid, err: enqueueError.message }, 'enqueue of ingest job failed');
    return discard(new PorticoError('OUT_OF_RESOURCES', 'the ingest queue is unavailable', { cause: enqueueError }));
  }
  log.debug({ part: part.index, stagingKey, sopInstanceUid: p.sopInstanceUid }, 'STOW-RS part stored');
  const uids = hierarchyUids(p.sopInstanceUid, p.studyInstanceUid, p.seriesInstanceUid);
  return { ok: true, sopClassUid: p.sopClassUid, sopInstanceUid: p.sopInstanceUid, studyInstanceUid: uids.study, seriesInstanceUid: uids.series };
}

const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';

/** What the ingest worker needs to index the instance, checked before we promise anything. */
function checkParsed(p: ParsedInstance, index: number, studyFromUrl: string | undefined): PorticoError | undefined {
  if (!p.hasFileMeta) return new PorticoError('CANNOT_UNDERSTAND', `part ${index} has no File Meta Information (PS3.10 §7.1)`);
  // PS3.18 §10.5 stores composite instances; a DICOMDIR (Media Storage Directory) only indexes media.
  if (p.sopClassUid === MEDIA_STORAGE_DIRECTORY) return new PorticoError('SOP_CLASS_NOT_SUPPORTED', `part ${index} is a DICOMDIR, not an instance`);
  // A missing Study or Series Instance UID is not refused: the worker indexes the instance under UIDs
  // derived from its SOP Instance UID (see hierarchyUids), as the DIMSE path does.
  const uids = hierarchyUids(p.sopInstanceUid, p.studyInstanceUid, p.seriesInstanceUid);
  for (const [name, uid] of [
    ['SOPClassUID', p.sopClassUid],
    ['SOPInstanceUID', p.sopInstanceUid],
    ['StudyInstanceUID', uids.study],
    ['SeriesInstanceUID', uids.series],
  ] as const) {
    if (uid === '') return new PorticoError('MISSING_ATTRIBUTE', `part ${index} has no ${name}`);
    if (!isValidUid(uid)) return new PorticoError('CANNOT_UNDERSTAND', `part ${index}: ${name} is not a valid UID`);
  }
  if (studyFromUrl !== undefined && uids.study !== studyFromUrl) {
    // PS3.18 §10.5.3: an instance of another study than the one in the URL fails with 0xA900.
    return new PorticoError('DATASET_MISMATCH', `part ${index} belongs to study ${uids.study}, not ${studyFromUrl} named in the URL`);
  }
  return undefined;
}

/** The Store Instances Response Module (PS3.18 Table 10.5.3-2) as DICOM JSON. */
export function stowResponse(base: string, studyFromUrl: string | undefined, outcomes: readonly PartOutcome[]): DicomJson {
  const referenced: DicomJson[] = [];
  const failed: DicomJson[] = [];
  const studies = new Set<string>();
  for (const o of outcomes) {
    if (o.ok) {
      studies.add(o.studyInstanceUid);
      referenced.push({
        '00081150': el('UI', [o.sopClassUid]),
        '00081155': el('UI', [o.sopInstanceUid]),
        '00081190': el('UR', [instanceUrl(base, o.studyInstanceUid, o.seriesInstanceUid, o.sopInstanceUid)]),
      });
    } else {
      failed.push({
        '00081150': el('UI', o.sopClassUid ? [o.sopClassUid] : []),
        '00081155': el('UI', o.sopInstanceUid ? [o.sopInstanceUid] : []),
        '00081197': el('US', [o.error.projection.failureReason]),
      });
    }
  }
  const study = studyFromUrl ?? (studies.size === 1 ? [...studies][0] : undefined);
  const ds: DicomJson = {};
  if (study !== undefined) ds['00081190'] = el('UR', [studyUrl(base, study)]);
  if (failed.length > 0) ds['00081198'] = { vr: 'SQ', Value: failed };
  if (referenced.length > 0) ds['00081199'] = { vr: 'SQ', Value: referenced };
  return ds;
}

/**
 * Upper bound for a metadata + bulk data request, which is held in memory: the smaller of
 * PORTICO_STOW_MAX_BYTES and this. Larger instances go as application/dicom, which streams.
 */
export const JSON_FORM_MAX_BYTES = 512 * 1024 * 1024;

const JSON_TYPES = new Set(['application/dicom+json', 'application/json']);

async function collect(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * Receives a metadata + bulk data request: JSON parts (each an array of data sets, or one data set) and
 * bulk data parts keyed by Content-Location; then encodes and stores each data set in turn.
 * @throws PorticoError BAD_REQUEST for unreadable metadata (no data set can be named), PAYLOAD_TOO_LARGE
 * @see PS3.18 §10.5.1.1, Table 10.5.1-1
 */
async function storeMetadataAndBulk(
  ctx: PartContext,
  body: AsyncIterable<Uint8Array>,
  opts: { boundary: string; maxBytes: number },
): Promise<{ outcomes: PartOutcome[]; result: ReadMultipartResult }> {
  const received: Array<Promise<{ index: number; mediaType: string; params: Record<string, string>; location: string | undefined; body: Buffer }>> = [];
  const result = await readMultipart(body, opts, (part) => {
    const header = (name: string): string | undefined => {
      const v = part.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const mt = parseMediaType(header('content-type') ?? ctx.rootType ?? 'application/dicom+json');
    const read = collect(part.body);
    read.catch(() => undefined);
    received.push(
      read.then((b) => ({
        index: part.index,
        mediaType: mt?.type ?? '(malformed)',
        params: { ...mt?.params },
        location: header('content-location')?.trim(),
        body: b,
      })),
    );
  });
  const parts = await Promise.all(received);
  const datasets: unknown[] = [];
  const bulk = new Map<string, BulkPart[]>();
  for (const p of parts) {
    if (JSON_TYPES.has(p.mediaType)) {
      let json: unknown;
      try {
        json = JSON.parse(p.body.toString('utf8'));
      } catch (err) {
        throw new PorticoError('BAD_REQUEST', `metadata part ${p.index} is not valid JSON (${(err as Error).message})`);
      }
      // PS3.18 §F.2: an array of data sets; a lone data set object is read as an array of one.
      if (Array.isArray(json)) datasets.push(...(json as unknown[]));
      else datasets.push(json);
    } else if (p.location === undefined || p.location === '') {
      ctx.log.info({ part: p.index, mediaType: p.mediaType }, 'STOW-RS bulk data part without Content-Location ignored');
    } else {
      const list = bulk.get(p.location) ?? [];
      list.push({ mediaType: { type: p.mediaType, params: p.params }, body: p.body });
      bulk.set(p.location, list);
    }
  }
  if (parts.length > 0 && datasets.length === 0) throw new PorticoError('BAD_REQUEST', 'the metadata + bulk data request has no application/dicom+json part');

  const outcomes: PartOutcome[] = [];
  const used = new Set<string>();
  for (const [i, ds] of datasets.entries()) {
    let built;
    try {
      built = buildInstance(ds, bulk);
    } catch (err) {
      const error = toPorticoError(err, 'CANNOT_UNDERSTAND');
      ctx.log.info({ dataset: i + 1, code: error.code, reason: error.message }, 'STOW-RS data set failed');
      outcomes.push({ ok: false, ...datasetUids(ds), error });
      continue;
    }
    for (const u of built.used) used.add(u);
    // The same path as an application/dicom part: staging put, parse, checks, enqueue, acknowledgement.
    outcomes.push(await storePart(ctx, { index: i + 1, headers: { 'content-type': 'application/dicom' }, body: Readable.from([built.bytes]) }));
  }
  const unused = [...bulk.keys()].filter((k) => !used.has(k)).length;
  if (unused > 0) ctx.log.info({ unused }, 'STOW-RS bulk data parts no data set refers to were ignored');
  return { outcomes, result };
}

export function stowStatus(outcomes: readonly PartOutcome[]): number {
  const ok = outcomes.filter((o) => o.ok).length;
  if (ok === outcomes.length) return 200;
  return ok === 0 ? 409 : 202;
}

export async function stowRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const root = deps.config.http.dicomwebRoot;
  // Hand every request body through untouched: the multipart stream is parsed in the handler. Only in
  // this plugin's scope, so other routes keep Fastify's parsers.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const handler = async (req: FastifyRequest<{ Params: { study?: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const started = process.hrtime.bigint();
    const studyFromUrl = req.params.study;
    requireDicomJson(parseAccept(req.headers.accept));
    if (studyFromUrl !== undefined && !isValidUid(studyFromUrl)) {
      throw new PorticoError('BAD_REQUEST', 'the Study Instance UID in the URL is not a valid UID');
    }
    const { boundary, rootType } = parseStowContentType(req.headers['content-type']);
    const max = deps.config.http.stowMaxBytes;
    const jsonForm = rootType === 'application/dicom+json';
    const tooLarge = (what: string): PorticoError =>
      jsonForm && max > JSON_FORM_MAX_BYTES
        ? new PorticoError(
            'PAYLOAD_TOO_LARGE',
            `${what} exceeds ${JSON_FORM_MAX_BYTES} bytes, the limit for metadata + bulk data requests (held in memory); send large instances as application/dicom (limit ${max} bytes, PORTICO_STOW_MAX_BYTES)`,
          )
        : new PorticoError('PAYLOAD_TOO_LARGE', `${what} exceeds the STOW-RS limit of ${max} bytes (PORTICO_STOW_MAX_BYTES); send fewer instances per request`);
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > (jsonForm ? Math.min(max, JSON_FORM_MAX_BYTES) : max)) throw tooLarge(`the request body of ${declared} bytes`);
    const raw = req.body as Readable | undefined;
    if (!raw || typeof (raw as Partial<Readable>)[Symbol.asyncIterator] !== 'function') {
      throw new PorticoError('BAD_REQUEST', 'STOW-RS request without a body');
    }
    const body = flowingChunks(raw);

    const log = req.log;
    const ctx: PartContext = { deps, log, studyFromUrl, rootType, traceparent: traceIdOf(req) ? (req.headers['traceparent'] as string) : undefined };
    const pending: Array<Promise<PartOutcome>> = [];
    let result: ReadMultipartResult;
    let outcomes: PartOutcome[];
    try {
      if (jsonForm) {
        ({ result, outcomes } = await storeMetadataAndBulk(ctx, body, { boundary, maxBytes: Math.min(max, JSON_FORM_MAX_BYTES) }));
      } else {
        result = await readMultipart(body, { boundary, maxBytes: max }, (part) => pending.push(storePart(ctx, part)));
        outcomes = await Promise.all(pending);
      }
    } catch (err) {
      // The parts received so far finish (their outcome is settled either way) before we answer.
      const earlier = await Promise.all(pending);
      const acked = earlier.filter((o) => o.ok).length;
      log.warn({ parts: earlier.length, enqueued: acked, err: (err as Error).message }, 'STOW-RS request broke off');
      const over = err instanceof PorticoError && err.code === 'PAYLOAD_TOO_LARGE';
      if (over) reply.header('connection', 'close');
      // Anything else came from the request stream itself (client gone, connection reset): nobody to tell.
      const problem = over
        ? tooLarge('the request body')
        : err instanceof PorticoError
          ? err
          : new PorticoError('BAD_REQUEST', `the request body could not be read (${(err as Error).message})`);
      return sendProblem(reply, req, problem, acked > 0 ? { enqueuedBeforeFailure: acked } : {});
    }
    if (outcomes.length === 0)
      throw new PorticoError(
        'BAD_REQUEST',
        result.complete
          ? jsonForm
            ? 'the metadata holds no data sets'
            : 'the multipart request holds no parts'
          : 'no multipart parts found (wrong boundary?)',
      );

    const status = stowStatus(outcomes);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    log.info({ parts: outcomes.length, stored: outcomes.filter((o) => o.ok).length, bytes: result.bytes, ms: Math.round(ms), status }, 'STOW-RS done');
    return reply
      .code(status)
      .type('application/dicom+json')
      .send(stowResponse(serviceBase(req, root), studyFromUrl, outcomes));
  };

  app.post(`${root}/studies`, handler);
  app.post<{ Params: { study: string } }>(`${root}/studies/:study`, handler);
}
