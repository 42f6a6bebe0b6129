/**
 * The viewer route on the real app (real PostgreSQL, folder store, queues) with a small bundle shaped like
 * OHIF's `dist/` (a page and chunks naming the site root). The real bundle in a real browser is the
 * e2e test (e2e/viewer.test.ts); this one pins the HTTP contract: rewrites, config, SPA fallback,
 * content types, caching, confinement to the folder, and that nothing else is shadowed.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '@portico/config';
import { buildApp } from '../app.ts';
import { startHarness, type Harness } from '../test-support.ts';

const INDEX =
  '<!doctype html><html><head><meta name="msapplication-TileImage" content="/assets/mstile.png">' +
  '<script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">' +
  '<script rel="preload" as="script" src="/app-config.js"></script>' +
  '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>' +
  '<script defer src="/app.bundle.0f6159c501addfe9.js"></script><link href="/app.bundle.css" rel="stylesheet"></head>' +
  '<body><div id="root"></div><a href="//cdn.example/x">x</a></body></html>';
const APP = '(() => {\n__webpack_require__.p = "/";\n})();\nconst m = await browserImportFunction(\'/dicom-microscopy-viewer/v.js\');\n';
const CSS = '@font-face{src:url(/a34f9d1faa5f3315.woff2)}body{background:url("data:image/png;base64,AA")}';

let h: Harness;
let app: FastifyInstance;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portico-viewer-'));
  await mkdir(join(dir, 'assets'));
  await writeFile(join(dir, 'index.html'), INDEX);
  await writeFile(join(dir, 'app.bundle.0f6159c501addfe9.js'), APP);
  await writeFile(join(dir, '1180.bundle.762993518ea30ae3.js'), 'console.log(1);\n');
  await writeFile(join(dir, 'app.bundle.css'), CSS);
  await writeFile(join(dir, '0ddf166f7a343eda.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  await writeFile(join(dir, 'assets', 'mstile.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  await writeFile(join(dir, '.ohif-app-3.13.2'), '');
  h = await startHarness();
  const config = loadConfig({ env: {}, overrides: { 'viewer.path': dir } });
  app = await buildApp({ config, log: h.log, db: h.db, store: h.store, queues: h.queues, viewer: true });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await h?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GET /viewer', () => {
  it('serves index.html with every root reference moved under /viewer and no service worker', async () => {
    for (const url of ['/viewer', '/viewer/']) {
      const res = await app.inject({ url });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.body).toContain('window.PUBLIC_URL="/viewer/"');
      expect(res.body).toContain('src="/viewer/app.bundle.0f6159c501addfe9.js"');
      expect(res.body).toContain('href="/viewer/app.bundle.css"');
      expect(res.body).toContain('content="/viewer/assets/mstile.png"');
      expect(res.body).toContain('href="//cdn.example/x"');
      expect(res.body).not.toContain('init-service-worker');
      expect(res.body).not.toMatch(/(src|href)="\/(?!viewer\/|\/)/);
    }
  });

  it('falls back to index.html for client-side routes, 404 problem+json for missing files', async () => {
    const route = await app.inject({ url: '/viewer/viewer?StudyInstanceUIDs=1.2.3' });
    expect(route.statusCode).toBe(200);
    expect(route.body).toContain('window.PUBLIC_URL="/viewer/"');
    const missing = await app.inject({ url: '/viewer/9999.bundle.0000000000000000.js' });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('generates app-config.js for the origin of the request, behind a proxy too', async () => {
    const direct = await app.inject({ url: '/viewer/app-config.js', headers: { host: 'localhost:8080' } });
    expect(direct.statusCode).toBe(200);
    expect(direct.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(direct.headers['cache-control']).toBe('no-store');
    expect(direct.body).toContain('"qidoRoot": "http://localhost:8080/dicom-web"');
    expect(direct.body).toContain('"wadoRoot": "http://localhost:8080/dicom-web"');
    expect(direct.body).toContain('"routerBasename": "/viewer"');
    const proxied = await app.inject({
      url: '/viewer/app-config.js',
      headers: { host: 'portico:8080', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'pacs.example.org' },
    });
    expect(proxied.body).toContain('"qidoRoot": "https://pacs.example.org/dicom-web"');
    // A hostile Host header cannot close the script.
    const hostile = await app.inject({ url: '/viewer/app-config.js', headers: { 'x-forwarded-host': 'x</script><script>alert(1)//' } });
    expect(hostile.body).not.toContain('</script>');
  });

  it('rewrites webpack public path and stylesheet urls; hashed chunks are immutable, others revalidate', async () => {
    const js = await app.inject({ url: '/viewer/app.bundle.0f6159c501addfe9.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(js.body).toContain('__webpack_require__.p = "/viewer/";');
    expect(js.body).toContain("browserImportFunction('/viewer/dicom-microscopy-viewer/v.js')");
    expect(Number(js.headers['content-length'])).toBe(Buffer.byteLength(js.body));
    const again = await app.inject({ url: '/viewer/app.bundle.0f6159c501addfe9.js', headers: { 'if-none-match': String(js.headers['etag']) } });
    expect(again.statusCode).toBe(304);

    const css = await app.inject({ url: '/viewer/app.bundle.css' });
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.headers['cache-control']).toBe('no-cache');
    expect(css.body).toContain('url(/viewer/a34f9d1faa5f3315.woff2)');
    expect(css.body).toContain('url("data:image/png;base64,AA")');

    const plain = await app.inject({ url: '/viewer/1180.bundle.762993518ea30ae3.js' });
    expect(plain.body).toBe('console.log(1);\n');
    const wasm = await app.inject({ url: '/viewer/0ddf166f7a343eda.wasm' });
    expect(wasm.headers['content-type']).toBe('application/wasm');
    expect(wasm.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(wasm.rawPayload.subarray(0, 4)).toEqual(Buffer.from([0, 0x61, 0x73, 0x6d]));
    const png = await app.inject({ url: '/viewer/assets/mstile.png' });
    expect(png.headers['content-type']).toBe('image/png');
  });

  it('serves nothing outside the bundle folder and no hidden files', async () => {
    for (const url of [
      '/viewer/..%2f..%2fetc%2fpasswd',
      '/viewer/%2e%2e/%2e%2e/etc/hostname',
      '/viewer/.ohif-app-3.13.2',
      '/viewer/assets/..%2f..%2f..%2fetc%2fpasswd',
    ]) {
      const res = await app.inject({ url });
      expect(res.statusCode, url).toBe(404);
      expect(res.headers['content-type'], url).toMatch(/^application\/problem\+json/);
    }
  });

  it('shadows neither the DICOMweb root nor the health endpoints, and nothing at the root', async () => {
    const qido = await app.inject({ url: '/dicom-web/studies', headers: { accept: 'application/dicom+json' } });
    expect(qido.statusCode).toBe(200);
    expect(qido.headers['content-type']).toMatch(/^application\/dicom\+json/);
    expect((await app.inject({ url: '/livez' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/app-config.js' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/' })).statusCode).toBe(404);
  });
});

describe('viewer switched on without a bundle', () => {
  it('answers 503 problem+json telling the user to run make viewer', async () => {
    const config = loadConfig({ env: {}, overrides: { 'viewer.path': join(dir, 'nowhere') } });
    const bare = await buildApp({ config, log: h.log, db: h.db, store: h.store, queues: h.queues, viewer: true });
    try {
      const res = await bare.inject({ url: '/viewer' });
      expect(res.statusCode).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json<{ detail: string }>().detail).toMatch(/make viewer/);
    } finally {
      await bare.close();
    }
  });

  it('is not routed at all when switched off', async () => {
    expect((await h.app.inject({ url: '/viewer' })).statusCode).toBe(404);
  });
});
