/**
 * STOW-RS metadata + bulk data (PS3.18 §10.5.1.1): corpus instances taken apart into DICOM JSON (our own
 * parser) and bulk data parts, posted as `multipart/related; type="application/dicom+json"`, stored by the
 * real worker, then read back over HTTP with dicomweb-client and checked against the original file:
 * dcmdump parses the result, pixel data and compressed frames are byte-identical, and every attribute
 * round-trips through /metadata. Also the per-instance failures and the whole-request errors.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api } from 'dicomweb-client';
import XHR from 'xhr2';
import { parseInstance, type ParsedInstance } from '@portico/dicom';
import { corpusDir } from '@portico/testing';
import { closeDelimiter, newBoundary, partHead } from './multipart.ts';
import { parseMultipart, startHarness, type Harness } from './test-support.ts';

(globalThis as Record<string, unknown>)['XMLHttpRequest'] = XHR;
const run = promisify(execFile);

type El = { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string };
type Ds = Record<string, El>;
interface Part {
  headers: Record<string, string>;
  body: Buffer;
}
interface Client {
  retrieveInstance(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }): Promise<ArrayBuffer>;
  retrieveInstanceMetadata(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }): Promise<Ds[]>;
}

const C000 = 0xc000;
const A900 = 0xa900;
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const BULK = 'http://client.example/bulk/';

let h: Harness;
let client: Client;
let scratch: string;

interface Taken {
  parsed: ParsedInstance;
  file: Buffer;
  json: Ds;
  parts: Part[];
}

/** Deep copy of a DICOM JSON value with every relative BulkDataURI `p` turned into `${BULK}${id}/${p}`. */
function rebase<T>(v: T, id: string): T {
  if (Array.isArray(v)) return v.map((x: unknown) => rebase(x, id)) as T;
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === 'BulkDataURI' ? `${BULK}${id}/${String(x)}` : rebase(x, id)])) as T;
}

/** A corpus file as metadata + bulk data parts: native bulk values as octet-stream, compressed frames as `frameType`. */
async function takeApart(name: string, id: string, frameType?: string): Promise<Taken> {
  const path = join(corpusDir(), name);
  const file = await readFile(path);
  const parsed = await parseInstance(createReadStream(path));
  const parts: Part[] = [];
  for (const [p, range] of Object.entries(parsed.bulkData)) {
    if (p === '7FE00010' && parsed.pixelData?.encapsulated) continue;
    parts.push({
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Location': `${BULK}${id}/${p}` },
      body: file.subarray(range!.offset, range!.offset + range!.length),
    });
  }
  if (parsed.pixelData?.encapsulated) {
    for (const frame of parsed.pixelData.frames) {
      parts.push({
        headers: { 'Content-Type': frameType!, 'Content-Location': `${BULK}${id}/7FE00010` },
        body: Buffer.concat(frame.map((r) => file.subarray(r.offset, r.offset + r.length))),
      });
    }
  }
  return { parsed, file, json: rebase(parsed.json as Ds, id), parts };
}

function jsonBody(datasets: unknown, bulk: Part[], metadataType = 'application/dicom+json'): { body: Buffer; contentType: string } {
  const boundary = newBoundary();
  const all: Part[] = [{ headers: { 'Content-Type': metadataType }, body: Buffer.from(JSON.stringify(datasets)) }, ...bulk];
  const chunks = all.flatMap((p, i) => [partHead(boundary, i, p.headers), p.body]);
  chunks.push(closeDelimiter(boundary, all.length));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="${metadataType}"; boundary=${boundary}` };
}

async function stowJson(datasets: unknown, bulk: Part[], url = '/dicom-web/studies') {
  const { body, contentType } = jsonBody(datasets, bulk);
  const res = await h.app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': contentType, accept: 'application/dicom+json' } });
  return { res, json: res.headers['content-type']?.toString().includes('dicom+json') ? (res.json() as Ds) : ({} as Ds) };
}

const items = (ds: Ds, tag: string): Ds[] => (ds[tag]?.Value ?? []) as Ds[];
const reasons = (ds: Ds): unknown[] => items(ds, '00081198').map((i) => i['00081197']?.Value?.[0]);
const uidsOf = (p: ParsedInstance) => ({ studyInstanceUID: p.studyInstanceUid, seriesInstanceUID: p.seriesInstanceUid, sopInstanceUID: p.sopInstanceUid });

/** Metadata without the parts that legitimately differ: BulkDataURIs (server's own), the listed tags. */
function comparable(ds: Ds, drop: readonly string[] = []): Ds {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => !drop.includes(k))
        .map(([k, x]) => [k, k === 'BulkDataURI' ? 'bulk' : strip(x)]),
    );
  };
  return strip(ds) as Ds;
}

/** dcmdump reads the stored file cleanly, and dciodvfy finds no more IOD errors than in the original file. */
async function checkWithDcmtk(bytes: Buffer, original: Buffer, label: string): Promise<void> {
  const path = join(scratch, `${label}.dcm`);
  const originalPath = join(scratch, `${label}.orig.dcm`);
  await writeFile(path, bytes);
  await writeFile(originalPath, original);
  const dump = await run('dcmdump', ['-q', '+E', path]);
  expect(dump.stderr, `dcmdump ${label}`).toBe('');
  // dciodvfy judges the IOD, which the sender's data set decides: compare with what it says of the original.
  const errors = async (p: string): Promise<string[]> => {
    // dciodvfy exits non-zero when it finds errors (the rejection carries its output); a missing dciodvfy
    // (ENOENT) must fail the test rather than compare two empty lists.
    const r = await run('dciodvfy', [p]).catch((err: NodeJS.ErrnoException & { stdout: string; stderr: string }) => {
      if (err.code === 'ENOENT') throw new Error('dciodvfy is not installed (apt-get install dicom3tools)', { cause: err });
      return err;
    });
    return `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.startsWith('Error'));
  };
  const [ours, theirs] = await Promise.all([errors(path), errors(originalPath)]);
  expect(ours.length, `dciodvfy ${label}: ${ours.join('; ')}`).toBeLessThanOrEqual(theirs.length);
}

