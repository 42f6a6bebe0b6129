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
import { adminRoutes } from './routes/admin.ts';
import { deleteRoutes } from './routes/delete.ts';
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
  const origins = deps.config.http.corsOrigins
    ?.split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  if (origins && origins.length > 0) {
    // A viewer on another origin (PS3.18 §8.9 leaves CORS to the server): what DICOMweb clients send and read.
    const { default: cors } = await import('@fastify/cors');
    await app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'],
      allowedHeaders: ['Accept', 'Authorization', 'Content-Type', 'If-None-Match', 'Range', 'traceparent'],
      exposedHeaders: ['Content-Type', 'Content-Length', 'Content-Range', 'ETag', 'Warning', 'Location'],
      maxAge: 600,
    });
  }
  if (deps.config.http.compress) {
    const { default: compress } = await import('@fastify/compress');
    await app.register(compress, {
      global: true,
      // Small answers go as they are (http.compressMinBytes, 32 KiB by default): gzip of a 25-study QIDO page
      // (18 KiB -> 2.6 KiB) cost ~0.35 ms of server CPU and ~0.5 ms of latency per request on loopback
      // (p50 1.8-2.3 ms identity vs 2.3-2.9 ms gzip, 4 x 2000 requests alternated), more than sending
      // 15 KiB more takes on any LAN.
      threshold: deps.config.http.compressMinBytes,
      // Bodies up to 64 KiB are gzipped in one synchronous call: a zlib stream per response cost ~0.5 ms of
      // CPU in set-up alone (the plugin's default on 2 cores is 8 KiB).
      syncThreshold: 64 * 1024,
      encodings: ['gzip', 'deflate'],
      // Level 3 instead of zlib's 6: a 25-study QIDO page (18 KiB of JSON) takes 47 instead of 108 µs to
      // compress for 2.6 instead of 2.3 KiB on the wire; the client inflates either in ~35 µs.
      zlibOptions: { level: 3 },
      // JSON and the viewer's text assets; never DICOM, multipart bodies or images (incompressible or huge).
      customTypes: /^(application\/(dicom\+json|json|problem\+json|javascript)|text\/)/,
    });
  }
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
  await app.register(async (scope) => deleteRoutes(scope, deps));
  await app.register(async (scope) => adminRoutes(scope, deps));
  if (deps.viewer) await app.register(async (scope) => viewerRoutes(scope, deps));
  return app;
}
