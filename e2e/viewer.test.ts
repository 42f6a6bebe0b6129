/**
 * End to end: the OHIF viewer Portico serves at /viewer, driven in headless Chromium (Debian `chromium`
 * through playwright-core) against `portico standalone` as a child process, with corpus studies sent
 * over DIMSE.
 *
 * - the study list shows every study Portico holds (by description or patient family name);
 * - an MR series and a CT series paint pixels: the viewport canvas, captured as PNG, differs from a blank
 *   canvas of the same size and has many distinct colours (a black or flat canvas has one or two);
 * - an SR opens and its content tree is displayed.
 *
 * The files are chosen from the corpus MANIFEST by category (modality, SOP class, folder), not by name.
 * Missing chromium or a missing viewer bundle fail the test: they never skip it.
 * Screenshots of every step are written to .tmp/viewer-e2e/ (git-ignored) to debug a failure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { corpusDir, corpusManifest, freePort } from '@portico/testing';
import { REPO_ROOT, startPortico, waitForHttp, type PorticoProcess } from './portico-process.ts';
import { dcmsend } from './dicom-clients.ts';

const CHROMIUM = process.env['PORTICO_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const VIEWER_DIR = path.join(REPO_ROOT, '.viewer/dist');
const SHOTS = path.join(REPO_ROOT, '.tmp/viewer-e2e');
type Row = Record<string, string>;
type Json = Record<string, { vr: string; Value?: unknown[] }>;

/** Rows of the manifest in the folders given (in that order of preference), with a SOP Instance UID. */
function rows(folders: string[]): Row[] {
  const all = corpusManifest().filter((r) => r['SOP instance UID'] && r['study instance UID']);
  return folders.flatMap((f) => all.filter((r) => r['file']!.startsWith(`${f}/`)));
}

/** Studies whose every corpus file has this modality (a study shared with other objects is not "a CT"). */
function studiesOnlyOf(modality: string): Set<string> {
  const byStudy = new Map<string, Set<string>>();
  for (const r of corpusManifest()) {
    const s = r['study instance UID'];
    if (s) byStudy.set(s, (byStudy.get(s) ?? new Set()).add(r['modality'] ?? ''));
  }
  return new Set([...byStudy].filter(([, mods]) => mods.size === 1 && mods.has(modality)).map(([s]) => s));
}

/** The MR series of the corpus with the most images (a whole series folder). */
function pickMrSeries(): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows(['series']).filter((r) => r['modality'] === 'MR')) {
    const dir = path.dirname(r['file']!);
    groups.set(dir, [...(groups.get(dir) ?? []), r]);
  }
  const best = [...groups.values()].sort((a, b) => b.length - a.length)[0];
  if (!best) throw new Error('no MR series in the corpus');
  return best;
}

function pickOne(modality: string, sopClassName: RegExp): Row {
  const only = studiesOnlyOf(modality);
  const row = rows(['series', 'objects', 'ts']).find(
    (r) => r['modality'] === modality && sopClassName.test(r['SOP class name'] ?? '') && only.has(r['study instance UID']!),
  );
  if (!row) throw new Error(`no ${modality} (${sopClassName.source}) alone in its study in the corpus`);
  return row;
}

interface CanvasCapture {
  readonly png: string; // data URL
  readonly blankPng: string;
  readonly width: number;
  readonly height: number;
  readonly distinct: number;
  readonly nonBlackFraction: number;
}

/** The largest cornerstone canvas as PNG, a blank canvas of its size, and pixel statistics. */
async function captureViewport(page: Page): Promise<CanvasCapture | undefined> {
  return page.evaluate(() => {
    const canvases = [...document.querySelectorAll<HTMLCanvasElement>('canvas.cornerstone-canvas')].filter((c) => c.width > 0 && c.height > 0);
    const c = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
    const ctx = c?.getContext('2d');
    if (!c || !ctx) return undefined;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set<number>();
    let nonBlack = 0;
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
      if (d[i]! + d[i + 1]! + d[i + 2]! > 24) nonBlack++;
    }
    const blank = document.createElement('canvas');
    blank.width = c.width;
    blank.height = c.height;
    const bctx = blank.getContext('2d')!;
    bctx.fillStyle = '#000';
    bctx.fillRect(0, 0, blank.width, blank.height);
    return {
      png: c.toDataURL('image/png'),
      blankPng: blank.toDataURL('image/png'),
      width: c.width,
      height: c.height,
      distinct: colours.size,
      nonBlackFraction: nonBlack / (d.length / 4),
    };
  });
}

