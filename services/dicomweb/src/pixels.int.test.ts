/**
 * Pixel services over real HTTP against the public corpus, stored through STOW-RS and indexed by the real
 * worker: WADO-RS rendered and thumbnail at every level, decompression to Explicit VR Little Endian
 * (instances and frames), ETag / If-None-Match, and WADO-URI.
 *
 * Which files are images is read from the files themselves (Rows, Columns and Pixel Data in the parsed
 * header), not from a list of names, so the held-back corpus can be dropped in.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { api } from 'dicomweb-client';
import XHR from 'xhr2';
import { hasPart10Preamble, hierarchyUids, parseInstance, type ParsedInstance } from '@portico/dicom';
import { fitInside } from '@portico/imaging';
import { corpusFiles, parseMultipart, startHarness, stowBody, type CorpusFile, type Harness } from './test-support.ts';

const run = promisify(execFile);

(globalThis as Record<string, unknown>)['XMLHttpRequest'] = XHR;

interface Entry extends CorpusFile {
  readonly bytes: Buffer;
  readonly parsed: ParsedInstance;
  readonly study: string;
  readonly series: string;
  readonly sop: string;
}

interface Client {
  // a single-part answer comes back as a one-element array
  retrieveInstanceRendered(o: object): Promise<ArrayBuffer[]>;
  retrieveInstanceFramesRendered(o: object): Promise<ArrayBuffer[]>;
  retrieveInstanceFrames(o: object): Promise<ArrayBuffer[]>;
  retrieveInstance(o: object): Promise<ArrayBuffer>;
}

const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';
const UID = /^[0-9]+(\.[0-9]+)*$/;
let h: Harness;
let base: string;
let client: Client;
let stored: Entry[];
/** Stored instances with pixel data the pipeline is expected to render. */
let images: Entry[];

const num = (e: Entry, tag: string): number | undefined => {
  const x = e.parsed.json[tag]?.Value?.[0];
  return typeof x === 'number' ? x : undefined;
};
const url = (e: Entry, suffix = ''): string => `/dicom-web/studies/${e.study}/series/${e.series}/instances/${e.sop}${suffix}`;
async function get(path: string, headers: Record<string, string> = {}) {
  return h.app.inject({ method: 'GET', url: path, headers });
}

/** Decodes an answer with sharp and checks it: format, size, and that it is not one flat colour. */
async function checkImage(body: Buffer, format: 'jpeg' | 'png', width: number, height: number, what: string, allowConstant = false): Promise<void> {
  const meta = await sharp(body).metadata();
  expect(meta.format, what).toBe(format);
  expect([meta.width, meta.height], what).toEqual([width, height]);
  if (allowConstant) return;
  const stats = await sharp(body).stats();
  expect(
    stats.channels.some((c) => c.max > c.min),
    `${what}: constant image`,
  ).toBe(true);
}

beforeAll(async () => {
  h = await startHarness();
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  base = `${address}/dicom-web`;
  client = new api.DICOMwebClient({ url: base, verbose: false } as never) as unknown as Client;
  const files = await corpusFiles('ts', 'objects', 'series', 'odd');
  const entries: Entry[] = [];
  for (const f of files) {
    const bytes = await readFile(f.path);
    const parsed = await parseInstance([bytes]).catch(() => undefined);
    if (!parsed || !hasPart10Preamble(bytes.subarray(0, 132)) || !parsed.hasFileMeta || parsed.sopClassUid === MEDIA_STORAGE_DIRECTORY) continue;
    if (![parsed.sopClassUid, parsed.sopInstanceUid].every((u) => UID.test(u))) continue;
    const uids = hierarchyUids(parsed.sopInstanceUid, parsed.studyInstanceUid, parsed.seriesInstanceUid);
    if (!uids) continue;
    entries.push({ ...f, bytes, parsed, study: uids.study, series: uids.series, sop: parsed.sopInstanceUid });
  }
  for (let i = 0; i < entries.length; i += 25) {
    const { body, contentType } = stowBody(entries.slice(i, i + 25).map((e) => e.bytes));
    const res = await h.app.inject({ method: 'POST', url: '/dicom-web/studies', payload: body, headers: { 'content-type': contentType } });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(200);
  }
  await h.waitForInstances(entries.length);
  stored = entries;
  images = stored.filter((e) => e.parsed.pixelData?.tag === '7FE00010' && num(e, '00280010') && num(e, '00280011') && num(e, '00280100'));
  expect(images.length).toBeGreaterThan(40);
}, 300_000);

