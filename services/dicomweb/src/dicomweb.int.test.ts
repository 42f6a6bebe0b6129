/**
 * The whole public corpus through DICOMweb, over real HTTP with `dicomweb-client` and with `app.inject()`:
 * STOW-RS every file, let the real worker index them, then QIDO-RS at every level, WADO-RS byte-identical
 * retrieval, metadata (UTF-8 names from every character set), frames and bulk data.
 *
 * Expectations are derived from the files themselves (parsed once here), not hard-coded lists, so the
 * held-back corpus can be dropped in: a file is expected to be stored when it is a Part-10 file with SOP
 * Class, SOP Instance, Study and Series Instance UIDs.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api } from 'dicomweb-client';
import XHR from 'xhr2';
import { hasPart10Preamble, hierarchyUids, parseInstance, type ParsedInstance } from '@portico/dicom';
import { buildApp } from './app.ts';
import { corpusFiles, parseMultipart, sha256, startHarness, type CorpusFile, type Harness } from './test-support.ts';
import { startDicomweb } from './main.ts';

(globalThis as Record<string, unknown>)['XMLHttpRequest'] = XHR;

type El = { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string };
type Ds = Record<string, El>;

interface Entry extends CorpusFile {
  readonly bytes: Buffer;
  readonly parsed: ParsedInstance | undefined;
  readonly storable: boolean;
}

const UID = /^[0-9]+(\.[0-9]+)*$/;
const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';
let h: Harness;
let base: string;
/** The calls we use; dicomweb-client 0.11's published types mark optional options as required. */
interface Client {
  storeInstances(o: { datasets: ArrayBuffer[] }): Promise<unknown>;
  searchForStudies(o?: { queryParams?: Record<string, string> }): Promise<unknown>;
  retrieveInstance(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }): Promise<unknown>;
  retrieveStudyMetadata(o: { studyInstanceUID: string }): Promise<unknown>;
  retrieveInstanceFrames(o: object): Promise<unknown>;
}
let client: Client;
let corpus: Entry[];
let stored: Entry[];
const stowStats = { bytes: 0, ms: 0 };

const v = (ds: Ds, tag: string): unknown => ds[tag]?.Value?.[0];
const byName = (name: string): Entry => {
  const e = corpus.find((c) => c.name === name);
  if (!e) throw new Error(`corpus file ${name} missing`);
  return e;
};

async function get(url: string, headers: Record<string, string> = {}) {
  return h.app.inject({ method: 'GET', url, headers });
}

async function qido(url: string): Promise<Ds[]> {
  const res = await get(url);
  expect(res.statusCode, `${url}: ${res.body.slice(0, 300)}`).toBe(200);
  expect(res.headers['content-type']).toContain('application/dicom+json');
  return res.json() as Ds[];
}

