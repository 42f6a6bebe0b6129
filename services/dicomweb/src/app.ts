/**
 * The DICOMweb HTTP application: Fastify with the STOW-RS, QIDO-RS, WADO-RS and health routes, the OHIF
 * viewer at /viewer when switched on, and the problem+json error handler. No listen here (tests use `app.inject()`; main.ts listens).
 *
 * Logging: Fastify's own per-request lines would log the URL, and a QIDO URL carries matching values
 * (`PatientName=…`). They are off; one line per request logs method, path without query string, status
 * and time.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { DicomwebDeps } from './deps.ts';
import { installProblemHandlers } from './problem.ts';
import { healthRoutes } from './routes/health.ts';
import { qidoRoutes } from './routes/qido-rs.ts';
import { renderedRoutes } from './routes/rendered.ts';
import { stowRoutes } from './routes/stow-rs.ts';
import { viewerRoutes } from './routes/viewer.ts';
import { wadoRoutes } from './routes/wado-rs.ts';
import { wadoUriRoutes } from './routes/wado-uri.ts';

export type { DicomwebDeps } from './deps.ts';

export async function buildApp(deps: DicomwebDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log,
    logController: new LogController({ disableRequestLogging: true }),
    // RetrieveURL and BulkDataURI are built from X-Forwarded-Proto/Host behind an ingress.
    trustProxy: true,
    // UIDs are at most 64 characters, frame lists can be long.
    routerOptions: { maxParamLength: 2048 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  }) as unknown as FastifyInstance;

  installProblemHandlers(app);
  app.addHook('onResponse', async (req, reply) => {
    const path = req.url.split('?')[0];
    req.log.info({ method: req.method, path, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  await app.register(async (scope) => healthRoutes(scope, deps));
  await app.register(async (scope) => stowRoutes(scope, deps));
  await app.register(async (scope) => qidoRoutes(scope, deps));
  await app.register(async (scope) => wadoRoutes(scope, deps));
  await app.register(async (scope) => renderedRoutes(scope, deps));
  await app.register(async (scope) => wadoUriRoutes(scope, deps));
  if (deps.viewer) await app.register(async (scope) => viewerRoutes(scope, deps));
  return app;
}
