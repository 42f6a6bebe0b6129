/**
 * Every non-2xx answer (except STOW-RS's own PS3.18 response) is RFC 9457 `application/problem+json`:
 * `{type, title, status, detail, traceId?}`. A {@link PorticoError} is projected through its code's HTTP
 * status; Fastify's own client errors (unsupported content type, body too large, bad URL) keep their
 * status; anything else is a 500 that says nothing about internals (the log has the stack).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PorticoError, type ErrorCode } from '@portico/errors';

export const PROBLEM_JSON = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  traceId?: string;
  [extra: string]: unknown;
}

/** Stable problem type URI per error code. */
export function problemType(code: ErrorCode): string {
  return `urn:portico:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/** The trace id of a valid W3C `traceparent` header (version 00), else undefined. */
export function traceIdOf(req: FastifyRequest): string | undefined {
  const tp = req.headers['traceparent'];
  const m = typeof tp === 'string' ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(tp.trim()) : null;
  return m && !/^0+$/.test(m[1]!) ? m[1] : undefined;
}

export function problemOf(err: PorticoError, req: FastifyRequest): Problem {
  const traceId = traceIdOf(req);
  return {
    type: problemType(err.code),
    title: err.projection.title,
    status: err.projection.httpStatus,
    detail: err.message,
    ...(traceId ? { traceId } : {}),
  };
}

export function sendProblem(reply: FastifyReply, req: FastifyRequest, err: PorticoError, extra: Record<string, unknown> = {}): FastifyReply {
  const body = { ...problemOf(err, req), ...extra };
  return reply.code(body.status).type(PROBLEM_JSON).send(body);
}

const STATUS_TO_CODE: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  404: 'NOT_FOUND',
  406: 'NOT_ACCEPTABLE',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  503: 'OUT_OF_RESOURCES',
};

/** Installs the error and not-found handlers on `app` (call once on the root instance). */
export function installProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | PorticoError | Error, req, reply) => {
    let err: PorticoError;
    if (error instanceof PorticoError) {
      err = error;
    } else {
      const status = (error as FastifyError).statusCode;
      const code = status !== undefined ? STATUS_TO_CODE[status] : undefined;
      if (status !== undefined && status >= 400 && status < 500) {
        // Fastify's client-error messages name the problem (content type, body size, URL), never data.
        err = new PorticoError(code ?? 'BAD_REQUEST', error.message);
        if (!code) {
          const traceId = traceIdOf(req);
          return reply
            .code(status)
            .type(PROBLEM_JSON)
            .send({ type: 'about:blank', title: 'Client error', status, detail: error.message, ...(traceId ? { traceId } : {}) });
        }
      } else {
        req.log.error({ err: error, reqId: req.id }, 'unhandled error');
        err = new PorticoError('PROCESSING_FAILURE', 'internal error');
        const traceId = traceIdOf(req);
        return reply
          .code(500)
          .type(PROBLEM_JSON)
          .send({
            type: problemType('PROCESSING_FAILURE'),
            title: 'Internal server error',
            status: 500,
            detail: 'internal error',
            ...(traceId ? { traceId } : {}),
          });
      }
    }
    if (err.projection.httpStatus >= 500) req.log.warn({ code: err.code, detail: err.message, reqId: req.id }, 'request failed');
    if (err.code === 'PAYLOAD_TOO_LARGE') reply.header('connection', 'close');
    return sendProblem(reply, req, err);
  });
  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, req, new PorticoError('NOT_FOUND', `no such resource: ${req.method} ${req.url.split('?')[0]}`));
  });
}