beforeAll(async () => {
  h = await startHarness({ 'http.stowMaxBytes': 2_000_000 });
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  client = new api.DICOMwebClient({ url: `${address}/dicom-web`, verbose: false } as never) as unknown as Client;
  scratch = await mkdtemp(join(tmpdir(), 'portico-stowjson-'));
});
afterAll(async () => {
  await h?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('STOW-RS application/dicom+json + bulk data', () => {
  it('native CT (non-ASCII PN, sequence added) and RGB: 200, stored Part 10 parses, pixels identical, attributes round-trip', async () => {
    const ct = await takeApart('objects/CT_small.dcm', 'ct');
    const rgb = await takeApart('objects/SC_rgb.dcm', 'rgb');
    ct.json['00100010'] = { vr: 'PN', Value: [{ Alphabetic: 'Müller^Jürgen', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }] };
    ct.json['00081110'] = {
      vr: 'SQ',
      Value: [
        {
          '00081150': { vr: 'UI', Value: ['1.2.840.10008.3.1.2.3.3'] },
          '00081155': { vr: 'UI', Value: ['1.2.3.4.5.6'] },
          '00081160': { vr: 'IS', Value: [3, 4] },
        },
      ],
    };
    const { res, json } = await stowJson([ct.json, rgb.json], [...ct.parts, ...rgb.parts]);
    expect(res.statusCode, res.body).toBe(200);
    expect(items(json, '00081199').map((i) => i['00081155']!.Value![0])).toEqual([ct.parsed.sopInstanceUid, rgb.parsed.sopInstanceUid]);
    await h.waitForInstances(2);

    for (const [label, t] of [
      ['ct', ct],
      ['rgb', rgb],
    ] as const) {
      const stored = Buffer.from(await client.retrieveInstance(uidsOf(t.parsed)));
      await checkWithDcmtk(stored, t.file, label);
      const back = await parseInstance(Readable.from([stored]));
      expect(back.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
      const [a, b] = [t.parsed.pixelData!, back.pixelData!];
      expect(stored.subarray(b.valueOffset, b.valueOffset + b.valueLength!).equals(t.file.subarray(a.valueOffset, a.valueOffset + a.valueLength!))).toBe(true);

      const [metadata] = await client.retrieveInstanceMetadata(uidsOf(t.parsed));
      // Data Set Trailing Padding has no meaning (PS3.5 §7.5.3 / §A.1) and is not written.
      expect(comparable(metadata!, ['00080005', 'FFFCFFFC'])).toEqual(comparable(t.json, ['00080005', 'FFFCFFFC']));
    }
    const [meta] = await client.retrieveInstanceMetadata(uidsOf(ct.parsed));
    expect(meta!['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
    expect(meta!['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }]);
    expect(meta!['00081110']!.Value).toEqual([
      {
        '00081150': { vr: 'UI', Value: ['1.2.840.10008.3.1.2.3.3'] },
        '00081155': { vr: 'UI', Value: ['1.2.3.4.5.6'] },
        '00081160': { vr: 'IS', Value: [3, 4] },
      },
    ]);
    // numbers stay numbers: DS Pixel Spacing, US Rows
    expect(meta!['00280030']!.Value).toEqual(ct.json['00280030']!.Value);
    expect(typeof meta!['00280010']!.Value![0]).toBe('number');
  });

  it('compressed pixel data: JPEG baseline frames as image/jpeg parts are stored encapsulated, frames byte-identical', async () => {
    const single = await takeApart('odd/jpeg_with_icon_sequence.dcm', 'icon', `image/jpeg; transfer-syntax=${JPEG_BASELINE}`);
    const multi = await takeApart('objects/US_multiframe_jpeg_30frames.dcm', 'us', 'image/jpeg');
    const { res, json } = await stowJson([single.json, multi.json], [...multi.parts, ...single.parts]);
    expect(res.statusCode, res.body).toBe(200);
    expect(items(json, '00081199')).toHaveLength(2);
    await h.waitForInstances(4);
    for (const [label, t] of [
      ['icon', single],
      ['us', multi],
    ] as const) {
      const stored = Buffer.from(await client.retrieveInstance(uidsOf(t.parsed)));
      await checkWithDcmtk(stored, t.file, label);
      const back = await parseInstance(Readable.from([stored]));
      expect(back.transferSyntaxUid).toBe(JPEG_BASELINE);
      expect(back.pixelData!.frames).toHaveLength(t.parsed.pixelData!.frames.length);
      const { seriesInstanceUid: se, studyInstanceUid: st, sopInstanceUid: sop } = t.parsed;
      const frameList = t.parsed.pixelData!.frames.map((_, i) => i + 1).join(',');
      const res2 = await h.app.inject({
        method: 'GET',
        url: `/dicom-web/studies/${st}/series/${se}/instances/${sop}/frames/${frameList}`,
        headers: { accept: `multipart/related; type="image/jpeg"; transfer-syntax=${JPEG_BASELINE}` },
      });
      expect(res2.statusCode).toBe(200);
      const frames = parseMultipart(res2.rawPayload, String(res2.headers['content-type']));
      const sent = t.parts.filter((p) => p.headers['Content-Type']!.startsWith('image/jpeg')).map((p) => p.body);
      expect(frames.map((f, i) => f.body.equals(sent[i]!))).toEqual(sent.map(() => true));
      const [metadata] = await client.retrieveInstanceMetadata(uidsOf(t.parsed));
      expect(comparable(metadata!, ['00080005'])).toEqual(comparable(t.json, ['00080005']));
      if (label === 'icon') {
        // Latin-1 text in the original (ISO_IR 100) came as Unicode JSON and is stored as UTF-8.
        expect(t.json['00080005']!.Value).toEqual(['ISO_IR 100']);
        expect(metadata!['00080005']!.Value).toEqual(['ISO_IR 192']);
      }
    }
  });

  it('per-instance failures: missing SOP Instance UID, unmatched BulkDataURI, other study than the URL; 202 with the good one', async () => {
    const sr = await takeApart('objects/SR_basic_text.dcm', 'sr');
    const noUid = structuredClone(sr.json);
    delete noUid['00080018'];
    const ct = await takeApart('objects/CT_small.dcm', 'ct2');
    const otherStudy = await takeApart('objects/RTPLAN.dcm', 'rt');
    const { res, json } = await stowJson([sr.json, noUid, ct.json, otherStudy.json], [...otherStudy.parts], `/dicom-web/studies/${sr.parsed.studyInstanceUid}`);
    expect(res.statusCode).toBe(202);
    expect(items(json, '00081199').map((i) => i['00081155']!.Value![0])).toEqual([sr.parsed.sopInstanceUid]);
    expect(reasons(json)).toEqual([C000, C000, A900]);
    const failed = items(json, '00081198').map((i) => i['00081155']?.Value?.[0]);
    expect(failed).toEqual([undefined, ct.parsed.sopInstanceUid, otherStudy.parsed.sopInstanceUid]);
  });

  it('all failed: 409', async () => {
    const ct = await takeApart('objects/CT_small.dcm', 'ct3');
    const { res, json } = await stowJson([ct.json], []);
    expect(res.statusCode).toBe(409);
    expect(reasons(json)).toEqual([C000]);
  });

  it('whole-request errors are problem+json: XML metadata 415, unreadable JSON 400, no metadata 400, too large 413', async () => {
    const xml = jsonBody([], [], 'application/dicom+xml');
    const cases: Array<[string, Buffer, number, RegExp]> = [
      [xml.contentType, xml.body, 415, /application\/dicom\+xml metadata is not implemented/],
      ...(() => {
        const b = newBoundary();
        const broken = Buffer.concat([partHead(b, 0, { 'Content-Type': 'application/dicom+json' }), Buffer.from('[{"00080016":'), closeDelimiter(b, 1)]);
        const onlyBulk = Buffer.concat([
          partHead(b, 0, { 'Content-Type': 'application/octet-stream', 'Content-Location': 'x' }),
          Buffer.from('ab'),
          closeDelimiter(b, 1),
        ]);
        const ct = `multipart/related; type="application/dicom+json"; boundary=${b}`;
        return [
          [ct, broken, 400, /metadata part 1 is not valid JSON/],
          [ct, onlyBulk, 400, /no application\/dicom\+json part/],
        ] as Array<[string, Buffer, number, RegExp]>;
      })(),
    ];
    const big = jsonBody([], [{ headers: { 'Content-Type': 'application/octet-stream', 'Content-Location': 'x' }, body: Buffer.alloc(2_100_000) }]);
    cases.push([big.contentType, big.body, 413, /exceeds the STOW-RS limit of 2000000 bytes \(PORTICO_STOW_MAX_BYTES\)/]);
    for (const [contentType, payload, status, detail] of cases) {
      const res = await h.app.inject({ method: 'POST', url: '/dicom-web/studies', payload, headers: { 'content-type': contentType } });
      expect(res.statusCode, res.body).toBe(status);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status, detail: expect.stringMatching(detail) });
    }
  });
});
