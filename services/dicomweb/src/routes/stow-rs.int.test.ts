/**
 * STOW-RS against a real PostgreSQL, folder store, BullMQ-on-PostgreSQL queue and the real ingest worker:
 * statuses, failure reasons, staging clean-up, the "acknowledgement is a promise" rule, limits.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../app.ts';
import { corpusDir } from '@portico/testing';
import type { FastifyInstance } from 'fastify';
import type { JobQueues } from '@portico/jobs';
import type { ObjectStore } from '@portico/storage';
import { startHarness, stowBody, type Harness } from '../test-support.ts';

const C000 = 0xc000;
const A900 = 0xa900;
const A700 = 0xa700;
const F0110 = 0x0110;

let h: Harness;
const file = (name: string): Promise<Buffer> => readFile(join(corpusDir(), name));

type Ds = Record<string, { vr: string; Value?: Array<Record<string, { vr: string; Value?: unknown[] }>> | unknown[] }>;
const items = (ds: Ds, tag: string): Array<Record<string, { Value?: unknown[] }>> => (ds[tag]?.Value ?? []) as Array<Record<string, { Value?: unknown[] }>>;
const reasons = (ds: Ds): unknown[] => items(ds, '00081198').map((i) => i['00081197']?.Value?.[0]);

async function stow(app: FastifyInstance, parts: Parameters<typeof stowBody>[0], url = '/dicom-web/studies', headers: Record<string, string> = {}) {
  const { body, contentType } = stowBody(parts);
  const res = await app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': contentType, accept: 'application/dicom+json', ...headers } });
  return { res, json: res.headers['content-type']?.toString().includes('json') ? (res.json() as Ds) : ({} as Ds) };
}

async function stagingFiles(): Promise<string[]> {
  return readdir(join(h.objectsDir, 'staging')).catch(() => []);
}

/** Waits until the worker has taken every staged object (so a test can check it leaves none behind). */
async function stagingDrained(): Promise<void> {
  const until = Date.now() + 60_000;
  while ((await stagingFiles()).length > 0) {
    if (Date.now() > until) throw new Error('staging folder not drained by the worker');
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  h = await startHarness({ 'http.stowMaxBytes': 2_000_000 });
});
afterAll(async () => {
  await h?.close();
});

