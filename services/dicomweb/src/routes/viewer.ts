/**
 * The OHIF viewer at `/viewer`: the prebuilt bundle of the npm package `@ohif/app` (`make viewer` puts its
 * `dist/` in `.viewer/dist`), with an `app-config.js` generated per request that points OHIF's DICOMweb
 * data source at this server's own root, so a user opens one URL.
 *
 * The bundle is built for the site root: webpack's public path is the literal `"/"` in the app bundle
 * and its workers, and index.html loads everything from `/…`. Rather than serving assets at the root
 * (where they could shadow `/dicom-web`, `/livez`, `/readyz` or whatever an operator mounts there), the
 * few files that name the root are rewritten as they are served: index.html (`window.PUBLIC_URL`, every
 * `href="/…"`/`src="/…"`), the JS files holding `__webpack_require__.p = "/"` and the stylesheets with
 * `url(/…)`. The rewritten bytes are
 * cached in memory per file (keyed by size and mtime, so a new `make viewer` is picked up); every other
 * file streams from disk. OHIF's service worker is not registered: its precache list names root paths,
 * and a gateway should not leave a cache of a viewer in users' browsers.
 *
 * Client-side routes (`/viewer/viewer?StudyInstanceUIDs=…`, `/viewer/segmentation`, …) have no file
 * extension and get index.html; a missing file with an extension is a 404. Hashed chunks are cached for a
 * year (`immutable`); index.html and app-config.js are never cached, the rest revalidates by ETag.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { VIEWER_MOUNT } from '@portico/config';
import { PorticoError } from '@portico/errors';
import type { RouteDeps } from '../deps.ts';
import { sendProblem } from '../problem.ts';
import { serviceBase } from '../urls.ts';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.jsonc': 'application/json',
  '.map': 'application/json',
  '.webapp': 'application/x-web-app-manifest+json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.xml': 'application/xml',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8',
};

/** `1602.bundle.94f12cceab7c2762.js`, `0ddf166f7a343eda.wasm`: the name changes with the content. */
const HASHED = /(^|\.)[0-9a-f]{16}\.(js|css|wasm|woff2?)$/;
const IMMUTABLE = 'public, max-age=31536000, immutable';

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

export function cacheControlOf(file: string): string {
  const name = path.basename(file);
  if (name === 'index.html') return 'no-cache';
  return HASHED.test(name) ? IMMUTABLE : 'no-cache';
}

/**
 * index.html served under `mount`: public URL, absolute asset references, no service worker.
 * Throws when the page does not have the shape this rewrite knows (a newer OHIF that changed it), so a
 * version bump fails loudly in the tests instead of serving a blank page.
 */
