import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { installProblemHandlers, traceIdOf } from './problem.ts';

async function app() {
  const a = Fastify({ logger: false });
  installProblemHandlers(a);
  a.get('/portico', async () => {
    throw new PorticoError('NOT_ACCEPTABLE', 'no xml here');
  });
  a.get('/boom', async () => {
    throw new Error('password=hunter2 at /secret/path');
  });
  a.post('/json', async (req) => req.body);
  await a.ready();
  return a;
}

describe('problem+json', () => {
  it('projects a PorticoError through its HTTP status, with the trace id of a traceparent', async () => {
    const a = await app();
    const res = await a.inject({ url: '/portico', headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
    expect(res.statusCode).toBe(406);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toEqual({
      type: 'urn:portico:problem:not-acceptable',
      title: 'Not acceptable',
      status: 406,
      detail: 'no xml here',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    });
  });

  it('unknown errors are 500 without internals', async () => {
    const a = await app();
    const res = await a.inject({ url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('hunter2');
    expect(res.json()).toMatchObject({ status: 500, detail: 'internal error' });
  });

  it("Fastify's own client errors and unknown routes are problem+json too", async () => {
    const a = await app();
    const bad = await a.inject({ method: 'POST', url: '/json', payload: '{nope', headers: { 'content-type': 'application/json' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    const missing = await a.inject({ url: '/nowhere?PatientName=Doe' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ status: 404, title: 'Not found' });
    expect(missing.json().detail).not.toContain('Doe');
  });

  it('ignores malformed and all-zero traceparents', () => {
    const req = (tp: string) => ({ headers: { traceparent: tp } }) as never;
    expect(traceIdOf(req('garbage'))).toBeUndefined();
    expect(traceIdOf(req('00-00000000000000000000000000000000-00f067aa0ba902b7-01'))).toBeUndefined();
  });
});