afterAll(async () => {
  await h?.close();
});

describe('WADO-RS rendered', () => {
  it('renders every image of the corpus as PNG of the viewport size, with non-constant pixels', async () => {
    const failures: string[] = [];
    for (const e of images) {
      const res = await get(url(e, '/rendered?viewport=96,96'), { accept: 'image/png' });
      if (res.statusCode !== 200) {
        failures.push(`${e.name}: ${res.statusCode} ${res.body.slice(0, 200)}`);
        continue;
      }
      expect(res.headers['content-type']).toBe('image/png');
      const size = fitInside(num(e, '00280011')!, num(e, '00280010')!, { width: 96, height: 96 });
      await checkImage(res.rawPayload, 'png', size.width, size.height, e.name);
    }
    expect(failures).toEqual([]);
  });

  it('answers JPEG at the native size for */* and image/*, honouring quality', async () => {
    const e = images.find((x) => num(x, '00280011') === 512 && x.parsed.json['00080060']?.Value?.[0] === 'CT')!;
    const hi = await get(url(e, '/rendered?quality=95'), { accept: '*/*' });
    const lo = await get(url(e, '/rendered?quality=5'), { accept: 'image/*' });
    for (const r of [hi, lo]) expect(r.headers['content-type']).toBe('image/jpeg');
    await checkImage(hi.rawPayload, 'jpeg', 512, 512, e.name);
    expect(lo.rawPayload.length).toBeLessThan(hi.rawPayload.length / 2);
  });

  it('applies the window parameter (a narrow window saturates more pixels than a wide one)', async () => {
    const e = images.find((x) => x.parsed.json['00080060']?.Value?.[0] === 'CT' && num(x, '00280002') === 1)!;
    const narrow = await get(url(e, '/rendered?window=40,10&accept=image/png'));
    const wide = await get(url(e, '/rendered?window=40,4000,LINEAR_EXACT&accept=image/png'));
    const extremes = async (b: Buffer): Promise<number> => {
      const { data } = await sharp(b).raw().toBuffer({ resolveWithObject: true });
      return data.filter((v) => v === 0 || v === 255).length / data.length;
    };
    expect(narrow.statusCode).toBe(200);
    expect(await extremes(narrow.rawPayload)).toBeGreaterThan((await extremes(wide.rawPayload)) + 0.2);
  });

  it('renders a chosen frame of multi-frame objects, and 404s beyond the last', async () => {
    const multi = images.filter((e) => (e.parsed.pixelData?.frames.length ?? 0) > 1);
    expect(multi.length).toBeGreaterThan(3);
    for (const e of multi) {
      const n = e.parsed.pixelData!.frames.length;
      const res = await get(url(e, `/frames/${n}/rendered`), { accept: 'image/png' });
      expect(res.statusCode, `${e.name}: ${res.body.slice(0, 200)}`).toBe(200);
      // a last tile of a slide may be plain background
      await checkImage(res.rawPayload, 'png', num(e, '00280011')!, num(e, '00280010')!, `${e.name} frame ${n}`, true);
      expect((await get(url(e, `/frames/${n + 1}/rendered`))).statusCode).toBe(404);
    }
  });

  it('thumbnails fit the configured size at instance, series and study level', async () => {
    const e = images.find((x) => x.name.startsWith('series/dcm4che'))!;
    for (const path of [url(e, '/thumbnail'), `/dicom-web/studies/${e.study}/series/${e.series}/thumbnail`, `/dicom-web/studies/${e.study}/thumbnail`]) {
      const res = await get(path, { accept: 'image/jpeg' });
      expect(res.statusCode, `${path}: ${res.body.slice(0, 200)}`).toBe(200);
      const meta = await sharp(res.rawPayload).metadata();
      expect(Math.max(meta.width, meta.height)).toBe(128);
    }
  });

  it('series level renders the middle instance by Instance Number', async () => {
    const e = images.find((x) => x.name.startsWith('series/dcm4che'))!;
    const series = images.filter((x) => x.series === e.series).sort((a, b) => (num(a, '00200013') ?? 0) - (num(b, '00200013') ?? 0));
    const middle = series[Math.floor(series.length / 2)]!;
    const s = await get(`/dicom-web/studies/${e.study}/series/${e.series}/rendered?accept=image/png`);
    const i = await get(url(middle, '/rendered?accept=image/png'));
    expect(s.statusCode).toBe(200);
    expect(s.rawPayload.equals(i.rawPayload)).toBe(true);
  });

  it('dicomweb-client retrieveInstanceRendered and retrieveInstanceFramesRendered over HTTP', async () => {
    const e = images.find((x) => x.parsed.transferSyntaxUid === '1.2.840.10008.1.2.4.50' && (x.parsed.pixelData?.frames.length ?? 0) > 1)!;
    const ids = { studyInstanceUID: e.study, seriesInstanceUID: e.series, sopInstanceUID: e.sop };
    const [png] = await client.retrieveInstanceRendered({ ...ids, mediaTypes: [{ mediaType: 'image/png' }], queryParams: { viewport: '64,64' } });
    const size = fitInside(num(e, '00280011')!, num(e, '00280010')!, { width: 64, height: 64 });
    await checkImage(Buffer.from(png!), 'png', size.width, size.height, e.name);
    const [jpeg] = await client.retrieveInstanceFramesRendered({ ...ids, frameNumbers: [2], mediaTypes: [{ mediaType: 'image/jpeg' }] });
    await checkImage(Buffer.from(jpeg!), 'jpeg', num(e, '00280011')!, num(e, '00280010')!, `${e.name} frame 2`);
  });

  it('refuses what it cannot produce with problem+json: other media types, non-images, bad parameters', async () => {
    const e = images[0]!;
    const gif = await get(url(e, '/rendered'), { accept: 'image/gif' });
    expect(gif.statusCode).toBe(406);
    expect(gif.headers['content-type']).toContain('application/problem+json');
    const sr = stored.find((x) => !x.parsed.pixelData)!;
    const noPixels = await get(url(sr, '/rendered'));
    expect(noPixels.statusCode).toBe(406);
    expect(noPixels.json()).toMatchObject({ status: 406 });
    for (const q of ['viewport=0,10', 'window=1', 'quality=500', 'bogus=1', 'viewport=10,10,9999,9999,5,5'])
      expect((await get(url(e, `/rendered?${q}`))).statusCode, q).toBe(400);
    expect((await get(url(e, '/frames/1,2/rendered'))).statusCode).toBe(406);
    expect((await get(`/dicom-web/studies/1.2.3.999/rendered`)).statusCode).toBe(404);
  });

  it('ETag and If-None-Match: 304 for the same representation, 200 for another', async () => {
    const e = images[0]!;
    const first = await get(url(e, '/rendered?viewport=32,32'));
    const etag = first.headers['etag'] as string;
    expect(etag).toMatch(/^"[^"]+"$/);
    const again = await get(url(e, '/rendered?viewport=32,32'), { 'if-none-match': etag });
    expect(again.statusCode).toBe(304);
    expect(again.rawPayload.length).toBe(0);
    const other = await get(url(e, '/rendered?viewport=33,33'), { 'if-none-match': etag });
    expect(other.statusCode).toBe(200);
    expect(other.headers['etag']).not.toBe(etag);
  });
});