export function rewriteIndexHtml(html: string, mount: string): string {
  const base = `${mount}/`;
  if (!/window\.PUBLIC_URL\s*=\s*"\/"/.test(html)) throw new Error('index.html does not set window.PUBLIC_URL="/"');
  return html
    .replace(/<script[^>]*init-service-worker\.js[^>]*><\/script>/g, '')
    .replace(/window\.PUBLIC_URL\s*=\s*"\/"/g, `window.PUBLIC_URL=${JSON.stringify(base)}`)
    .replace(/\b(href|src|content)="\/(?!\/)/g, `$1="${base}`);
}

/** A stylesheet served under `mount`: `url(/font.woff2)`. Undefined when nothing names the root. */
export function rewriteStylesheet(css: string, mount: string): string | undefined {
  if (!/url\(\s*["']?\/(?!\/)/.test(css)) return undefined;
  return css.replace(/url\(\s*(["']?)\/(?!\/)/g, `url($1${mount}/`);
}

/**
 * A JS file served under `mount`: webpack's public path and the microscopy viewer's absolute import.
 * Undefined when nothing names the root.
 */
export function rewriteScript(js: string, mount: string): string | undefined {
  if (!js.includes('__webpack_require__.p = "/"') && !js.includes("'/dicom-microscopy-viewer/")) return undefined;
  return js
    .replaceAll('__webpack_require__.p = "/";', `__webpack_require__.p = ${JSON.stringify(`${mount}/`)};`)
    .replaceAll("'/dicom-microscopy-viewer/", `'${mount}/dicom-microscopy-viewer/`);
}

/** OHIF's `window.config`: our own DICOMweb root as its only data source. */
export function appConfig(dicomweb: string, mount: string): string {
  const config = {
    name: 'portico',
    routerBasename: mount,
    showStudyList: true,
    extensions: [],
    modes: [],
    customizationService: {},
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    defaultDataSourceName: 'portico',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'portico',
        configuration: {
          friendlyName: 'Portico',
          name: 'portico',
          qidoRoot: dicomweb,
          wadoRoot: dicomweb,
          wadoUriRoot: dicomweb,
          qidoSupportsIncludeField: true,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: true,
          supportsWildcard: true,
          staticWado: false,
          singlepart: 'bulkdata',
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
  // The roots come from Host / X-Forwarded-Host: keep them from closing the script.
  return `window.config = ${JSON.stringify(config, null, 2).replace(/</g, '\\u003c')};\n`;
}

interface Rewritten {
  readonly size: number;
  readonly mtimeMs: number;
  /** undefined: the file needs no rewrite, stream it. */
  readonly body?: Buffer;
  readonly etag: string;
}

export async function viewerRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const dir = path.resolve(deps.config.viewer.path);
  const mount = VIEWER_MOUNT;
  const missing = `no OHIF bundle in ${dir} (index.html not found): run \`make viewer\`, or set PORTICO_VIEWER_PATH, or PORTICO_VIEWER_ENABLED=false`;
  const cache = new Map<string, Rewritten>();

  const present = async (): Promise<boolean> => (await stat(path.join(dir, 'index.html')).catch(() => undefined))?.isFile() === true;
  if (await present()) deps.log.info({ path: dir, mount }, 'serving the OHIF viewer');
  else deps.log.error({ path: dir }, `viewer enabled but ${missing}`);

  /** The file under dir for a request path, or undefined (outside dir, hidden, or not a file). */
  async function resolveFile(rel: string): Promise<{ file: string; size: number; mtimeMs: number } | undefined> {
    if (rel.includes('\0') || rel.split('/').some((seg) => seg.startsWith('.'))) return undefined;
    const file = path.resolve(dir, `./${rel}`);
    if (file !== dir && !file.startsWith(`${dir}${path.sep}`)) return undefined;
    const st = await stat(file).catch(() => undefined);
    return st?.isFile() ? { file, size: st.size, mtimeMs: st.mtimeMs } : undefined;
  }

  async function load(found: { file: string; size: number; mtimeMs: number }): Promise<Rewritten> {
    const hit = cache.get(found.file);
    if (hit && hit.size === found.size && hit.mtimeMs === found.mtimeMs) return hit;
    let body: Buffer | undefined;
    const ext = path.extname(found.file);
    if (path.basename(found.file) === 'index.html') {
      body = Buffer.from(rewriteIndexHtml(await readFile(found.file, 'utf8'), mount));
    } else if (ext === '.js' || ext === '.mjs' || ext === '.css') {
      const text = await readFile(found.file, 'utf8');
      const out = ext === '.css' ? rewriteStylesheet(text, mount) : rewriteScript(text, mount);
      if (out !== undefined) body = Buffer.from(out);
    }
    const etag = body ? `"${createHash('sha1').update(body).digest('base64url')}"` : `W/"${found.size.toString(16)}-${Math.floor(found.mtimeMs).toString(16)}"`;
    const entry: Rewritten = { size: found.size, mtimeMs: found.mtimeMs, etag, ...(body ? { body } : {}) };
    cache.set(found.file, entry);
    return entry;
  }

  async function serve(req: FastifyRequest, reply: FastifyReply, found: { file: string; size: number; mtimeMs: number }): Promise<FastifyReply> {
    const entry = await load(found);
    reply.header('content-type', contentTypeOf(found.file)).header('cache-control', cacheControlOf(found.file)).header('etag', entry.etag);
    if (req.headers['if-none-match'] === entry.etag) return reply.code(304).send();
    if (entry.body) return reply.header('content-length', entry.body.length).send(entry.body);
    return reply.header('content-length', found.size).send(createReadStream(found.file));
  }

  async function handle(req: FastifyRequest, reply: FastifyReply, rel: string): Promise<FastifyReply> {
    if (!(await present())) return sendProblem(reply, req, new PorticoError('OUT_OF_RESOURCES', `the viewer is enabled but there is ${missing}`));
    if (rel === 'app-config.js') {
      return reply
        .header('content-type', 'text/javascript; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(appConfig(serviceBase(req, deps.config.http.dicomwebRoot), mount));
    }
    // `..` and dot-files never reach the file system nor the SPA fallback.
    if (rel.split(/[/\\]/).some((seg) => seg.startsWith('.'))) return sendProblem(reply, req, new PorticoError('NOT_FOUND', 'no such viewer file'));
    const found = rel === '' ? undefined : await resolveFile(rel);
    if (found) return serve(req, reply, found);
    // Client-side routes of the single-page app have no extension; a missing asset is a plain 404.
    if (path.extname(rel) !== '') return sendProblem(reply, req, new PorticoError('NOT_FOUND', `no such viewer file: ${rel}`));
    const index = await resolveFile('index.html');
    if (!index) return sendProblem(reply, req, new PorticoError('OUT_OF_RESOURCES', `the viewer is enabled but there is ${missing}`));
    return serve(req, reply, index);
  }

  app.get(mount, (req, reply) => handle(req, reply, ''));
  app.get(`${mount}/*`, (req, reply) => handle(req, reply, (req.params as { '*': string })['*']));
}
