/**
 * DELETE, CORS and compression over the real app (harness: real PostgreSQL, worker, folder store),
 * with synthetic instances stored through STOW-RS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildApp } from './app.ts';
import { loadConfig } from '@portico/config';
import { syntheticInstance, testUid } from '@portico/testing';
import { startHarness, stowBody, type Harness } from './test-support.ts';

const study = testUid('extras-study', 1);
const series = [testUid('extras-series', 1), testUid('extras-series', 2)];
const sop = (se: number, i: number): string => testUid('extras-sop', `${se}.${i}`);

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ 'http.corsOrigins': 'https://viewer.example.org' });
  const parts = [0, 1].flatMap((se) =>
    [0, 1].map((i) =>
      syntheticInstance({
        studyInstanceUid: study,
        seriesInstanceUid: series[se]!,
        sopInstanceUid: sop(se, i),
        rows: 16,
        columns: 16,
        patientName: 'Extras^Test',
      }),
    ),
  );
  const { body, contentType } = stowBody(parts);
  const res = await h.app.inject({
    method: 'POST',
    url: '/dicom-web/studies',
    headers: { 'content-type': contentType, accept: 'application/dicom+json' },
    payload: body,
  });
  expect(res.statusCode, res.body).toBe(200);
  await h.waitForInstances(4);
});

afterAll(async () => {
  await h?.close();
});

const count = async (url: string): Promise<number> => (JSON.parse((await h.app.inject({ method: 'GET', url })).body || '[]') as unknown[]).length;

describe('DELETE', () => {
  it('deletes an instance, then a series, then the study: index rows and objects', async () => {
    const key = (se: number, i: number): string => join(h.objectsDir, 'studies', study, 'series', series[se]!, 'instances', `${sop(se, i)}.dcm`);
    expect(existsSync(key(0, 0))).toBe(true);
    const one = await h.app.inject({ method: 'DELETE', url: `/dicom-web/studies/${study}/series/${series[0]}/instances/${sop(0, 0)}` });
    expect(one.statusCode).toBe(204);
    expect(existsSync(key(0, 0))).toBe(false);
    expect(await count(`/dicom-web/studies/${study}/instances`)).toBe(3);
    expect((await h.app.inject({ method: 'GET', url: `/dicom-web/studies/${study}/series/${series[0]}/instances/${sop(0, 0)}/metadata` })).statusCode).toBe(
      404,
    );

    expect((await h.app.inject({ method: 'DELETE', url: `/dicom-web/studies/${study}/series/${series[0]}` })).statusCode).toBe(204);
    expect(await count(`/dicom-web/studies/${study}/series`)).toBe(1);

    expect((await h.app.inject({ method: 'DELETE', url: `/dicom-web/studies/${study}` })).statusCode).toBe(204);
    expect(await count(`/dicom-web/studies?StudyInstanceUID=${study}`)).toBe(0);
    expect(existsSync(key(1, 1))).toBe(false);
    const again = await h.app.inject({ method: 'DELETE', url: `/dicom-web/studies/${study}` });
    expect(again.statusCode).toBe(404);
    expect(again.headers['content-type']).toContain('application/problem+json');
  });

  it('answers 405 problem+json when switched off, and 400 for a bad UID', async () => {
    const config = loadConfig({ env: {}, overrides: { 'http.deleteEnabled': false } });
    const app = await buildApp({ config, log: h.log, db: h.db, store: h.store, queues: h.queues });
    const res = await app.inject({ method: 'DELETE', url: `/dicom-web/studies/${study}` });
    expect(res.statusCode).toBe(405);
    expect(res.headers['content-type']).toContain('application/problem+json');
    await app.close();
    expect((await h.app.inject({ method: 'DELETE', url: '/dicom-web/studies/not-a-uid' })).statusCode).toBe(400);
  });
});

describe('CORS and compression', () => {
  it('answers a preflight from the configured origin and exposes the headers viewers read', async () => {
    const pre = await h.app.inject({
      method: 'OPTIONS',
      url: '/dicom-web/studies',
      headers: { origin: 'https://viewer.example.org', 'access-control-request-method': 'GET', 'access-control-request-headers': 'accept' },
    });
    expect(pre.statusCode).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('https://viewer.example.org');
    const get = await h.app.inject({ method: 'GET', url: '/dicom-web/studies', headers: { origin: 'https://viewer.example.org' } });
    expect(get.headers['access-control-allow-origin']).toBe('https://viewer.example.org');
    expect(String(get.headers['access-control-expose-headers'])).toMatch(/ETag/i);
    const other = await h.app.inject({ method: 'GET', url: '/dicom-web/studies', headers: { origin: 'https://elsewhere.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('gzips JSON for clients that accept it, and leaves DICOM bodies alone', async () => {
    const parts = Array.from({ length: 40 }, (_, i) =>
      syntheticInstance({
        studyInstanceUid: testUid('gz-study', 1),
        seriesInstanceUid: testUid('gz-series', 1),
        sopInstanceUid: testUid('gz-sop', i),
        rows: 8,
        columns: 8,
      }),
    );
    const { body, contentType } = stowBody(parts);
    expect((await h.app.inject({ method: 'POST', url: '/dicom-web/studies', headers: { 'content-type': contentType }, payload: body })).statusCode).toBe(200);
    await h.waitForInstances(40);
    const url = `/dicom-web/studies/${testUid('gz-study', 1)}/metadata`;
    const zipped = await h.app.inject({ method: 'GET', url, headers: { 'accept-encoding': 'gzip' } });
    expect(zipped.statusCode).toBe(200);
    expect(zipped.headers['content-encoding']).toBe('gzip');
    const json = JSON.parse(gunzipSync(zipped.rawPayload).toString('utf8')) as unknown[];
    expect(json).toHaveLength(40);
    const plain = await h.app.inject({ method: 'GET', url });
    expect(plain.headers['content-encoding']).toBeUndefined();
    // A QIDO page is a string body: gzipped in one call (sync path), so it has a Content-Length.
    const qidoUrl = `/dicom-web/studies/${testUid('gz-study', 1)}/instances?includefield=all`;
    const qidoZipped = await h.app.inject({ method: 'GET', url: qidoUrl, headers: { 'accept-encoding': 'gzip' } });
    expect(qidoZipped.headers['content-encoding']).toBe('gzip');
    expect(Number(qidoZipped.headers['content-length'])).toBe(qidoZipped.rawPayload.length);
    const qidoPlain = await h.app.inject({ method: 'GET', url: qidoUrl });
    expect(qidoPlain.rawPayload.length).toBeGreaterThan(h.config.http.compressMinBytes);
    expect(gunzipSync(qidoZipped.rawPayload).equals(qidoPlain.rawPayload)).toBe(true);
    // A small answer goes as it is (http.compressMinBytes): gzip costs more than it saves on a LAN.
    const small = await h.app.inject({ method: 'GET', url: `${qidoUrl.split('?')[0]}?limit=2`, headers: { 'accept-encoding': 'gzip' } });
    expect(small.statusCode).toBe(200);
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(small.payload)).toHaveLength(2);
    const dicom = await h.app.inject({
      method: 'GET',
      url: `/dicom-web/studies/${testUid('gz-study', 1)}`,
      headers: { 'accept-encoding': 'gzip', accept: 'multipart/related; type="application/dicom"', origin: 'https://viewer.example.org' },
    });
    expect(dicom.statusCode).toBe(200);
    expect(dicom.headers['content-encoding']).toBeUndefined();
    // the retrieve writes its own head (object-parts.ts): the CORS headers set on the reply go out with it
    expect(dicom.headers['access-control-allow-origin']).toBe('https://viewer.example.org');
  });
});