const EVRLE = '1.2.840.10008.1.2.1';
const DECOMPRESS = `multipart/related; type="application/dicom"; transfer-syntax=${EVRLE}`;
/** dcmtk tools that make a reference decode of a lossless transfer syntax. */
const REFERENCE_DECODER: Record<string, string> = {
  '1.2.840.10008.1.2.4.57': 'dcmdjpeg',
  '1.2.840.10008.1.2.4.70': 'dcmdjpeg',
  '1.2.840.10008.1.2.5': 'dcmdrle',
  '1.2.840.10008.1.2.4.80': 'dcmdjpls',
};

async function pixelBytes(part10: Buffer): Promise<{ parsed: ParsedInstance; pixels: Buffer }> {
  const parsed = await parseInstance([part10]);
  const px = parsed.pixelData!;
  return { parsed, pixels: part10.subarray(px.valueOffset, px.valueOffset + px.valueLength!) };
}

describe('WADO-RS decompression to Explicit VR Little Endian', () => {
  it('every image instance: valid Part 10 (our parser and dcmdump), right length, lossless ones equal to the dcmtk decode', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portico-decompress-'));
    try {
      let compared = 0;
      for (const e of images) {
        const res = await get(url(e), { accept: DECOMPRESS });
        expect(res.statusCode, `${e.name}: ${res.body.slice(0, 300)}`).toBe(200);
        const parts = parseMultipart(res.rawPayload, res.headers['content-type'] as string);
        expect(parts).toHaveLength(1);
        expect(parts[0]!.headers['content-type']).toBe(`application/dicom; transfer-syntax=${EVRLE}`);
        expect(Number(parts[0]!.headers['content-length'])).toBe(parts[0]!.body.length);
        if (e.parsed.transferSyntaxUid === EVRLE) {
          // already Explicit VR Little Endian: the stored bytes, untouched
          expect(parts[0]!.body.equals(e.bytes), e.name).toBe(true);
          continue;
        }
        const { parsed, pixels } = await pixelBytes(parts[0]!.body);
        expect(parsed.transferSyntaxUid, e.name).toBe(EVRLE);
        expect(parsed.sopInstanceUid).toBe(e.sop);
        expect(parsed.pixelData!.encapsulated).toBe(false);
        const [rows, cols, spp, bits] = ['00280010', '00280011', '00280002', '00280100'].map((t) => num(e, t) ?? 1) as [number, number, number, number];
        const frames = Math.max(1, num(e, '00280008') ?? 1);
        const expected = bits === 1 ? Math.ceil((rows * cols * spp * frames) / 8) : rows * cols * spp * (bits / 8) * frames;
        expect(pixels.length, e.name).toBe(expected + (expected % 2));
        const file = join(dir, 'out.dcm');
        await writeFile(file, parts[0]!.body);
        await run('dcmdump', ['-q', '+E', file]);
        const tool = REFERENCE_DECODER[e.parsed.transferSyntaxUid];
        if (tool) {
          const ref = join(dir, 'ref.dcm');
          await run(tool, [e.path, ref]);
          const reference = await pixelBytes(await readFile(ref));
          expect(pixels.equals(reference.pixels), `${e.name}: decoded pixels differ from ${tool}`).toBe(true);
          expect(parsed.json['00280004']?.Value).toEqual(reference.parsed.json['00280004']?.Value);
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('YBR_FULL_422 JPEG becomes RGB with Planar Configuration 0', async () => {
    const e = images.find((x) => x.parsed.transferSyntaxUid === '1.2.840.10008.1.2.4.50' && x.parsed.json['00280004']?.Value?.[0] === 'YBR_FULL_422')!;
    const res = await get(url(e), { accept: DECOMPRESS });
    const { parsed } = await pixelBytes(parseMultipart(res.rawPayload, res.headers['content-type'] as string)[0]!.body);
    expect(parsed.json['00280004']?.Value).toEqual(['RGB']);
    expect(parsed.json['00280006']?.Value).toEqual([0]);
  });

  it('a whole study streams instance by instance, each part decompressed or already Explicit VR LE', async () => {
    const e = images.find((x) => x.name.startsWith('series/dcm4che'))!;
    const inStudy = stored.filter((x) => x.study === e.study);
    const res = await get(`/dicom-web/studies/${e.study}`, { accept: DECOMPRESS });
    expect(res.statusCode).toBe(200);
    const parts = parseMultipart(res.rawPayload, res.headers['content-type'] as string);
    expect(parts).toHaveLength(inStudy.length);
    for (const p of parts) expect((await parseInstance([p.body])).transferSyntaxUid).toBe(EVRLE);
  });

  it('406 for a transfer syntax it cannot produce; as stored for * ', async () => {
    const e = images.find((x) => x.parsed.transferSyntaxUid === EVRLE)!;
    const jpeg = await get(url(e), { accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50' });
    expect(jpeg.statusCode).toBe(406);
    expect(jpeg.headers['content-type']).toContain('application/problem+json');
    const any = await get(url(e), { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
    expect(parseMultipart(any.rawPayload, any.headers['content-type'] as string)[0]!.body.equals(e.bytes)).toBe(true);
  });

  it('frames of compressed, big endian and deflated objects as application/octet-stream (dicomweb-client)', async () => {
    const candidates = images.filter((x) =>
      ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.4.90'].includes(x.parsed.transferSyntaxUid),
    );
    expect(new Set(candidates.map((x) => x.parsed.transferSyntaxUid)).size).toBe(4);
    for (const e of candidates) {
      const n = Math.min(2, Math.max(1, num(e, '00280008') ?? 1));
      const frames = await client.retrieveInstanceFrames({
        studyInstanceUID: e.study,
        seriesInstanceUID: e.series,
        sopInstanceUID: e.sop,
        frameNumbers: [n],
        mediaTypes: [{ mediaType: 'application/octet-stream', transferSyntaxUID: EVRLE }],
      });
      // the frame equals the same frame of the decompressed instance
      const whole = await get(url(e), { accept: DECOMPRESS });
      const { pixels } = await pixelBytes(parseMultipart(whole.rawPayload, whole.headers['content-type'] as string)[0]!.body);
      const size = num(e, '00280010')! * num(e, '00280011')! * (num(e, '00280002') ?? 1) * (num(e, '00280100')! / 8);
      expect(frames).toHaveLength(1);
      expect(Buffer.from(frames[0]!).equals(pixels.subarray((n - 1) * size, n * size)), e.name).toBe(true);
    }
  });

  it('ETag and If-None-Match on instance retrieval and metadata', async () => {
    const e = images[0]!;
    for (const path of [url(e), url(e, '/metadata'), `/dicom-web/studies/${e.study}/metadata`]) {
      const first = await get(path);
      expect(first.statusCode).toBe(200);
      const etag = first.headers['etag'] as string;
      expect(etag, path).toBeTruthy();
      expect((await get(path, { 'if-none-match': etag })).statusCode).toBe(304);
      expect((await get(path, { 'if-none-match': '"other"' })).statusCode).toBe(200);
    }
  });
});

describe('WADO-URI', () => {
  const wado = (e: Entry, extra = ''): string => `/wado?requestType=WADO&studyUID=${e.study}&seriesUID=${e.series}&objectUID=${e.sop}${extra}`;

  it('application/dicom as stored and decompressed', async () => {
    const e = images.find((x) => x.parsed.transferSyntaxUid === '1.2.840.10008.1.2.4.70')!;
    const asStored = await get(wado(e, '&contentType=application/dicom'));
    expect(asStored.statusCode).toBe(200);
    expect(asStored.headers['content-type']).toBe('application/dicom');
    expect(asStored.rawPayload.equals(e.bytes)).toBe(true);
    const evrle = await get(wado(e, `&contentType=application/dicom&transferSyntax=${EVRLE}`));
    expect((await parseInstance([evrle.rawPayload])).transferSyntaxUid).toBe(EVRLE);
    expect((await get(wado(e, '&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.50'))).statusCode).toBe(406);
  });

  it('image/jpeg by default, rows/columns, window, frameNumber, region', async () => {
    const e = images.find((x) => (num(x, '00280008') ?? 1) > 2 && num(x, '00280002') === 1)!;
    const res = await get(wado(e, '&rows=50&columns=80&windowCenter=100&windowWidth=400&frameNumber=3&imageQuality=80'));
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.headers['content-type']).toBe('image/jpeg');
    const size = fitInside(num(e, '00280011')!, num(e, '00280010')!, { width: 80, height: 50 });
    await checkImage(res.rawPayload, 'jpeg', size.width, size.height, e.name, true);
    const png = await get(wado(e, '&contentType=image/png&region=0,0,0.5,0.5'));
    await checkImage(png.rawPayload, 'png', Math.round(num(e, '00280011')! / 2), Math.round(num(e, '00280010')! / 2), e.name, true);
  });

  it('problem+json 4xx for what it does not do', async () => {
    const e = images[0]!;
    for (const [q, status] of [
      ['&anonymize=yes', 400],
      ['&presentationUID=1.2.3', 400],
      ['&frameNumber=0', 400],
      ['&windowCenter=10', 400],
      ['&region=0.5,0,0.2,1', 400],
      ['&contentType=image/gif', 406],
      ['&bogus=1', 400],
      ['&frameNumber=9999', 404],
    ] as const) {
      const res = await get(wado(e, q));
      expect(res.statusCode, q).toBe(status);
      expect(res.headers['content-type'], q).toContain('application/problem+json');
    }
    expect((await get(`/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2&objectUID=bad`)).statusCode).toBe(400);
    expect((await get(`/wado?requestType=XYZ&studyUID=1.2&seriesUID=1.2&objectUID=1.2`)).statusCode).toBe(400);
    expect((await get(`/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2&objectUID=1.2.3.4.5.6.999`)).statusCode).toBe(404);
  });
});
