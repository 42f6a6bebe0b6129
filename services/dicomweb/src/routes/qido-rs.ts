/**
 * QIDO-RS: search for studies, series and instances (PS3.18 §10.6).
 *
 * The query parameters become one parameterised SELECT ({@link buildQidoQuery}); each row becomes a DICOM
 * JSON data set with the level's default attributes (PS3.18 Table 6.7.1-2/2a/2b), the computed counts and
 * ModalitiesInStudy, the RetrieveURL, and whatever `includefield` asked for. An unscoped series search
 * also returns the study attributes, an instance search those of the levels above its scope. An empty
 * result is `200 []` (PS3.18 allows 204; viewers handle an empty array better). One row more than the
 * limit is fetched to know whether to send the "additional results" Warning (§8.3.4.4).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';
import { absolutizeBulkDataUris, declareUtf8, el, sortByTag, type DicomJson } from '../dicom-json.ts';
import { parseAccept, requireDicomJson } from '../media-types.ts';
import { instanceUrl, serviceBase, seriesUrl, studyUrl } from '../urls.ts';
import {
  DEFAULT_TAGS,
  TAG,
  buildQidoQuery,
  type Level,
  type QidoInstanceRow as InstanceRow,
  type QidoSeriesRow as SeriesRow,
  type QidoStudyRow as StudyRow,
} from '@portico/db';
import { parseQidoParams, type QidoParams } from '../qido/params.ts';
import { isValidUid } from '@portico/dicom';

type Json = Record<string, unknown>;

function pick(json: Json, tags: Iterable<string>, into: DicomJson = {}): DicomJson {
  for (const t of tags) {
    const v = json[t];
    if (v !== undefined && into[t] === undefined) into[t] = v as DicomJson[string];
  }
  return into;
}

function online(ds: DicomJson): void {
  ds[TAG.InstanceAvailability] = el('CS', ['ONLINE']);
}

export function studyResult(row: StudyRow, p: QidoParams, base: string): DicomJson {
  const ds: DicomJson = p.includeAll ? { ...(row.json as DicomJson) } : pick(row.json, [...DEFAULT_TAGS.study, ...p.includeTags]);
  ds[TAG.StudyInstanceUID] = el('UI', [row.study_instance_uid]);
  ds[TAG.ModalitiesInStudy] = el('CS', row.modalities);
  ds[TAG.NumberOfStudyRelatedSeries] = el('IS', [row.number_of_series]);
  ds[TAG.NumberOfStudyRelatedInstances] = el('IS', [row.number_of_instances]);
  online(ds);
  ds[TAG.RetrieveURL] = el('UR', [studyUrl(base, row.study_instance_uid)]);
  delete ds[TAG.SpecificCharacterSet];
  return sortByTag(declareUtf8(ds));
}

export function seriesResult(row: SeriesRow, p: QidoParams, base: string, studyScoped: boolean): DicomJson {
  const ds: DicomJson = p.includeAll ? { ...(row.json as DicomJson) } : pick(row.json, [...DEFAULT_TAGS.series, ...p.includeTags]);
  pick(row.study_json, [...(studyScoped ? [] : DEFAULT_TAGS.study), ...p.includeTags], ds);
  ds[TAG.StudyInstanceUID] = el('UI', [row.study_instance_uid]);
  ds[TAG.SeriesInstanceUID] = el('UI', [row.series_instance_uid]);
  ds[TAG.NumberOfSeriesRelatedInstances] = el('IS', [row.number_of_instances]);
  online(ds);
  ds[TAG.RetrieveURL] = el('UR', [seriesUrl(base, row.study_instance_uid, row.series_instance_uid)]);
  delete ds[TAG.SpecificCharacterSet];
  return sortByTag(declareUtf8(ds));
}

export function instanceResult(row: InstanceRow, p: QidoParams, base: string, scope: { study: boolean; series: boolean }): DicomJson {
  const url = instanceUrl(base, row.study_instance_uid, row.series_instance_uid, row.sop_instance_uid);
  // row.json is already the requested subset (or everything for includefield=all).
  const ds: DicomJson = absolutizeBulkDataUris({ ...(row.json as DicomJson) }, url);
  pick(row.series_json, [...(scope.series ? [] : DEFAULT_TAGS.series), ...p.includeTags], ds);
  pick(row.study_json, [...(scope.study ? [] : DEFAULT_TAGS.study), ...p.includeTags], ds);
  ds[TAG.StudyInstanceUID] = el('UI', [row.study_instance_uid]);
  ds[TAG.SeriesInstanceUID] = el('UI', [row.series_instance_uid]);
  ds[TAG.SOPInstanceUID] = el('UI', [row.sop_instance_uid]);
  ds[TAG.SOPClassUID] ??= el('UI', [row.sop_class_uid]);
  online(ds);
  ds[TAG.RetrieveURL] = el('UR', [url]);
  delete ds[TAG.SpecificCharacterSet];
  return sortByTag(declareUtf8(ds));
}

export async function qidoRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const root = deps.config.http.dicomwebRoot;
  const limits = { defaultLimit: deps.config.http.qidoDefaultLimit, maxLimit: deps.config.http.qidoMaxLimit };

  const search =
    (level: Level) =>
    async (
      req: FastifyRequest<{ Params: { study?: string; series?: string }; Querystring: Record<string, string | string[]> }>,
      reply: FastifyReply,
    ): Promise<FastifyReply> => {
      requireDicomJson(parseAccept(req.headers.accept));
      const { study, series } = req.params;
      for (const uid of [study, series]) {
        if (uid !== undefined && !isValidUid(uid)) throw new PorticoError('BAD_REQUEST', 'a UID in the URL is not a valid UID');
      }
      const p = parseQidoParams(req.query, limits);
      const base = serviceBase(req, root);
      const scope = { ...(study ? { studyInstanceUid: study } : {}), ...(series ? { seriesInstanceUid: series } : {}) };
      const q = buildQidoQuery({
        level,
        keys: p.keys,
        scope,
        fuzzy: p.fuzzy,
        limit: p.limit + 1,
        offset: p.offset,
        instanceTags: p.includeAll ? 'all' : [...DEFAULT_TAGS.instance, ...p.includeTags],
      });
      // Named: the text of a query shape is parsed once per pooled connection (~0.3 ms of PostgreSQL's time
      // per request for a `limit=25` page), and PostgreSQL may settle on a generic plan where one does as well.
      const res = await deps.db.queryPrepared(q.sql, q.params);
      const more = res.rows.length > p.limit;
      const rows = more ? res.rows.slice(0, p.limit) : res.rows;
      let results: DicomJson[];
      switch (level) {
        case 'study':
          results = rows.map((r) => studyResult(r as StudyRow, p, base));
          break;
        case 'series':
          results = rows.map((r) => seriesResult(r as SeriesRow, p, base, study !== undefined));
          break;
        case 'instance':
          results = rows.map((r) => instanceResult(r as InstanceRow, p, base, { study: study !== undefined, series: series !== undefined }));
          break;
      }
      if (more) {
        const text = p.limitCapped
          ? 'The number of results exceeded the maximum supported by the server. Additional results can be requested.'
          : 'There are additional results that can be requested.';
        reply.header('warning', `299 ${req.host}: "${text}"`);
      }
      return reply.code(200).type('application/dicom+json').send(JSON.stringify(results));
    };

  app.get(`${root}/studies`, search('study'));
  app.get(`${root}/series`, search('series'));
  app.get(`${root}/instances`, search('instance'));
  app.get(`${root}/studies/:study/series`, search('series'));
  app.get(`${root}/studies/:study/instances`, search('instance'));
  app.get(`${root}/studies/:study/series/:series/instances`, search('instance'));
}
