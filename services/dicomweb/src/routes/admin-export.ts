/**
 * The store-and-forward part of the admin API (same bearer token as the rest of /admin):
 *
 * - `GET /admin/destinations` — every export destination (DIMSE nodes and DICOMweb destinations, secrets
 *   masked) with its deliveries by status, queue depth, age of the oldest waiting delivery and delivery
 *   latency;
 * - `PUT /admin/dicomweb-destinations/{name}`, `DELETE …` — DICOMweb destinations kept in the database;
 * - `GET /admin/exports?destination=&status=&study=&sop=&limit=&after=` — deliveries, keyset-paged;
 * - `POST /admin/exports/retry|cancel` with `{destination?, studyInstanceUid?, sopInstanceUid?, status?}`
 *   (at least one key) — retry failed/dead/cancelled deliveries, cancel unfinished ones;
 * - `POST /admin/exports/replay` with `{destination, studyInstanceUid | sopInstanceUid}` — send again;
 * - `GET /admin/status/{uid}` — the journey of an instance, or of each instance of a study or series:
 *   received → stored → routed → delivered/failed per destination, with times, and the storage
 *   commitment outcome where one was asked for;
 * - `POST /admin/route/explain` — which destinations an instance would go to and which rule decided each:
 *   the body is a DICOM file (`application/dicom`) or `{sopInstanceUid}` of a stored instance; the
 *   context (`source`, `callingAeTitle`, `calledAeTitle`) comes from the query string or the JSON body.
 *
 * `GET /metrics` (no token: no patient data) serves the per-destination gauges in Prometheus text format.
 */
import type { FastifyInstance } from 'fastify';
import { loadNodesFile, parseDicomwebDestination, type DicomwebDestination } from '@portico/config';
import {
  cancelExports,
  deleteDbDicomwebDestination,
  destinationStats,
  EXPORT_STATUSES,
  instanceRoutingInput,
  instanceJourney,
  listDbDicomwebDestinations,
  listExports,
  putDbDicomwebDestination,
  replayExports,
  retryExports,
  type ExportFilter,
  type ExportStatus,
} from '@portico/db';
import { parseInstance, DicomParseError, type DicomJsonDataset } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';

const STATUS_SET = new Set<string>(EXPORT_STATUSES);

function maskDicomweb(d: DicomwebDestination): Record<string, unknown> {
  return { ...d, ...(d.authorization ? { authorization: '********' } : {}), ...(d.bearerToken ? { bearerToken: '********' } : {}) };
}

function filterOf(body: unknown): ExportFilter {
  const b = (body ?? {}) as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = b[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new PorticoError('BAD_REQUEST', `${k}: a non-empty string`);
    return v;
  };
  const status = b['status'] === undefined ? undefined : [b['status']].flat();
  if (status && !status.every((s) => typeof s === 'string' && STATUS_SET.has(s)))
    throw new PorticoError('BAD_REQUEST', `status: one or more of ${EXPORT_STATUSES.join(', ')}`);
  const f: ExportFilter = {
    ...(str('destination') ? { destination: str('destination')! } : {}),
    ...(str('studyInstanceUid') ? { studyInstanceUid: str('studyInstanceUid')! } : {}),
    ...(str('sopInstanceUid') ? { sopInstanceUid: str('sopInstanceUid')! } : {}),
    ...(status ? { status: status as ExportStatus[] } : {}),
  };
  if (!f.destination && !f.studyInstanceUid && !f.sopInstanceUid && !f.status)
    throw new PorticoError('BAD_REQUEST', 'give at least one of destination, studyInstanceUid, sopInstanceUid, status');
  return f;
}

