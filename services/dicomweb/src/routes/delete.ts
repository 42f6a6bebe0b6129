/**
 * DELETE of a study, a series or an instance (`{root}/studies/{s}[/series/{se}[/instances/{i}]]`): not
 * part of PS3.18, but what archives offer (dcm4chee) and what curating users need. Index rows go first,
 * in one transaction (see @portico/db deleteInstances); then the stored objects. 204 when something was
 * deleted, 404 when nothing matched, 405 when switched off (PORTICO_HTTP_DELETE_ENABLED=false).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { deleteInstances } from '@portico/db';
import { isValidUid } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';

type Params = { study: string; series?: string; instance?: string };

export async function deleteRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const root = deps.config.http.dicomwebRoot;
  const handler = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply): Promise<FastifyReply> => {
    if (!deps.config.http.deleteEnabled) throw new PorticoError('METHOD_NOT_ALLOWED', 'DELETE is switched off on this server (PORTICO_HTTP_DELETE_ENABLED)');
    const { study, series, instance } = req.params;
    for (const uid of [study, series, instance])
      if (uid !== undefined && !isValidUid(uid)) throw new PorticoError('BAD_REQUEST', 'a UID in the path is not a valid UID');
    const result = await deleteInstances(deps.db, {
      studyInstanceUid: study,
      ...(series !== undefined ? { seriesInstanceUid: series } : {}),
      ...(instance !== undefined ? { sopInstanceUid: instance } : {}),
    });
    if (result.instances === 0) throw new PorticoError('NOT_FOUND', 'no stored instance matches');
    let left = 0;
    for (const key of result.objectKeys) {
      await deps.store.delete(key).catch((err: unknown) => {
        left++;
        req.log.warn({ objectKey: key, err: (err as Error).message }, 'deleted instance: its object could not be removed');
      });
    }
    req.log.info({ study, series, instance, instances: result.instances, objectsLeft: left }, 'deleted');
    return reply.code(204).send();
  };
  app.delete<{ Params: Params }>(`${root}/studies/:study`, handler);
  app.delete<{ Params: Params }>(`${root}/studies/:study/series/:series`, handler);
  app.delete<{ Params: Params }>(`${root}/studies/:study/series/:series/instances/:instance`, handler);
}
