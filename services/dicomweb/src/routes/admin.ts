/**
 * The admin API (bearer token `PORTICO_ADMIN_TOKEN`; without one it answers 404, as if absent):
 *
 * - `GET /admin/nodes` — every known DICOM node, with where it comes from (`file` or `api`);
 * - `PUT /admin/nodes/{aeTitle}` — add or replace a node (`{host, port, tls?, services?}`), 201/200;
 * - `DELETE /admin/nodes/{aeTitle}` — remove a node added here, 204; 404 when absent.
 *
 * Export destinations, deliveries, journeys and route explanations: see admin-export.ts.
 *
 * Nodes of the nodes file are read-only here (409): the file is the configuration an operator manages
 * by hand. The dimse role picks changes up within `dimse.nodesReloadMs`.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { loadNodes, nodeFromDbRow, nodeOptions, parseNode } from '@portico/config';
import { deleteDbNode, listDbNodes, putDbNode } from '@portico/db';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';
import { exportAdminRoutes } from './admin-export.ts';

function authorised(req: FastifyRequest, token: string): boolean {
  const header = req.headers.authorization ?? '';
  const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export async function adminRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const token = deps.config.http.adminToken;
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/admin/')) return;
    if (!token) throw new PorticoError('NOT_FOUND', 'no admin API on this server (PORTICO_ADMIN_TOKEN is unset)');
    if (!authorised(req, token)) {
      reply.header('www-authenticate', 'Bearer');
      throw new PorticoError('UNAUTHORIZED', 'the admin API needs the bearer token');
    }
  });
  const fileNodes = (): string[] => loadNodes(deps.config.dimse.nodesFile).map((n) => n.aeTitle);

  app.get('/admin/nodes', async () => {
    const file = loadNodes(deps.config.dimse.nodesFile).map((n) => ({ ...n, source: 'file' }));
    const inFile = new Set(file.map((n) => n.aeTitle));
    const api = (await listDbNodes(deps.db))
      .filter((n) => !inFile.has(n.aeTitle))
      .map((n) => {
        try {
          return { ...nodeFromDbRow(n), source: 'api' };
        } catch (err) {
          return { aeTitle: n.aeTitle, source: 'api', invalid: (err as Error).message };
        }
      });
    return [...file, ...api];
  });

  app.put<{ Params: { ae: string } }>('/admin/nodes/:ae', async (req, reply) => {
    let node;
    try {
      node = parseNode({ ...(req.body as object), aeTitle: req.params.ae });
    } catch (err) {
      throw new PorticoError('BAD_REQUEST', (err as Error).message);
    }
    if (fileNodes().includes(node.aeTitle)) throw new PorticoError('CONFLICT', `${node.aeTitle} is defined in the nodes file; change it there`);
    const outcome = await putDbNode(deps.db, {
      aeTitle: node.aeTitle,
      host: node.host,
      port: node.port,
      tls: node.tls,
      services: [...node.services],
      options: nodeOptions(node),
    });
    req.log.info({ aeTitle: node.aeTitle, outcome }, 'admin: node saved');
    return reply.code(outcome === 'created' ? 201 : 200).send(node);
  });

  app.delete<{ Params: { ae: string } }>('/admin/nodes/:ae', async (req, reply) => {
    if (fileNodes().includes(req.params.ae)) throw new PorticoError('CONFLICT', `${req.params.ae} is defined in the nodes file; change it there`);
    if (!(await deleteDbNode(deps.db, req.params.ae))) throw new PorticoError('NOT_FOUND', `no node ${req.params.ae}`);
    req.log.info({ aeTitle: req.params.ae }, 'admin: node deleted');
    return reply.code(204).send();
  });
  await exportAdminRoutes(app, deps);
}