describe('STOW-RS', () => {
  it('stores a valid instance: 200, ReferencedSOPSequence with RetrieveURLs, then indexed by the worker', async () => {
    const { res, json } = await stow(h.app, [await file('objects/CT_small.dcm')]);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/dicom+json');
    const ref = items(json, '00081199');
    expect(ref).toHaveLength(1);
    expect(ref[0]!['00081155']!.Value).toEqual(['1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322']);
    expect(ref[0]!['00081150']!.Value).toEqual(['1.2.840.10008.5.1.4.1.1.2']);
    expect(String(ref[0]!['00081190']!.Value![0])).toMatch(
      /^http:\/\/localhost(:\d+)?\/dicom-web\/studies\/1\.3\.6\.1\.4\.1\.5962\.1\.2\.1\.20040119072730\.12322\/series\/[\d.]+\/instances\/1\.3\.6\.1\.4\.1\.5962\.1\.1\.1\.1\.1\.20040119072730\.12322$/,
    );
    expect(String(json['00081190']!.Value![0])).toMatch(
      /^http:\/\/localhost(:80)?\/dicom-web\/studies\/1\.3\.6\.1\.4\.1\.5962\.1\.2\.1\.20040119072730\.12322$/,
    );
    expect(json['00081198']).toBeUndefined();
    await h.waitForInstances(1);
  });

  it('honours X-Forwarded-Proto/Host in RetrieveURLs', async () => {
    const { json } = await stow(h.app, [await file('objects/CT_small.dcm')], '/dicom-web/studies', {
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'pacs.example.org',
    });
    expect(String(json['00081190']!.Value![0])).toBe('https://pacs.example.org/dicom-web/studies/1.3.6.1.4.1.5962.1.2.1.20040119072730.12322');
  });

  it('broken files: 409, FailedSOPSequence with 0xC000 each, nothing left in staging', async () => {
    await stagingDrained();
    const parts = await Promise.all(['broken/not_dicom.png', 'broken/truncated_MR_pixeldata.dcm', 'broken/truncated_in_pixel_sequence_MR.dcm'].map(file));
    const { res, json } = await stow(h.app, parts);
    expect(res.statusCode).toBe(409);
    expect(reasons(json)).toEqual([C000, C000, C000]);
    expect(json['00081199']).toBeUndefined();
    expect(await stagingFiles()).toEqual([]);
  });

  it('mixed good and bad: 202 with both sequences, in part order', async () => {
    const { res, json } = await stow(h.app, [
      await file('broken/not_dicom.png'),
      await file('objects/SR_basic_text.dcm'),
      await file('odd/no_meta_implicit_le_MR.dcm'),
      await file('odd/DICOMDIR'),
    ]);
    expect(res.statusCode).toBe(202);
    expect(items(json, '00081199').map((i) => i['00081155']!.Value![0])).toEqual(['1.2.276.0.7230010.3.1.4.1787205428.166.1117461927.10']);
    expect(reasons(json)).toEqual([C000, C000, 0x0122]);
    // a DICOMDIR is a media directory, not an instance: SOP class not supported, with its UIDs reported
    expect(items(json, '00081198')[2]!['00081150']!.Value).toEqual(['1.2.840.10008.1.3.10']);
  });

  it('a study UID in the URL that the instance does not belong to: 0xA900, 409', async () => {
    const { res, json } = await stow(h.app, [await file('objects/CT_small.dcm')], '/dicom-web/studies/1.2.3.999');
    expect(res.statusCode).toBe(409);
    expect(reasons(json)).toEqual([A900]);
    expect(String(json['00081190']!.Value![0])).toMatch(/\/dicom-web\/studies\/1\.2\.3\.999$/);
  });

  it('the matching study UID in the URL is accepted', async () => {
    const { res } = await stow(h.app, [await file('objects/SR_basic_text.dcm')], '/dicom-web/studies/1.2.276.0.7230010.3.1.2.1787205428.166.1117461927.5');
    expect(res.statusCode).toBe(200);
  });

  it('parts of another media type fail with 0x0110; parts without Content-Type take the root type', async () => {
    const boundary = 'bnd';
    const pdf = await file('objects/PDF_encapsulated.dcm');
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\nContent-ID: <pdf>\r\n\r\n`),
      pdf,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const res = await h.app.inject({
      method: 'POST',
      url: '/dicom-web/studies',
      payload: body,
      headers: { 'content-type': `multipart/related; type=application/dicom; boundary="${boundary}"` },
    });
    expect(res.statusCode).toBe(202);
    const json = res.json() as Ds;
    expect(reasons(json)).toEqual([F0110]);
    expect(items(json, '00081199')).toHaveLength(1);
  });

  it('whole-request errors are problem+json: 415, 400, 406, 413', async () => {
    const ct = await file('objects/CT_small.dcm');
    const cases: Array<[Record<string, string>, Buffer, number]> = [
      [{ 'content-type': 'application/dicom' }, ct, 415],
      [{ 'content-type': 'multipart/related; type="application/dicom+xml"; boundary=x' }, ct, 415],
      [{ 'content-type': 'application/json' }, Buffer.from('{"a":1}'), 415],
      [{ 'content-type': 'multipart/related; type="application/dicom"' }, ct, 400],
      [{ 'content-type': 'multipart/related; type="application/dicom"; boundary=nothere' }, ct, 400],
      [{ 'content-type': stowBody([ct]).contentType, accept: 'application/dicom+xml' }, stowBody([ct]).body, 406],
    ];
    for (const [headers, payload, status] of cases) {
      const res = await h.app.inject({ method: 'POST', url: '/dicom-web/studies', payload, headers });
      expect(res.statusCode, JSON.stringify(headers)).toBe(status);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status, type: expect.stringMatching(/^urn:portico:problem:/), title: expect.any(String), detail: expect.any(String) });
    }
    const big = stowBody([Buffer.alloc(2_100_000)]);
    const res = await h.app.inject({ method: 'POST', url: '/dicom-web/studies', payload: big.body, headers: { 'content-type': big.contentType } });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ status: 413 });
  });

  it('413 while streaming a chunked body without Content-Length', async () => {
    const app = await buildApp({ config: h.config, log: h.log, db: h.db, store: h.store, queues: h.queues });
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const ct = await file('objects/CT_small.dcm');
    const big = stowBody(Array.from({ length: 60 }, () => ct));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < big.body.length; i += 65536) controller.enqueue(big.body.subarray(i, i + 65536));
        controller.close();
      },
    });
    const res = await fetch(`${address}/dicom-web/studies`, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': big.contentType },
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    await app.close();
  });
});

describe('STOW-RS acknowledgement is a promise', () => {
  async function appWith(over: { store?: Partial<ObjectStore>; queues?: Partial<JobQueues> }): Promise<FastifyInstance> {
    // Fault injection around the real backends (their methods live on prototypes: inherit, then override).
    const store = Object.assign(Object.create(h.store) as ObjectStore, over.store);
    const queues = Object.assign(Object.create(h.queues) as JobQueues, over.queues);
    return buildApp({ config: h.config, log: h.log, db: h.db, store, queues });
  }

  it('a queue that cannot take the job: 0xA700 and the staging object is deleted', async () => {
    await stagingDrained();
    const app = await appWith({ queues: { enqueueIngest: () => Promise.reject(new Error('queue down')) } });
    const { res, json } = await stow(app, [await file('objects/RTPLAN.dcm')]);
    expect(res.statusCode).toBe(409);
    expect(reasons(json)).toEqual([A700]);
    expect(items(json, '00081198')[0]!['00081155']!.Value).toEqual(['1.2.777.777.77.7.7777.7777.20030903150023']);
    expect(await stagingFiles()).toEqual([]);
    await app.close();
  });

  it('a store that cannot persist: 0xA700 and no job', async () => {
    let enqueued = 0;
    const app = await appWith({
      store: {
        put: async (_key, body) => {
          // consume a little, then fail like a full disk would
          for await (const _ of body as AsyncIterable<Buffer>) break;
          throw new Error('ENOSPC');
        },
      },
      queues: { enqueueIngest: async () => void enqueued++ },
    });
    const { res, json } = await stow(app, [await file('objects/RTPLAN.dcm'), await file('objects/CT_small.dcm')]);
    expect(res.statusCode).toBe(409);
    expect(reasons(json)).toEqual([A700, A700]);
    expect(enqueued).toBe(0);
    await app.close();
  });
});
