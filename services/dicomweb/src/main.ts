/**
 * Starts the DICOMweb service on config.http.host:port. The composition root (services/portico) opens
 * the backends and passes them in; this file only listens and stops.
 *
 * Shutdown: `close()` stops accepting connections, answers 503 to requests arriving on kept-alive
 * connections, closes idle ones and resolves when in-flight requests (a STOW-RS upload, a WADO-RS
 * download) have finished. The caller bounds it with the shutdown grace period (runShutdown).
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.ts';
import type { DicomwebDeps } from './deps.ts';

export interface RunningDicomweb {
  readonly app: FastifyInstance;
  /** `http://host:port` actually bound (port 0 resolved). */
  readonly address: string;
  close(): Promise<void>;
}

export async function startDicomweb(deps: DicomwebDeps): Promise<RunningDicomweb> {
  const app = await buildApp(deps);
  const address = await app.listen({ host: deps.config.http.host, port: deps.config.http.port });
  deps.log.info({ address, root: deps.config.http.dicomwebRoot }, 'DICOMweb listening');
  return {
    app,
    address,
    close: async () => {
      // server.close() only closes the connections idle at that moment; a keep-alive connection whose
      // in-flight request finishes later would hold the close until its keep-alive timeout (72 s).
      const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
    },
  };
}