export async function exportAdminRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const policy = { attempts: deps.config.export.maxAttempts, backoffMs: deps.config.export.backoffMs };

  app.get('/admin/destinations', async () => {
    const file = loadNodesFile(deps.config.dimse.nodesFile);
    const stats = new Map((await destinationStats(deps.db)).map((s) => [s.destination, s]));
    const inFile = new Set(file.dicomweb.map((d) => d.name));
    const web = [
      ...file.dicomweb.map((d) => ({ kind: 'dicomweb', source: 'file', ...maskDicomweb(d) })),
      ...(await listDbDicomwebDestinations(deps.db))
        .filter((r) => !inFile.has(r.name))
        .flatMap((r) => {
          try {
            return [{ kind: 'dicomweb', source: 'api', ...maskDicomweb(parseDicomwebDestination({ ...r.definition, name: r.name })) }];
          } catch {
            return [];
          }
        }),
    ];
    const named = [...file.nodes.map((n) => ({ kind: 'dimse', name: n.aeTitle, ...n })), ...web] as Array<Record<string, unknown> & { name: string }>;
    // Destinations the routes named that are not (or no longer) configured still show their deliveries.
    for (const name of stats.keys()) if (!named.some((d) => d.name === name)) named.push({ kind: 'unknown', name });
    return Promise.all(
      named.map(async (d) => {
        const queue = await deps.queues.exportCounts(d.name).catch(() => undefined);
        return { ...d, deliveries: stats.get(d.name) ?? null, queue: queue ?? null };
      }),
    );
  });

  app.put<{ Params: { name: string } }>('/admin/dicomweb-destinations/:name', async (req, reply) => {
    let d: DicomwebDestination;
    try {
      d = parseDicomwebDestination({ ...(req.body as object), name: req.params.name });
    } catch (err) {
      throw new PorticoError('BAD_REQUEST', (err as Error).message);
    }
    const file = loadNodesFile(deps.config.dimse.nodesFile);
    if (file.dicomweb.some((x) => x.name === d.name) || file.nodes.some((n) => n.aeTitle === d.name))
      throw new PorticoError('CONFLICT', `${d.name} is defined in the nodes file; change it there`);
    const { name: _name, ...definition } = d;
    const outcome = await putDbDicomwebDestination(deps.db, d.name, definition);
    req.log.info({ destination: d.name, outcome }, 'admin: DICOMweb destination saved');
    return reply.code(outcome === 'created' ? 201 : 200).send(maskDicomweb(d));
  });

  app.delete<{ Params: { name: string } }>('/admin/dicomweb-destinations/:name', async (req, reply) => {
    if (!(await deleteDbDicomwebDestination(deps.db, req.params.name)))
      throw new PorticoError('NOT_FOUND', `no DICOMweb destination ${req.params.name} added here`);
    return reply.code(204).send();
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/admin/exports', async (req) => {
    const q = req.query;
    const status = q['status']?.split(',');
    if (status && !status.every((s) => STATUS_SET.has(s))) throw new PorticoError('BAD_REQUEST', `status: one or more of ${EXPORT_STATUSES.join(', ')}`);
    const limit = Math.min(Number(q['limit'] ?? 100) || 100, 10_000);
    if (q['after'] !== undefined && !/^\d+$/.test(q['after']))
      throw new PorticoError('BAD_REQUEST', 'after: the exportPk of the last row of the previous page');
    return listExports(
      deps.db,
      {
        ...(q['destination'] ? { destination: q['destination'] } : {}),
        ...(q['study'] ? { studyInstanceUid: q['study'] } : {}),
        ...(q['sop'] ? { sopInstanceUid: q['sop'] } : {}),
        ...(status ? { status: status as ExportStatus[] } : {}),
      },
      { limit, ...(q['after'] ? { after: q['after'] } : {}) },
    );
  });

  app.post('/admin/exports/retry', async (req) => {
    const refs = await retryExports(deps.db, filterOf(req.body));
    await deps.queues.enqueueExports(refs, policy);
    req.log.info({ count: refs.length }, 'admin: deliveries retried');
    return { retried: refs.length };
  });

  app.post('/admin/exports/cancel', async (req) => {
    const refs = await cancelExports(deps.db, filterOf(req.body));
    await deps.queues.removeExports(refs);
    req.log.info({ count: refs.length }, 'admin: deliveries cancelled');
    return { cancelled: refs.length };
  });

  app.post('/admin/exports/replay', async (req) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    const destination = b['destination'];
    if (typeof destination !== 'string' || !destination) throw new PorticoError('BAD_REQUEST', 'destination: required');
    const study = typeof b['studyInstanceUid'] === 'string' ? b['studyInstanceUid'] : undefined;
    const sop = typeof b['sopInstanceUid'] === 'string' ? b['sopInstanceUid'] : undefined;
    if (!study && !sop) throw new PorticoError('BAD_REQUEST', 'give studyInstanceUid or sopInstanceUid');
    const refs = await replayExports(deps.db, { ...(study ? { studyInstanceUid: study } : {}), ...(sop ? { sopInstanceUid: sop } : {}) }, destination);
    if (refs.length === 0) throw new PorticoError('NOT_FOUND', 'no stored instance matches');
    await deps.queues.enqueueExports(refs, policy);
    req.log.info({ count: refs.length, destination }, 'admin: deliveries replayed');
    return { replayed: refs.length };
  });

  app.get<{ Params: { uid: string } }>('/admin/status/:uid', async (req) => {
    const journey = await instanceJourney(deps.db, req.params.uid);
    if (journey.length === 0) throw new PorticoError('NOT_FOUND', `no instance, series or study ${req.params.uid}`);
    return journey.map((j) => ({
      sopInstanceUid: j.sopInstanceUid,
      studyInstanceUid: j.studyInstanceUid,
      seriesInstanceUid: j.seriesInstanceUid,
      source: j.source,
      callingAeTitle: j.callingAeTitle,
      calledAeTitle: j.calledAeTitle,
      received: j.receivedAt,
      stored: j.storedAt,
      destinations: j.exports.map((e) => ({
        destination: e.destination,
        rule: e.rule,
        status: e.status,
        routed: e.queuedAt,
        lastAttempt: e.lastAttemptAt,
        delivered: e.deliveredAt,
        attempts: e.attempts,
        lastError: e.lastError,
        generation: e.generation,
        commitment: e.commitmentStatus
          ? {
              status: e.commitmentStatus,
              transactionUid: e.commitmentTransactionUid,
              requested: e.commitmentRequestedAt,
              answered: e.commitmentAnsweredAt,
              error: e.commitmentError,
              resends: e.commitmentResends,
            }
          : null,
      })),
    }));
  });

  app.addContentTypeParser('application/dicom', { parseAs: 'buffer', bodyLimit: deps.config.http.stowMaxBytes }, (_req, body, done) => done(null, body));
  app.post<{ Querystring: Record<string, string | undefined> }>('/admin/route/explain', async (req) => {
    const file = deps.config.export.routesFile;
    if (!file) throw new PorticoError('CONFLICT', 'no routes file is configured (PORTICO_ROUTES_FILE)');
    const { loadRoutes, evaluateRoutes, SOURCES } = await import('@portico/routing');
    let routes;
    try {
      routes = loadRoutes(file);
    } catch (err) {
      throw new PorticoError('CONFLICT', `the routes file is invalid: ${(err as Error).message}`);
    }
    const body = req.body;
    const params = { ...req.query, ...(Buffer.isBuffer(body) ? {} : ((body ?? {}) as Record<string, string | undefined>)) };
    let json: DicomJsonDataset;
    let source = params['source'];
    if (Buffer.isBuffer(body)) {
      try {
        json = (await parseInstance([body])).json as DicomJsonDataset;
      } catch (err) {
        if (err instanceof DicomParseError) throw new PorticoError('BAD_REQUEST', `not a DICOM file: ${err.message}`);
        throw err;
      }
    } else {
      const sop = params['sopInstanceUid'];
      if (!sop) throw new PorticoError('BAD_REQUEST', 'send a DICOM file (application/dicom) or {"sopInstanceUid": …}');
      const row = await instanceRoutingInput(deps.db, sop);
      if (!row) throw new PorticoError('NOT_FOUND', `no instance ${sop}`);
      json = row.json as DicomJsonDataset;
      source ??= row.source;
      params['callingAeTitle'] ??= row.callingAeTitle ?? undefined;
      params['calledAeTitle'] ??= row.calledAeTitle ?? undefined;
    }
    source ??= 'dimse';
    if (!(SOURCES as readonly string[]).includes(source)) throw new PorticoError('BAD_REQUEST', `source: one of ${SOURCES.join(', ')}`);
    return evaluateRoutes(routes, json, {
      source: source as 'dimse',
      ...(params['callingAeTitle'] ? { callingAeTitle: params['callingAeTitle'] } : {}),
      ...(params['calledAeTitle'] ? { calledAeTitle: params['calledAeTitle'] } : {}),
    });
  });
}