beforeAll(async () => {
  h = await startHarness();
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  base = `${address}/dicom-web`;
  client = new api.DICOMwebClient({ url: base, verbose: false } as never) as unknown as Client;

  const files = await corpusFiles('ts', 'objects', 'series', 'charset', 'odd');
  corpus = await Promise.all(
    files.map(async (f) => {
      const bytes = await readFile(f.path);
      const parsed = await parseInstance(createReadStream(f.path)).catch(() => undefined);
      const storable =
        !!parsed &&
        hasPart10Preamble(bytes.subarray(0, 132)) &&
        parsed.hasFileMeta &&
        parsed.sopClassUid !== MEDIA_STORAGE_DIRECTORY &&
        // a missing Study/Series Instance UID is replaced by a derived one (see hierarchyUids)
        [parsed.sopClassUid, parsed.sopInstanceUid, parsed.studyInstanceUid || '1.2', parsed.seriesInstanceUid || '1.2'].every((u) => UID.test(u));
      // the index files an instance without Study/Series Instance UID under derived UIDs
      const uids = parsed && hierarchyUids(parsed.sopInstanceUid, parsed.studyInstanceUid, parsed.seriesInstanceUid);
      return { ...f, bytes, parsed: parsed && uids ? { ...parsed, studyInstanceUid: uids.study, seriesInstanceUid: uids.series } : parsed, storable };
    }),
  );
  stored = corpus.filter((c) => c.storable);

  // STOW-RS with dicomweb-client over HTTP, in batches (the client builds each body in memory).
  const started = performance.now();
  for (let i = 0; i < corpus.length; i += 20) {
    const batch = corpus.slice(i, i + 20);
    const datasets = batch.map((c) => new Uint8Array(c.bytes).buffer);
    const response: unknown = await client.storeInstances({ datasets }).catch((err: { status?: number; response?: unknown }) => {
      // 409 (every part failed) is an HTTP error for the client; the body still says why
      if (err.status === 409) return err.response;
      throw err;
    });
    const ds = (typeof response === 'string' ? JSON.parse(response) : response) as Ds;
    const referenced = ((ds['00081199']?.Value ?? []) as Ds[]).map((it) => v(it, '00081155'));
    const failures = ((ds['00081198']?.Value ?? []) as Ds[]).map((it) => v(it, '00081197'));
    expect(referenced).toEqual(batch.filter((c) => c.storable).map((c) => c.parsed!.sopInstanceUid));
    expect(failures).toEqual(batch.filter((c) => !c.storable).map((c) => (c.parsed?.sopClassUid === MEDIA_STORAGE_DIRECTORY ? 0x0122 : 0xc000)));
    stowStats.bytes += batch.reduce((n, c) => n + c.size, 0);
  }
  stowStats.ms = performance.now() - started;
  await h.waitForInstances(stored.length);
  console.info(
    `STOW-RS (dicomweb-client, HTTP, batches of 20): ${corpus.length} files, ${(stowStats.bytes / 1e6).toFixed(1)} MB in ${stowStats.ms.toFixed(0)} ms = ${(stowStats.bytes / 1e6 / (stowStats.ms / 1000)).toFixed(1)} MB/s`,
  );
}, 300_000);

afterAll(async () => {
  await h?.close();
});