function savePng(name: string, dataUrl: string): void {
  writeFileSync(path.join(SHOTS, name), Buffer.from(dataUrl.replace(/^data:image\/png;base64,/, ''), 'base64'));
}

describe('OHIF viewer at /viewer', () => {
  let portico: PorticoProcess | undefined;
  let browser: Browser | undefined;
  let http = '';
  const mr = pickMrSeries();
  const ct = pickOne('CT', /^CT Image Storage$/);
  const sr = pickOne('SR', /SR Storage$/);
  const log: string[] = [];

  beforeAll(async () => {
    // Fail, never skip: a CI machine without chromium or without `make viewer` must not look green.
    if (!existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM}: apt-get install chromium (or set PORTICO_TEST_CHROMIUM)`);
    if (!existsSync(path.join(VIEWER_DIR, 'index.html'))) throw new Error(`no OHIF bundle in ${VIEWER_DIR}: run make viewer`);
    mkdirSync(SHOTS, { recursive: true });

    const dataDir = mkdtempSync(path.join(tmpdir(), 'portico-viewer-e2e-'));
    const [httpPort, dimsePort, pgPort] = [await freePort(), await freePort(), await freePort()];
    http = `http://127.0.0.1:${httpPort}`;
    // PORTICO_VIEWER_ENABLED is left unset: standalone serves the viewer by default.
    portico = startPortico('standalone', {
      PORTICO_DATA_DIR: dataDir,
      PORTICO_HTTP_PORT: String(httpPort),
      PORTICO_DIMSE_PORT: String(dimsePort),
      PORTICO_EMBEDDED_PG_PORT: String(pgPort),
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_VIEWER_PATH: VIEWER_DIR,
    });
    await waitForHttp(`${http}/readyz`, [portico], 120_000);

    const files = [...new Set([...mr, ct, sr].map((r) => r['file']!))];
    const sent = await dcmsend(corpusDir(), dimsePort, files);
    expect(
      sent.entries.filter((e) => !e.status.startsWith('0x0000')),
      sent.output,
    ).toEqual([]);
    // Acknowledged means durable, not yet indexed: wait for the worker.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await fetch(`${http}/dicom-web/instances?limit=1000`, { headers: { Accept: 'application/dicom+json' } });
      const n = res.status === 200 ? ((await res.json()) as unknown[]).length : 0;
      if (n >= files.length) break;
      if (Date.now() > deadline) throw new Error(`only ${n} of ${files.length} instances indexed`);
      await new Promise((r) => setTimeout(r, 250));
    }

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // root in CI needs --no-sandbox; SwiftShader gives cornerstone a WebGL context without a GPU.
      args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    const code = await portico?.stop('SIGINT');
    if (code !== 0 && portico) console.error(portico.logs());
  });

  async function open(url: string): Promise<Page> {
    const page = await browser!.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('pageerror', (err) => log.push(`pageerror ${err.message}`));
    page.on('response', (res) => {
      if (res.status() >= 400) log.push(`HTTP ${res.status()} ${res.request().method()} ${new URL(res.url()).pathname}`);
    });
    await page.goto(url, { waitUntil: 'load' });
    return page;
  }

  async function expectPainted(studyUid: string, name: string): Promise<void> {
    const page = await open(`${http}/viewer/viewer?StudyInstanceUIDs=${studyUid}`);
    try {
      let last: CanvasCapture | undefined;
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        last = await captureViewport(page);
        if (last && last.distinct > 32 && last.nonBlackFraction > 0.02) break;
        await page.waitForTimeout(500);
      }
      await page.screenshot({ path: path.join(SHOTS, `${name}-page.png`) });
      if (last) {
        savePng(`${name}-canvas.png`, last.png);
        savePng(`${name}-blank.png`, last.blankPng);
      }
      const why = `${name}: ${JSON.stringify({ ...last, png: undefined, blankPng: undefined })}\n${log.join('\n')}`;
      expect(last, why).toBeDefined();
      expect(last!.png, why).not.toBe(last!.blankPng);
      expect(last!.distinct, why).toBeGreaterThan(32);
      expect(last!.nonBlackFraction, why).toBeGreaterThan(0.02);
      // Request failures other than OHIF probing optional resources would show here.
      expect(
        log.filter((l) => l.includes('/dicom-web/')),
        why,
      ).toEqual([]);
    } finally {
      await page.close();
    }
  }

  it('serves the viewer without shadowing the DICOMweb root or the health endpoints', async () => {
    const cfg = await (await fetch(`${http}/viewer/app-config.js`)).text();
    expect(cfg).toContain(`"qidoRoot": "${http}/dicom-web"`);
    expect(cfg).toContain('"routerBasename": "/viewer"');
    expect((await fetch(`${http}/livez`)).status).toBe(200);
    const studies = await fetch(`${http}/dicom-web/studies`);
    expect(studies.headers.get('content-type')).toMatch(/^application\/dicom\+json/);
  });

  it('lists every study Portico holds', async () => {
    const studies = (await (await fetch(`${http}/dicom-web/studies`, { headers: { Accept: 'application/dicom+json' } })).json()) as Json[];
    expect(studies.length).toBeGreaterThanOrEqual(3);
    const page = await open(`${http}/viewer`);
    try {
      const labels = studies.map((s) => {
        const desc = s['00081030']?.Value?.[0] as string | undefined;
        const pn = (s['00100010']?.Value?.[0] as { Alphabetic?: string } | undefined)?.Alphabetic;
        return desc ?? pn?.split('^')[0] ?? '';
      });
      for (const label of labels) {
        expect(label).not.toBe('');
        await page.getByText(label, { exact: false }).first().waitFor({ state: 'visible', timeout: 60_000 });
      }
      await page.screenshot({ path: path.join(SHOTS, 'study-list.png') });
    } catch (err) {
      await page.screenshot({ path: path.join(SHOTS, 'study-list.png') });
      throw new Error(`${(err as Error).message}\n${log.join('\n')}`);
    } finally {
      await page.close();
    }
  });

  it('paints an MR series', async () => {
    await expectPainted(mr[0]!['study instance UID']!, 'mr');
  });

  it('paints a CT series', async () => {
    await expectPainted(ct['study instance UID']!, 'ct');
  });

  it('opens an SR and shows its content', async () => {
    const series = (await (
      await fetch(`${http}/dicom-web/studies/${sr['study instance UID']}/series/${await seriesOf(sr)}/metadata`, {
        headers: { Accept: 'application/dicom+json' },
      })
    ).json()) as Json[];
    const root = series.find((i) => i['00080018']?.Value?.[0] === sr['SOP instance UID'])!;
    // The document title: the root content item's concept name (PS3.3 C.17.3).
    const title = ((root['0040A043']?.Value?.[0] as Json | undefined)?.['00080104']?.Value?.[0] as string | undefined) ?? '';
    expect(title).not.toBe('');
    const page = await open(`${http}/viewer/viewer?StudyInstanceUIDs=${sr['study instance UID']}`);
    try {
      await page.getByText(title, { exact: false }).first().waitFor({ state: 'visible', timeout: 90_000 });
      await page.screenshot({ path: path.join(SHOTS, 'sr-page.png') });
    } catch (err) {
      await page.screenshot({ path: path.join(SHOTS, 'sr-page.png') });
      throw new Error(`${(err as Error).message}\n${log.join('\n')}`);
    } finally {
      await page.close();
    }
  });

  async function seriesOf(row: Row): Promise<string> {
    const res = await fetch(`${http}/dicom-web/studies/${row['study instance UID']}/instances?SOPInstanceUID=${row['SOP instance UID']}`, {
      headers: { Accept: 'application/dicom+json' },
    });
    const found = (await res.json()) as Json[];
    return found[0]!['0020000E']!.Value![0] as string;
  }
});