/** Prometheus text for the per-destination export gauges. */
export async function exportMetrics(deps: RouteDeps): Promise<string> {
  const stats = await destinationStats(deps.db);
  const label = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const lines: string[] = ['# HELP portico_export_deliveries Deliveries (instance, destination) by status.', '# TYPE portico_export_deliveries gauge'];
  for (const s of stats)
    for (const [status, n] of Object.entries(s.counts)) lines.push(`portico_export_deliveries{destination="${label(s.destination)}",status="${status}"} ${n}`);
  lines.push(
    '# HELP portico_export_queue_depth Deliveries not finished yet (queued, sending, failed awaiting retry).',
    '# TYPE portico_export_queue_depth gauge',
  );
  for (const s of stats)
    lines.push(`portico_export_queue_depth{destination="${label(s.destination)}"} ${s.counts.queued + s.counts.sending + s.counts.failed}`);
  lines.push('# HELP portico_export_oldest_age_seconds Age of the oldest unfinished delivery.', '# TYPE portico_export_oldest_age_seconds gauge');
  for (const s of stats) lines.push(`portico_export_oldest_age_seconds{destination="${label(s.destination)}"} ${s.oldestUnfinishedAgeSeconds ?? 0}`);
  lines.push(
    '# HELP portico_export_delivery_latency_seconds Routed-to-delivered time over the last hour.',
    '# TYPE portico_export_delivery_latency_seconds gauge',
  );
  for (const s of stats) {
    if (s.latencyP50Seconds !== null)
      lines.push(`portico_export_delivery_latency_seconds{destination="${label(s.destination)}",quantile="0.5"} ${s.latencyP50Seconds}`);
    if (s.latencyP95Seconds !== null)
      lines.push(`portico_export_delivery_latency_seconds{destination="${label(s.destination)}",quantile="0.95"} ${s.latencyP95Seconds}`);
  }
  lines.push(
    '# HELP portico_export_commitments Deliveries by storage commitment outcome (requested, committed, failed, refused, timeout).',
    '# TYPE portico_export_commitments gauge',
  );
  for (const s of stats)
    if (Object.values(s.commitments).some((n) => n > 0))
      for (const [outcome, n] of Object.entries(s.commitments))
        lines.push(`portico_export_commitments{destination="${label(s.destination)}",outcome="${outcome}"} ${n}`);
  lines.push('# HELP portico_export_delivered_last_hour Deliveries completed in the last hour.', '# TYPE portico_export_delivered_last_hour gauge');
  for (const s of stats) lines.push(`portico_export_delivered_last_hour{destination="${label(s.destination)}"} ${s.deliveredLastHour}`);
  return `${lines.join('\n')}\n`;
}