describe('QIDO-RS', () => {
  it('finds every study, with counts, modalities and RetrieveURL', async () => {
    const studies = new Map<string, Entry[]>();
    for (const c of stored) studies.set(c.parsed!.studyInstanceUid, [...(studies.get(c.parsed!.studyInstanceUid) ?? []), c]);
    const results = await qido('/dicom-web/studies?limit=1000');
    expect(results.map((r) => v(r, '0020000D')).sort()).toEqual([...studies.keys()].sort());
    for (const r of results) {
      const files = studies.get(v(r, '0020000D') as string)!;
      expect(v(r, '00201208')).toBe(files.length);
      expect(v(r, '00201206')).toBe(new Set(files.map((f) => f.parsed!.seriesInstanceUid)).size);
      // ModalitiesInStudy comes from the series rows: a series whose instances disagree on Modality (the
      // corpus has an SR inside a CT series) shows one of them.
      const modality = (f: Entry): string => (f.parsed!.json['00080060']?.Value?.[0] as string | undefined) ?? '';
      const got = (r['00080061']?.Value ?? []) as string[];
      expect(got.every((m) => files.some((f) => modality(f) === m))).toBe(true);
      for (const s of new Set(files.map((f) => f.parsed!.seriesInstanceUid))) {
        const ms = new Set(files.filter((f) => f.parsed!.seriesInstanceUid === s).map(modality));
        if (ms.size === 1 && [...ms][0] !== '') expect(got).toContain([...ms][0]);
      }
      expect(v(r, '00081190')).toBe(
        `http://localhost:80/dicom-web/studies/${v(r, '0020000D') as string}`.replace('localhost:80', String(r['00081190']!.Value![0]).split('/')[2]!),
      );
      expect(v(r, '00080056')).toBe('ONLINE');
    }
  });

  it('dicomweb-client searchForStudies over HTTP: exact, case-insensitive, wildcard, accent-insensitive PN', async () => {
    const names = async (PatientName: string): Promise<string[]> => {
      const res = (await client.searchForStudies({ queryParams: { PatientName } })) as Ds[];
      return res.map((r) => (r['00100010']!.Value![0] as { Alphabetic: string }).Alphabetic);
    };
    expect(await names('Wang^XiaoDong')).toEqual(['Wang^XiaoDong']);
    expect(await names('wang^xiaodong')).toEqual(['Wang^XiaoDong']);
    expect(await names('WAN*')).toEqual(['Wang^XiaoDong']);
    expect(await names('buc^jerome')).toEqual(['Buc^Jérôme']);
    expect(await names('Yamada^Tarou')).toEqual(['Yamada^Tarou']);
    // the index holds the Alphabetic group of a PN (shared/dicom indexAttributes)
    expect(await names('*Tarou')).toEqual(['Yamada^Tarou']);
    expect(await names('Hong^G?ldong')).toEqual(['Hong^Gildong']);
    expect(await names('DOE^J?')).toEqual(['DOE^J1']);
    expect(await names('Nobody')).toEqual([]);
  });

  it('answers non-ASCII names in UTF-8 with SpecificCharacterSet ISO_IR 192', async () => {
    const [jp] = await qido('/dicom-web/studies?PatientName=yamada%5Etarou');
    expect(jp!['00100010']!.Value![0]).toEqual({ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' });
    expect(jp!['00080005']!.Value).toEqual(['ISO_IR 192']);
    const [ct] = await qido('/dicom-web/studies?PatientID=1CT1');
    expect(ct!['00080005']).toBeUndefined();
  });

  it('fuzzymatching=true matches word prefixes', async () => {
    const r = await qido('/dicom-web/studies?PatientName=xiao&fuzzymatching=true');
    expect(r.map((x) => (x['00100010']!.Value![0] as { Alphabetic: string }).Alphabetic)).toEqual(['Wang^XiaoDong']);
  });

  it('StudyDate ranges and UID lists', async () => {
    const inRange = new Set(
      stored
        .filter(
          (c) =>
            ((c.parsed!.json['00080020']?.Value?.[0] as string) ?? '') >= '20100101' &&
            ((c.parsed!.json['00080020']?.Value?.[0] as string) ?? '') <= '20151231' &&
            c.parsed!.json['00080020']?.Value?.[0],
        )
        .map((c) => c.parsed!.studyInstanceUid),
    );
    expect(inRange.size).toBeGreaterThan(1);
    const r = await qido('/dicom-web/studies?StudyDate=20100101-20151231&limit=1000');
    expect(new Set(r.map((x) => v(x, '0020000D')))).toEqual(inRange);
    const before = await qido('/dicom-web/studies?00080020=-19991231&limit=1000');
    for (const x of before) expect(String(v(x, '00080020')) <= '19991231').toBe(true);
    const two = await qido('/dicom-web/studies?StudyInstanceUID=1.2.3,2.3.4');
    expect(two.map((x) => v(x, '0020000D')).sort()).toEqual(['1.2.3', '2.3.4']);
    expect(two.every((x) => v(x, '00100020') === 'TEST_1')).toBe(true);
  });

  it('limit and offset page through a stable order, with a Warning when more remain', async () => {
    const all = await qido('/dicom-web/studies?limit=1000');
    const first = await get('/dicom-web/studies?limit=5');
    expect(first.headers['warning']).toMatch(/^299 .*additional results/);
    const pages: unknown[] = [];
    for (let offset = 0; offset < all.length; offset += 7)
      pages.push(...(await qido(`/dicom-web/studies?limit=7&offset=${offset}`)).map((x) => v(x, '0020000D')));
    expect(pages).toEqual(all.map((x) => v(x, '0020000D')));
    expect((await get(`/dicom-web/studies?limit=1000`)).headers['warning']).toBeUndefined();
  });

  it('a page at an offset is exactly that slice of the whole result, computed attributes included, at every level', async () => {
    for (const [path, size] of [
      ['/dicom-web/studies?includefield=all', 7],
      ['/dicom-web/studies?ModalitiesInStudy=MR,CT', 3],
      ['/dicom-web/series?includefield=00080021', 5],
      ['/dicom-web/instances?includefield=00200013', 11],
    ] as const) {
      const all = await qido(`${path}&limit=1000`);
      expect(all.length, path).toBeGreaterThan(size);
      for (const offset of [1, size, all.length - 2]) {
        const page = await qido(`${path}&limit=${size}&offset=${offset}`);
        expect(page, `${path} offset ${offset}`).toEqual(all.slice(offset, offset + size));
      }
    }
  });

  it('series and instance levels, scoped and unscoped, with counts and parent attributes', async () => {
    const mr = byName('series/dcm4che_MR_implicit/MR01.dcm').parsed!;
    const series = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/series`);
    expect(series).toHaveLength(1);
    expect(v(series[0]!, '0020000E')).toBe(mr.seriesInstanceUid);
    expect(v(series[0]!, '00201209')).toBe(16);
    expect(v(series[0]!, '00080060')).toBe('MR');
    expect(series[0]!['00100010']).toBeUndefined(); // study-scoped: no study attributes
    const instances = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/series/${mr.seriesInstanceUid}/instances`);
    expect(instances).toHaveLength(16);
    expect(
      instances.every(
        (i) =>
          v(i, '00280010') === 256 && typeof v(i, '00080016') === 'string' && String(v(i, '00081190')).endsWith(`/instances/${v(i, '00080018') as string}`),
      ),
    ).toBe(true);

    const allMrSeries = await qido('/dicom-web/series?Modality=MR&limit=1000');
    const expectedMr = new Set(stored.filter((c) => c.parsed!.json['00080060']?.Value?.[0] === 'MR').map((c) => c.parsed!.seriesInstanceUid));
    expect(new Set(allMrSeries.map((s) => v(s, '0020000E')))).toEqual(expectedMr);
    expect(allMrSeries.every((s) => s['00100010'] !== undefined && typeof v(s, '0020000D') === 'string')).toBe(true); // unscoped: study attributes too

    const picked = [byName('series/nist_MR_explicit/IM03.dcm'), byName('objects/CT_small.dcm')].map((c) => c.parsed!.sopInstanceUid);
    const byUid = await qido(`/dicom-web/instances?SOPInstanceUID=${picked.join(',')}`);
    expect(byUid.map((i) => v(i, '00080018')).sort()).toEqual([...picked].sort());
    expect(byUid.every((i) => typeof v(i, '00080060') === 'string' && i['00100020'] !== undefined)).toBe(true);
    const third = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/instances?InstanceNumber=3`);
    expect(third).toHaveLength(1);
    const segs = await qido('/dicom-web/studies?ModalitiesInStudy=SEG');
    expect(segs.length).toBe(new Set(stored.filter((c) => c.parsed!.json['00080060']?.Value?.[0] === 'SEG').map((c) => c.parsed!.studyInstanceUid)).size);
  });

  it('includefield: named attributes, and all', async () => {
    const mr = byName('series/nist_MR_explicit/IM01.dcm').parsed!;
    const [s] = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/series?includefield=Manufacturer&includefield=00081090`);
    expect(v(s!, '00080070')).toBe(mr.json['00080070']!.Value![0]);
    const [i] = await qido(
      `/dicom-web/studies/${mr.studyInstanceUid}/series/${mr.seriesInstanceUid}/instances?SOPInstanceUID=${mr.sopInstanceUid}&includefield=all`,
    );
    expect(v(i!, '00180050')).toBe(mr.json['00180050']!.Value![0]); // SliceThickness: from the whole data set
    expect(i!['7FE00010']!.BulkDataURI).toMatch(/^http:\/\/.*\/instances\/[\d.]+\/bulkdata\/7FE00010$/);
    const [plain] = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/series/${mr.seriesInstanceUid}/instances?SOPInstanceUID=${mr.sopInstanceUid}`);
    expect(plain!['00180050']).toBeUndefined();
  });

  it('unsupported or unknown keys and bad values are 400 problem+json naming them', async () => {
    for (const [url, word] of [
      ['/dicom-web/studies?PatientAge=040Y', 'PatientAge'],
      ['/dicom-web/studies?Bogus=1', 'Bogus'],
      ['/dicom-web/studies?StudyDate=yesterday', 'StudyDate'],
      ['/dicom-web/studies?Modality=CT', 'ModalitiesInStudy'],
      ['/dicom-web/studies?limit=ten', 'limit'],
    ] as const) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().detail).toContain(word);
    }
    expect((await get('/dicom-web/studies', { accept: 'application/dicom+xml' })).statusCode).toBe(406);
  });

  it('empty results are 200 []', async () => {
    const res = await get('/dicom-web/studies?PatientID=no-such-patient');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual([]);
  });
});

describe('WADO-RS', () => {
  it('every stored instance comes back byte-identical (dicomweb-client over HTTP)', async () => {
    for (const c of stored) {
      const p = c.parsed!;
      const buf = (await client.retrieveInstance({
        studyInstanceUID: p.studyInstanceUid,
        seriesInstanceUID: p.seriesInstanceUid,
        sopInstanceUID: p.sopInstanceUid,
      })) as ArrayBuffer;
      expect(sha256(new Uint8Array(buf)), c.name).toBe(sha256(c.bytes));
    }
  });

  it('a study and a series stream all their instances as stored', async () => {
    const mr = byName('series/dcm4che_MR_implicit/MR01.dcm').parsed!;
    const files = stored.filter((c) => c.parsed!.seriesInstanceUid === mr.seriesInstanceUid);
    for (const url of [`/dicom-web/studies/${mr.studyInstanceUid}`, `/dicom-web/studies/${mr.studyInstanceUid}/series/${mr.seriesInstanceUid}`]) {
      const res = await get(url, { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
      const parts = parseMultipart(res.rawPayload, String(res.headers['content-type']));
      expect(parts.map((p) => sha256(p.body)).sort()).toEqual(files.map((f) => sha256(f.bytes)).sort());
      expect(parts.every((p) => p.headers['content-type'] === 'application/dicom; transfer-syntax=1.2.840.10008.1.2')).toBe(true);
      // HEAD: the same head, no body
      const head = await h.app.inject({ method: 'HEAD', url, headers: { accept: 'multipart/related; type="application/dicom"' } });
      expect(head.statusCode).toBe(200);
      expect(head.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
      expect(head.headers['etag']).toBe(res.headers['etag']);
      expect(head.rawPayload.length).toBe(0);
    }
  });

  it('406 for a transfer syntax other than the stored one; 404 problem+json for unknown UIDs', async () => {
    const ct = byName('objects/CT_small.dcm').parsed!;
    const url = `/dicom-web/studies/${ct.studyInstanceUid}/series/${ct.seriesInstanceUid}/instances/${ct.sopInstanceUid}`;
    const res = await get(url, { accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50' });
    expect(res.statusCode).toBe(406);
    expect(res.headers['content-type']).toContain('application/problem+json');
    for (const missing of [
      '/dicom-web/studies/1.2.999',
      `/dicom-web/studies/${ct.studyInstanceUid}/series/1.2.999/metadata`,
      `${url.replace(ct.sopInstanceUid, '1.2.999')}/frames/1`,
    ]) {
      const r = await get(missing);
      expect(r.statusCode, missing).toBe(404);
      expect(r.json()).toMatchObject({ status: 404, title: 'Not found' });
    }
  });

  it('metadata has UTF-8 names for every character set and absolute BulkDataURIs that resolve', async () => {
    const expected: Record<string, string> = {
      'charset/ISO_IR_192_utf8.dcm': '王^小東',
      'charset/ISO_2022_IR_87_japanese.dcm': '山田^太郎',
      'charset/ISO_2022_IR_149_korean.dcm': '洪^吉洞',
    };
    // (a charset fragment without patient or pixel data is stored too, under derived UIDs: nothing to check there)
    for (const c of stored.filter((x) => x.name.startsWith('charset/') && x.parsed!.json['00100010'] && x.parsed!.json['7FE00010'])) {
      const p = c.parsed!;
      const md = (await client.retrieveStudyMetadata({ studyInstanceUID: p.studyInstanceUid })) as Ds[];
      const ds = md.find((d) => v(d, '00080018') === p.sopInstanceUid)!;
      expect(ds['00100010']!.Value![0], c.name).toEqual(p.json['00100010']!.Value![0]);
      if (expected[c.name]) expect((ds['00100010']!.Value![0] as { Ideographic: string }).Ideographic).toBe(expected[c.name]);
      const nonAscii = /[^\x00-\x7f]/.test(JSON.stringify(ds['00100010']));
      if (nonAscii) expect(ds['00080005']!.Value).toEqual(['ISO_IR 192']);
      const uri = ds['7FE00010']!.BulkDataURI!;
      expect(uri).toBe(`${base}/studies/${p.studyInstanceUid}/series/${p.seriesInstanceUid}/instances/${p.sopInstanceUid}/bulkdata/7FE00010`);
      const res = await get(uri.replace(/^http:\/\/[^/]+/, ''), { accept: 'application/octet-stream' });
      const r = p.bulkData['7FE00010']!;
      expect(res.rawPayload.equals(c.bytes.subarray(r.offset, r.offset + r.length))).toBe(true);
    }
    const names = await Promise.all(
      ['charset/ISO_IR_100_french.dcm', 'charset/ISO_IR_144_cyrillic.dcm', 'charset/ISO_IR_127_arabic.dcm'].map(async (n) => {
        const p = byName(n).parsed!;
        const res = await get(`/dicom-web/studies/${p.studyInstanceUid}/series/${p.seriesInstanceUid}/instances/${p.sopInstanceUid}/metadata`);
        return ((res.json() as Ds[])[0]!['00100010']!.Value![0] as { Alphabetic: string }).Alphabetic;
      }),
    );
    expect(names).toEqual(['Buc^Jérôme', 'Люкceмбypг', 'قباني^لنزار']);
  });

  it('series metadata streams one entry per instance', async () => {
    const mr = byName('series/dcm4che_MR_implicit/MR01.dcm').parsed!;
    const md = await qido(`/dicom-web/studies/${mr.studyInstanceUid}/series/${mr.seriesInstanceUid}/metadata`);
    expect(md).toHaveLength(16);
  });

  it('frames of multi-frame instances: right count, sizes and bytes', async () => {
    const cases: Array<[string, Array<{ mediaType: string; transferSyntaxUID?: string }> | undefined]> = [
      ['objects/NM_multiframe_13frames.dcm', undefined],
      ['objects/RTDOSE_15frames.dcm', undefined],
      ['objects/MR_enhanced_bruker_4frames.dcm', undefined],
      ['objects/SEG_liver_3frames.dcm', undefined],
      ['objects/US_multiframe_jpeg_30frames.dcm', [{ mediaType: 'image/jpeg', transferSyntaxUID: '1.2.840.10008.1.2.4.50' }]],
      ['objects/US_multiframe_palette_rle_10frames.dcm', [{ mediaType: 'image/x-dicom-rle', transferSyntaxUID: '1.2.840.10008.1.2.5' }]],
      ['ts/j2k-lossless_emri_small_10frames.dcm', [{ mediaType: 'application/octet-stream', transferSyntaxUID: '*' }]],
    ];
    for (const [name, mediaTypes] of cases) {
      const c = byName(name);
      const p = c.parsed!;
      const frames = p.pixelData!.frames;
      const numbers = frames.map((_, i) => i + 1);
      const got = (await client.retrieveInstanceFrames({
        studyInstanceUID: p.studyInstanceUid,
        seriesInstanceUID: p.seriesInstanceUid,
        sopInstanceUID: p.sopInstanceUid,
        frameNumbers: numbers,
        ...(mediaTypes ? { mediaTypes } : {}),
      })) as ArrayBuffer[];
      expect(got.length, name).toBe(frames.length);
      got.forEach((buf, i) => {
        const want = Buffer.concat(frames[i]!.map((r) => c.bytes.subarray(r.offset, r.offset + r.length)));
        expect(Buffer.from(buf).equals(want), `${name} frame ${i + 1}`).toBe(true);
      });
    }
  });

  it('frame negotiation and errors over inject', async () => {
    const us = byName('objects/US_multiframe_jpeg_30frames.dcm').parsed!;
    const url = `/dicom-web/studies/${us.studyInstanceUid}/series/${us.seriesInstanceUid}/instances/${us.sopInstanceUid}/frames`;
    const ok = await get(`${url}/2,30`, { accept: 'multipart/related; type="image/jpeg"' });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-type']).toMatch(/^multipart\/related; type="image\/jpeg"/);
    const parts = parseMultipart(ok.rawPayload, String(ok.headers['content-type']));
    expect(parts).toHaveLength(2);
    expect(parts[0]!.headers['content-type']).toBe('image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50');
    expect(parts.every((x) => x.body[0] === 0xff && x.body[1] === 0xd8)).toBe(true);
    // octet-stream without transfer-syntax means Explicit VR Little Endian: the frame is decoded (8-bit RGB)
    const decoded = await get(`${url}/1`, { accept: 'multipart/related; type="application/octet-stream"' });
    expect(decoded.statusCode).toBe(200);
    const dparts = parseMultipart(decoded.rawPayload, String(decoded.headers['content-type']));
    expect(dparts[0]!.headers['content-type']).toBe('application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1');
    expect(dparts[0]!.body.length).toBe((us.json['00280010']!.Value![0] as number) * (us.json['00280011']!.Value![0] as number) * 3);
    expect((await get(`${url}/1`, { accept: 'multipart/related; type="image/jls"' })).statusCode).toBe(406);
    expect((await get(`${url}/31`)).statusCode).toBe(404);
    expect((await get(`${url}/0`)).statusCode).toBe(400);
    expect((await get(`${url}/a,b`)).statusCode).toBe(400);
    const be = byName('ts/explicit-be_MR_small_bigendian.dcm').parsed!;
    // big endian frames are byte-swapped to little endian
    const beFrame = await get(`/dicom-web/studies/${be.studyInstanceUid}/series/${be.seriesInstanceUid}/instances/${be.sopInstanceUid}/frames/1`);
    expect(beFrame.statusCode).toBe(200);
    expect(parseMultipart(beFrame.rawPayload, String(beFrame.headers['content-type']))[0]!.body.length).toBe(
      (be.json['00280010']!.Value![0] as number) * (be.json['00280011']!.Value![0] as number) * 2,
    );
  });

  it('bulk data: multipart by default, single part with Range on request', async () => {
    const ecg = byName('objects/ECG_12lead_waveform.dcm');
    const p = ecg.parsed!;
    const path = '54000100/0/54001010';
    const r = p.bulkData[path]!;
    const url = `/dicom-web/studies/${p.studyInstanceUid}/series/${p.seriesInstanceUid}/instances/${p.sopInstanceUid}/bulkdata/${path}`;
    const multi = await get(url);
    expect(multi.statusCode).toBe(200);
    const [part] = parseMultipart(multi.rawPayload, String(multi.headers['content-type']));
    expect(part!.body.equals(ecg.bytes.subarray(r.offset, r.offset + r.length))).toBe(true);
    const ranged = await get(url, { accept: 'application/octet-stream', range: 'bytes=10-19' });
    expect(ranged.statusCode).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 10-19/${r.length}`);
    expect(ranged.rawPayload.equals(ecg.bytes.subarray(r.offset + 10, r.offset + 20))).toBe(true);
    const md = await qido(`/dicom-web/studies/${p.studyInstanceUid}/series/${p.seriesInstanceUid}/instances/${p.sopInstanceUid}/metadata`);
    const seq = md[0]!['54000100']!.Value as Ds[];
    expect(seq[0]!['54001010']!.BulkDataURI).toMatch(new RegExp(`/bulkdata/${path}$`));
    expect((await get(url.replace(path, '00110011'))).statusCode).toBe(404);
  });
});

describe('health and lifecycle', () => {
  it('/livez and /readyz', async () => {
    expect((await get('/livez')).statusCode).toBe(200);
    const ready = await get('/readyz');
    expect(ready.statusCode).toBe(200);
    const down = Object.assign(Object.create(h.queues) as typeof h.queues, { ping: () => Promise.reject(new Error('down')) });
    const app = await buildApp({ config: h.config, log: h.log, db: h.db, store: h.store, queues: down });
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 503, failed: ['queue'] });
    await app.close();
  });

  it('startDicomweb listens and close() lets an in-flight download finish', async () => {
    const running = await startDicomweb({ config: h.config, log: h.log, db: h.db, store: h.store, queues: h.queues });
    const mr = byName('series/dcm4che_MR_implicit/MR01.dcm').parsed!;
    // Headers received: the download is in flight (a fixed sleep raced the request under load).
    const res = await fetch(`${running.address}/dicom-web/studies/${mr.studyInstanceUid}`);
    const closing = running.close();
    const done = { status: res.status, bytes: (await res.arrayBuffer()).byteLength };
    await closing;
    expect(done.status).toBe(200);
    expect(done.bytes).toBeGreaterThan(16 * 132_000);
  });
});
