/**
 * The STOW-RS client against real servers: Portico's own DICOMweb service (real PostgreSQL, folder store,
 * ingest worker), a bare `node:http` server that records what arrives and answers what the test needs, and
 * Orthanc with its DICOMweb plugin when installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileMetaInformation } from '@portico/dicom';
import { corpusDir, corpusManifest, freePort } from '@portico/testing';
import { stowInstances, type StowItem } from './stow-client.ts';
import { parseMultipart, sha256, startHarness, type Harness } from './test-support.ts';

const manifest = corpusManifest();
const studyOf = (file: string): string => manifest.find((r) => r.file === file)!['study instance UID']!;

function item(file: string, opts: { streamed?: boolean; bytes?: Buffer } = {}): StowItem & { bytes: Buffer } {
  const path = join(corpusDir(), file);
  const bytes = opts.bytes ?? readFileSync(path);
  const meta = readFileMetaInformation(bytes);
  return {
    sopInstanceUid: meta.sopInstanceUid,
    sopClassUid: meta.sopClassUid,
    bytes,
    ...(opts.streamed ? { body: () => Promise.resolve(createReadStream(path)), size: bytes.length } : { body: bytes }),
  };
}

describe('STOW-RS client → Portico', () => {
  let h: Harness;
  let base: string;
  beforeAll(async () => {
    h = await startHarness();
    base = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => h?.close());

  it('stores a batch (buffers and streams mixed) and WADO-RS returns the same bytes', async () => {
    const files = ['objects/CT_small.dcm', 'ts/j2k-lossless_emri_small_10frames.dcm', 'objects/SR_basic_text.dcm', 'charset/ISO_IR_100_french.dcm'];
    const items = files.map((f, i) => item(f, { streamed: i % 2 === 1 }));
    const res = await stowInstances({ url: `${base}/dicom-web/studies`, timeoutMs: 60_000 }, items);
    expect(res.httpStatus).toBe(200);
    for (const i of items) expect(res.perInstance.get(i.sopInstanceUid)).toEqual({ ok: true });
    await h.waitForInstances(items.length);
    for (const [k, f] of files.entries()) {
      const r = await h.app.inject({
        method: 'GET',
        url: `/dicom-web/studies/${studyOf(f)}`,
        headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      });
      expect(r.statusCode, f).toBe(200);
      const parts = parseMultipart(r.rawPayload, String(r.headers['content-type']));
      expect(parts.map((p) => sha256(p.body))).toContain(sha256(items[k]!.bytes));
    }
  });

  it('a batch with one truncated file: that one fails, the others are stored (202)', async () => {
    const good = item('objects/PT_jpeg_lossless.dcm');
    const whole = readFileSync(join(corpusDir(), 'objects/DX_monochrome1.dcm'));
    const truncated = item('objects/DX_monochrome1.dcm', { bytes: whole.subarray(0, Math.floor(whole.length * 0.7)) });
    const other = item('objects/SC_rgb.dcm', { streamed: true });
    const res = await stowInstances({ url: `${base}/dicom-web/studies`, timeoutMs: 60_000 }, [good, truncated, other]);
    expect(res.httpStatus).toBe(202);
    expect(res.perInstance.get(good.sopInstanceUid)).toEqual({ ok: true });
    expect(res.perInstance.get(other.sopInstanceUid)).toEqual({ ok: true });
    const failed = res.perInstance.get(truncated.sopInstanceUid)!;
    expect(failed.ok).toBe(false);
    // Portico cannot name a part it could not parse (no UID in its FailedSOPSequence item): the client
    // reports it as not acknowledged; a server that names it gives its FailureReason.
    expect(failed.reason).toMatch(/^0x[0-9A-F]{4}$|^not acknowledged$/);
  });

  it('an instance of another study than the URL names: 409 with FailureReason 0xA900 for it', async () => {
    const ct = item('objects/CT_small.dcm');
    const res = await stowInstances({ url: `${base}/dicom-web/studies/1.2.826.0.1.3680043.10.1482.999`, timeoutMs: 10_000 }, [ct]);
    expect(res.httpStatus).toBe(409);
    expect(res.perInstance.get(ct.sopInstanceUid)).toEqual({ ok: false, reason: '0xA900' });
  });

  it('a 404 endpoint rejects with the status and the server detail', async () => {
    await expect(stowInstances({ url: `${base}/not-dicom-web/studies`, timeoutMs: 10_000 }, [item('objects/CT_small.dcm')])).rejects.toThrow(
      /STOW-RS to http:\/\/127\.0\.0\.1:\d+\/not-dicom-web\/studies answered HTTP 404/,
    );
  });

  it('a closed port rejects with the connection error', async () => {
    const port = await freePort();
    await expect(stowInstances({ url: `http://127.0.0.1:${port}/dicom-web/studies`, timeoutMs: 10_000 }, [item('objects/CT_small.dcm')])).rejects.toThrow(
      /STOW-RS to http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies failed: .*ECONNREFUSED/,
    );
  });
});

describe('STOW-RS client → a recording HTTP server', () => {
  let server: Server;
  let url: string;
  const seen: Array<{ headers: IncomingHttpHeaders; body: Buffer }> = [];
  let answer: (body: Buffer) => { status: number; headers?: Record<string, string>; body: string } = () => ({ status: 200, body: '{}' });

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        seen.push({ headers: req.headers, body });
        const a = answer(body);
        if (a.status === 0) return; // never answer: the client's timeout must fire
        res.writeHead(a.status, { 'content-type': 'application/dicom+json', ...a.headers });
        res.end(a.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web/studies`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('sends headers, a streamed multipart/related body, and reads warnings and unacknowledged instances', async () => {
    const a = item('objects/CT_small.dcm');
    const b = item('objects/SR_basic_text.dcm', { streamed: true });
    const c = item('charset/ISO_IR_192_utf8.dcm');
    answer = () => ({
      status: 202,
      headers: { warning: '299 portico-test: "one instance coerced"' },
      body: JSON.stringify({
        '00081199': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: [a.sopInstanceUid] }, '00081196': { vr: 'US', Value: [0xb000] } }] },
        '00081198': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: [b.sopInstanceUid] }, '00081197': { vr: 'US', Value: [0xa700] } }] },
      }),
    });
    const res = await stowInstances({ url, timeoutMs: 10_000, headers: { Authorization: 'Bearer s3cret' } }, [a, b, c]);
    const req = seen.at(-1)!;
    expect(req.headers.authorization).toBe('Bearer s3cret');
    expect(req.headers.accept).toBe('application/dicom+json');
    expect(req.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"; boundary=\S+$/);
    // streamed: no Content-Length for the whole request
    expect(req.headers['transfer-encoding']).toBe('chunked');
    const parts = parseMultipart(req.body, req.headers['content-type']!);
    expect(parts.map((p) => p.headers['content-type'])).toEqual(['application/dicom', 'application/dicom', 'application/dicom']);
    expect(parts.map((p) => sha256(p.body))).toEqual([a, b, c].map((i) => sha256(i.bytes)));
    expect(parts[0]!.headers['content-length']).toBe(String(a.bytes.length));

    expect(res.httpStatus).toBe(202);
    expect(res.warnings).toEqual(['299 portico-test: "one instance coerced"']);
    expect(res.perInstance.get(a.sopInstanceUid)).toEqual({ ok: true, reason: 'warning 0xB000' });
    expect(res.perInstance.get(b.sopInstanceUid)).toEqual({ ok: false, reason: '0xA700' });
    expect(res.perInstance.get(c.sopInstanceUid)).toEqual({ ok: false, reason: 'not acknowledged' });
  });

  it('409 is a result (every instance failed), not an error', async () => {
    const a = item('objects/CT_small.dcm');
    answer = () => ({
      status: 409,
      body: JSON.stringify({
        '00081198': { vr: 'SQ', Value: [{ '00081155': { vr: 'UI', Value: [a.sopInstanceUid] }, '00081197': { vr: 'US', Value: [0x0122] } }] },
      }),
    });
    const res = await stowInstances({ url, timeoutMs: 10_000 }, [a]);
    expect(res.httpStatus).toBe(409);
    expect(res.perInstance.get(a.sopInstanceUid)).toEqual({ ok: false, reason: '0x0122' });
  });

  it('an HTTP error rejects with the problem+json detail; credentials in the URL are not repeated', async () => {
    answer = () => ({
      status: 503,
      headers: { 'content-type': 'application/problem+json' },
      body: JSON.stringify({ title: 'Service Unavailable', detail: 'archive is read-only until 06:00' }),
    });
    const withCredentials = url.replace('http://', 'http://user:pw@') + '?token=abc';
    await expect(stowInstances({ url: withCredentials, timeoutMs: 10_000 }, [item('objects/CT_small.dcm')])).rejects.toThrow(
      /^STOW-RS to http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies answered HTTP 503 Service Unavailable: archive is read-only until 06:00$/,
    );
    // user:password in the URL travels as Basic authentication
    expect(seen.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from('user:pw').toString('base64')}`);
  });

  it('a server that does not answer in time rejects with the timeout', async () => {
    answer = () => ({ status: 0, body: '' });
    await expect(stowInstances({ url, timeoutMs: 300 }, [item('objects/CT_small.dcm')])).rejects.toThrow(/no complete answer within 300 ms/);
  });

  it('a body that cannot be opened rejects and names the part, not the instance', async () => {
    answer = () => ({ status: 200, body: '{}' });
    const bad: StowItem = { sopInstanceUid: '1.2.3', sopClassUid: '1.2.3', body: () => Promise.reject(new Error('object missing')) };
    await expect(stowInstances({ url, timeoutMs: 10_000 }, [item('objects/CT_small.dcm'), bad])).rejects.toThrow(/part 2 failed: object missing/);
  });
});

const ORTHANC = ['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].find((p) => existsSync(p));
const DICOMWEB_PLUGIN = ['/usr/share/orthanc/plugins/libOrthancDicomWeb.so', '/usr/lib/orthanc/libOrthancDicomWeb.so'].find((p) => existsSync(p));
const orthancTitle =
  ORTHANC && DICOMWEB_PLUGIN
    ? 'STOW-RS client → Orthanc (DICOMweb plugin)'
    : 'STOW-RS client → Orthanc (skipped: Orthanc or its DICOMweb plugin is not installed)';

describe.skipIf(!ORTHANC || !DICOMWEB_PLUGIN)(orthancTitle, () => {
  let orthanc: ChildProcess;
  let orthancUrl: string;
  const work = mkdtempSync(join(tmpdir(), 'stow-orthanc-'));
  const auth = `Basic ${Buffer.from('portico:stow-test').toString('base64')}`;

  beforeAll(async () => {
    const [dicomPort, httpPort] = [await freePort(), await freePort()];
    orthancUrl = `http://127.0.0.1:${httpPort}`;
    writeFileSync(
      join(work, 'orthanc.json'),
      JSON.stringify({
        Name: 'portico-stow-test',
        StorageDirectory: join(work, 'storage'),
        IndexDirectory: join(work, 'index'),
        DicomPort: dicomPort,
        HttpPort: httpPort,
        RemoteAccessAllowed: false,
        AuthenticationEnabled: true,
        RegisteredUsers: { portico: 'stow-test' },
        Plugins: [DICOMWEB_PLUGIN],
        DicomWeb: { Enable: true, Root: '/dicom-web/' },
      }),
    );
    orthanc = spawn(ORTHANC!, [join(work, 'orthanc.json')], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
    for (const until = Date.now() + 60_000; ;) {
      const up = await fetch(`${orthancUrl}/system`, { headers: { authorization: auth } }).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (Date.now() > until) throw new Error('Orthanc did not start');
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  afterAll(() => {
    orthanc?.kill();
    rmSync(work, { recursive: true, force: true });
  });

  it('stores corpus files with Basic authentication; Orthanc holds the same bytes', async () => {
    const items = [item('objects/CT_small.dcm'), item('ts/jpeg-ls-lossless_NM1_JLSL.dcm', { streamed: true }), item('objects/SR_basic_text.dcm')];
    const res = await stowInstances({ url: `${orthancUrl}/dicom-web/studies`, timeoutMs: 60_000, headers: { Authorization: auth } }, items);
    expect(res.httpStatus).toBe(200);
    for (const i of items) expect(res.perInstance.get(i.sopInstanceUid)).toEqual({ ok: true });
    const ids = (await (await fetch(`${orthancUrl}/instances`, { headers: { authorization: auth } })).json()) as string[];
    expect(ids).toHaveLength(items.length);
    const stored = await Promise.all(
      ids.map(async (id) => sha256(Buffer.from(await (await fetch(`${orthancUrl}/instances/${id}/file`, { headers: { authorization: auth } })).arrayBuffer()))),
    );
    expect(stored.sort()).toEqual(items.map((i) => sha256(i.bytes)).sort());
  });

  it('without credentials Orthanc answers 401 and the client rejects', async () => {
    await expect(stowInstances({ url: `${orthancUrl}/dicom-web/studies`, timeoutMs: 10_000 }, [item('objects/CT_small.dcm')])).rejects.toThrow(
      /answered HTTP 401/,
    );
  });
});
