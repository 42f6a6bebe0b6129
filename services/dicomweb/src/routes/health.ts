/**
 * `/livez`: the process answers (200, always). `/readyz`: 200 only when the index, the object store and
 * the queue all answer within {@link PROBE_TIMEOUT_MS}; else 503 problem+json naming those that did not,
 * so a load balancer stops sending work that would only fail with "out of resources".
 */
import type { FastifyInstance } from 'fastify';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';
import { sendProblem } from '../problem.ts';
import { exportMetrics } from './admin-export.ts';

export const PROBE_TIMEOUT_MS = 2000;

function probe(name: string, fn: () => Promise<unknown>): Promise<{ name: string; ok: boolean; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  return Promise.race([fn(), timeout])
    .then(() => ({ name, ok: true }))
    .catch((err: unknown) => ({ name, ok: false, error: err instanceof Error ? err.message : String(err) }))
    .finally(() => clearTimeout(timer));
}

export async function healthRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  app.get('/livez', async (_req, reply) => reply.code(200).send({ status: 'ok' }));
  // Prometheus text; per-destination export gauges read from the index (the same in every process).
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await exportMetrics(deps)));
  app.get('/readyz', async (req, reply) => {
    const results = await Promise.all([
      probe('database', () => deps.db.ping()),
      probe('objectStore', () => deps.store.ping()),
      probe('queue', () => deps.queues.ping()),
    ]);
    const failed = results.filter((r) => !r.ok);
    if (failed.length === 0) return reply.code(200).send({ status: 'ready', checks: Object.fromEntries(results.map((r) => [r.name, 'ok'])) });
    req.log.warn({ failed: failed.map((f) => ({ name: f.name, error: f.error })) }, 'not ready');
    return sendProblem(reply, req, new PorticoError('OUT_OF_RESOURCES', `not ready: ${failed.map((f) => f.name).join(', ')} did not answer`), {
      failed: failed.map((f) => f.name),
    });
  });
}
