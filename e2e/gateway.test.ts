/**
 * End to end: `portico` as child processes in both shapes, the whole corpus in over DIMSE (dcmsend) and
 * STOW-RS, checked through QIDO-RS and WADO-RS with real HTTP.
 *
 * - standalone: one process, embedded PostgreSQL, BullMQ on PostgreSQL, folder store.
 * - cluster: migrate, worker, dicomweb and dimse as separate processes on PostgreSQL, Redis and an
 *   S3-protocol server (see shared/testing for where each comes from).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseInstance } from '@portico/dicom';
import { corpusDir, corpusManifest, createTestDatabase, freePort, startS3, testRedisUrl, uniqueId } from '@portico/testing';
import { startPortico, waitForHttp, waitFor, type PorticoProcess } from './portico-process.ts';
import { dcmsend, parseMultipart, referenceBytes, runTool, stowBody, datasetOffset, type DcmsendEntry } from './dicom-clients.ts';

const CORPUS = corpusDir();
const FOLDERS = ['ts', 'objects', 'series', 'charset', 'odd', 'broken'];
type Json = Record<string, { vr: string; Value?: unknown[] }>;

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

let reference: Map<string, Buffer>;
/** Port of the storescp the C-MOVE test starts; known up front because the nodes file names it. */
let moveDestPort = 0;
beforeAll(async () => {
  reference = await referenceBytes(CORPUS, FOLDERS, await freePort());
  expect(reference.size).toBeGreaterThan(80);
  moveDestPort = await freePort();
});

/** Both shapes: only known AEs, the admin API on, nodes reloaded quickly. */
const ADMIN_TOKEN = 'e2e-admin-token-0123456789';
const ACCESS_ENV = { PORTICO_DIMSE_ALLOW_UNKNOWN_AE: 'false', PORTICO_ADMIN_TOKEN: ADMIN_TOKEN, PORTICO_NODES_RELOAD_MS: '300' };

/** A nodes file: the dcmtk tools' default calling AEs, and MOVEDEST (a storescp) as C-MOVE destination. */
function nodesFile(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'e2e-nodes-')), 'nodes.yml');
  writeFileSync(
    file,
    `nodes:\n${['DCMSEND', 'STORESCU', 'ECHOSCU', 'FINDSCU', 'MOVESCU'].map((ae) => `  - { aeTitle: ${ae}, host: 127.0.0.1, port: 104 }\n`).join('')}` +
      `  - { aeTitle: MOVEDEST, host: 127.0.0.1, port: ${moveDestPort} }\n`,
  );
  return file;
}

interface Shape {
  readonly name: string;
  start(): Promise<{ http: string; dimsePort: number; procs: PorticoProcess[]; restart?: () => Promise<PorticoProcess[]>; cleanup: () => Promise<void> }>;
}

const shapes: Shape[] = [
  {
    name: 'standalone',
    async start() {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'portico-e2e-'));
      const [httpPort, dimsePort, pgPort] = [await freePort(), await freePort(), await freePort()];
      const env = {
        ...ACCESS_ENV,
        PORTICO_NODES_FILE: nodesFile(),
        PORTICO_DATA_DIR: dataDir,
        PORTICO_HTTP_PORT: String(httpPort),
        PORTICO_DIMSE_PORT: String(dimsePort),
        PORTICO_EMBEDDED_PG_PORT: String(pgPort),
        PORTICO_HTTP_HOST: '127.0.0.1',
        PORTICO_DIMSE_HOST: '127.0.0.1',
      };
      const http = `http://127.0.0.1:${httpPort}`;
      let procs = [startPortico('standalone', env)];
      await waitForHttp(`${http}/readyz`, procs, 120_000);
      return {
        http,
        dimsePort,
        procs,
        restart: async () => {
          const code = await procs[0]!.stop('SIGINT');
          expect(code, procs[0]!.logs()).toBe(0);
          procs = [startPortico('standalone', env)];
          await waitForHttp(`${http}/readyz`, procs, 120_000);
          return procs;
        },
        cleanup: async () => {
          for (const p of procs) await p.stop();
        },
      };
    },
  },
  {
    name: 'cluster',
    async start() {
      const db = await createTestDatabase();
      const s3 = await startS3();
      const redisUrl = await testRedisUrl();
      const [httpPort, dimsePort] = [await freePort(), await freePort()];
      // The dimse role accepts only known calling AEs: the dcmtk tools' default AE titles.
      const env = {
        ...ACCESS_ENV,
        PORTICO_NODES_FILE: nodesFile(),
        PORTICO_DATABASE_URL: db.url,
        PORTICO_REDIS_URL: redisUrl,
        PORTICO_QUEUE_PREFIX: uniqueId('e2e').replace(/[^a-z0-9_]/g, '_'),
        PORTICO_S3_ENDPOINT: `http://${s3.endPoint}:${s3.port}`,
        PORTICO_S3_ACCESS_KEY: s3.accessKey,
        PORTICO_S3_SECRET_KEY: s3.secretKey,
        PORTICO_S3_BUCKET: uniqueId('e2e')
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, '-'),
        PORTICO_HTTP_PORT: String(httpPort),
        PORTICO_DIMSE_PORT: String(dimsePort),
        PORTICO_HTTP_HOST: '127.0.0.1',
        PORTICO_DIMSE_HOST: '127.0.0.1',
      };
      const migrate = startPortico('migrate', env);
      expect(await migrate.exited(), migrate.logs()).toBe(0);
      const procs = [startPortico('worker', env), startPortico('dicomweb', env), startPortico('dimse', env)];
      const http = `http://127.0.0.1:${httpPort}`;
      await waitForHttp(`${http}/readyz`, procs, 120_000);
      await waitFor(
        'DIMSE port',
        async () => ((await runTool('echoscu', ['-aec', 'PORTICO', '127.0.0.1', String(dimsePort)])).code === 0 ? true : undefined),
        60_000,
        300,
      );
      return {
        http,
        dimsePort,
        procs,
        cleanup: async () => {
          for (const p of procs) await p.stop();
          await s3.stop();
          await db.drop();
        },
      };
    },
  },
];

describe.each(shapes)('$name shape', (shape) => {
  let env: Awaited<ReturnType<Shape['start']>>;
  let sent: DcmsendEntry[] = [];
  let ackedAt = 0;
  const root = (): string => `${env.http}/dicom-web`;
  const getJson = async <T = Json[]>(url: string): Promise<T> => {
    const res = await fetch(url, { headers: { Accept: 'application/dicom+json' } });
    expect(res.status, `${url}: ${res.status}`).toBe(200);
    return (await res.json()) as T;
  };
  const str = (j: Json, tag: string): string | undefined => {
    const v = j[tag]?.Value?.[0];
    return typeof v === 'object' && v !== null ? (v as { Alphabetic?: string }).Alphabetic : (v as string | undefined);
  };

  beforeAll(async () => {
    env = await shape.start();
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it('answers C-ECHO', async () => {
    const { code, output } = await runTool('echoscu', ['-aec', 'PORTICO', '127.0.0.1', String(env.dimsePort)]);
    expect(code, output).toBe(0);
  });

  it('stores every corpus file dcmsend sends with status Success', async () => {
    const result = await dcmsend(CORPUS, env.dimsePort, FOLDERS, { extra: ['-dn'] });
    ackedAt = Date.now();
    // dcmsend's report names the File Meta SOP Instance UID; the command carries the data set's, which can
    // differ (an odd corpus file has two different ones): key everything by the data set's.
    sent = await Promise.all(
      result.entries
        .filter((e) => e.status !== '<not sent>')
        .map(async (e) => ({ ...e, sopInstanceUid: (await parseInstance([readFileSync(path.join(CORPUS, e.file))])).sopInstanceUid })),
    );
    const failed = sent.filter((e) => !e.status.startsWith('0x0000'));
    expect(failed, result.output).toEqual([]);
    // every file the bit-preserving reference received, Portico received too (Portico accepts more transfer
    // syntaxes than storescp +xa, e.g. JPEG Lossless process 14, so it may receive more)
    const received = new Set(sent.map((e) => e.sopInstanceUid));
    expect([...reference.keys()].filter((k) => !received.has(k))).toEqual([]);
    for (const p of env.procs) expect(p.child.exitCode, p.logs()).toBeNull();
  });

  it('finds every acknowledged instance through QIDO-RS soon after the acknowledgement', async () => {
    const uids = [...new Set(sent.map((e) => e.sopInstanceUid))];
    let rows: Json[] = [];
    const found = await waitFor(
      'all instances indexed',
      async () => {
        rows = await getJson(`${root()}/instances?SOPInstanceUID=${uids.join(',')}&limit=1000`);
        return rows.length === uids.length ? rows : undefined;
      },
      30_000,
      50,
    ).catch((err: unknown) => {
      const have = new Set(rows.map((r) => str(r, '00080018')));
      throw new Error(`${(err as Error).message}; missing: ${uids.filter((u) => !have.has(u)).join(' ')}`);
    });
    console.log(`[${shape.name}] ${uids.length} instances queryable ${Date.now() - ackedAt} ms after the last acknowledgement`);
    expect(found).toHaveLength(uids.length);
    const studies = await getJson(`${root()}/studies?limit=1000`);
    const studyUids = new Set(found.map((r) => str(r, '0020000D')));
    expect(new Set(studies.map((s) => str(s, '0020000D')))).toEqual(studyUids);
    const series = await getJson(`${root()}/series?limit=1000`);
    expect(new Set(series.map((s) => str(s, '0020000E')))).toEqual(new Set(found.map((r) => str(r, '0020000E'))));
  });

  it('matches QIDO-RS keys: exact, wildcard, case-insensitive PN, dates, UID lists, limit/offset, includefield', async () => {
    const all = await getJson(`${root()}/studies?limit=1000&includefield=all`);
    // PatientID shared by the two-study patient
    const twoStudies = await getJson(`${root()}/studies?PatientID=TEST_1`);
    expect(twoStudies.map((s) => str(s, '0020000D')).sort()).toEqual(['1.2.3', '2.3.4']);
    expect(await getJson(`${root()}/studies?StudyInstanceUID=1.2.3,2.3.4`)).toHaveLength(2);
    expect(await getJson(`${root()}/studies?0020000D=1.2.3`)).toHaveLength(1);
    // PN: exact, lower-case, wildcard, ^ percent-encoded
    const named = all.filter((s) => (str(s, '00100010') ?? '').includes('^'));
    expect(named.length).toBeGreaterThan(3);
    // A plain single-group ASCII name, chosen deterministically: which study comes first depends on the
    // order the worker indexed them in.
    const name = named
      .map((s) => str(s, '00100010')!)
      .filter((n) => /^[A-Za-z]{3,}\^[A-Za-z]+$/.test(n))
      .sort()[0]!;
    const exact = await getJson(`${root()}/studies?PatientName=${encodeURIComponent(name)}`);
    expect(exact.length).toBeGreaterThan(0);
    // Exact PN matching is case- and accent-insensitive and ignores trailing empty components, so the
    // answer may hold differently written spellings of the same name (which one comes first varies).
    const fold = (n: string | undefined): string =>
      (n ?? '')
        .normalize('NFKD')
        .replace(/\p{M}/gu, '')
        .toUpperCase()
        .replace(/[\^ ]+$/, '');
    expect(exact.every((s) => fold(str(s, '00100010')) === fold(name))).toBe(true);
    expect(await getJson(`${root()}/studies?PatientName=${encodeURIComponent(name.toLowerCase())}`)).toHaveLength(exact.length);
    const prefix = name.slice(0, 2);
    const wild = await getJson(`${root()}/studies?PatientName=${encodeURIComponent(prefix)}*`);
    expect(wild.length).toBeGreaterThanOrEqual(exact.length);
    expect(wild.every((s) => (str(s, '00100010') ?? '').toUpperCase().startsWith(prefix.toUpperCase()))).toBe(true);
    const q = await getJson(`${root()}/studies?PatientName=${encodeURIComponent(prefix.slice(0, 1))}?${encodeURIComponent(name.slice(2))}`);
    expect(q.map((s) => str(s, '00100010'))).toContain(name);
    // date range
    const dated = all
      .map((s) => str(s, '00080020'))
      .filter((d): d is string => !!d && /^\d{8}$/.test(d))
      .sort();
    const [lo, hi] = [dated[0]!, dated[Math.floor(dated.length / 2)]!];
    const inRange = await getJson(`${root()}/studies?StudyDate=${lo}-${hi}&limit=1000`);
    expect(inRange.length).toBe(dated.filter((d) => d >= lo && d <= hi).length);
    expect((await getJson(`${root()}/studies?StudyDate=-${lo}&limit=1000`)).every((s) => str(s, '00080020')! <= lo)).toBe(true);
    // paging: stable order, no duplicates, complete
    const pages: string[] = [];
    for (let offset = 0; offset < all.length; offset += 7)
      pages.push(...(await getJson(`${root()}/studies?limit=7&offset=${offset}`)).map((s) => str(s, '0020000D')!));
    expect(pages).toHaveLength(all.length);
    expect(new Set(pages).size).toBe(all.length);
    // includefield
    const withDesc = await getJson(`${root()}/studies?PatientID=TEST_1&includefield=00081030,PatientBirthDate`);
    expect(withDesc.every((s) => '00100030' in s || s['00100030'] === undefined)).toBe(true);
    // series and instance levels, nested
    const seriesOf = await getJson(`${root()}/studies/1.2.3/series`);
    expect(seriesOf).toHaveLength(1);
    expect(str(seriesOf[0]!, '00080060')).toBe('CT');
    const mr = await getJson(`${root()}/series?Modality=MR&limit=1000`);
    expect(mr.length).toBeGreaterThan(3);
    expect(mr.every((s) => str(s, '00080060') === 'MR')).toBe(true);
  });

  it('returns through WADO-RS exactly the data set bytes the sender put on the wire', async () => {
    let checked = 0;
    for (const [sop, expected] of reference) {
      const [row] = await getJson(`${root()}/instances?SOPInstanceUID=${sop}`);
      const url = str(row!, '00081190')!;
      const res = await fetch(url, { headers: { Accept: 'multipart/related; type="application/dicom"' } });
      expect(res.status, url).toBe(200);
      const parts = parseMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
      expect(parts).toHaveLength(1);
      const got = parts[0]!.body;
      expect(got.subarray(datasetOffset(got)).equals(expected), `data set bytes of ${sop}`).toBe(true);
      checked++;
    }
    expect(checked).toBe(reference.size);
    // a whole study: one part per instance
    const [study] = await getJson(
      `${root()}/studies?StudyInstanceUID=${encodeURIComponent(str((await getJson(`${root()}/series?Modality=MR&SeriesDescription=*&limit=1`))[0]!, '0020000D')!)}`,
    );
    const count = Number(study!['00201208']?.Value?.[0]);
    const res = await fetch(str(study!, '00081190')!, { headers: { Accept: 'multipart/related; type="application/dicom"' } });
    expect(parseMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!)).toHaveLength(count);
  });

  it('moves the whole corpus to a storescp with C-MOVE, data set bytes as the sender put them on the wire', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'e2e-move-'));
    const dest = spawn('storescp', ['+xa', '+B', '-aet', 'MOVEDEST', '-od', out, String(moveDestPort)], {
      env: { ...process.env, TCP_NODELAY: '1' },
      stdio: 'ignore',
    });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const studies = (await getJson(`${root()}/studies?limit=1000`)).map((j) => str(j, '0020000D')!);
      const { code, output } = await runTool('movescu', [
        '-S',
        '-aec',
        'PORTICO',
        '-aem',
        'MOVEDEST',
        '127.0.0.1',
        String(env.dimsePort),
        '-k',
        'QueryRetrieveLevel=STUDY',
        '-k',
        `StudyInstanceUID=${studies.join('\\')}`,
      ]);
      // Instances storescp cannot take (transfer syntaxes it does not know) fail their sub-operation
      // (final 0xB000); every instance the reference storescp received must arrive, bytes unchanged.
      expect([0, 68], output).toContain(code); // movescu: 68 = final status warning (0xB000)
      const received = new Map<string, Buffer>();
      for (const f of readdirSync(out)) {
        const bytes = readFileSync(path.join(out, f));
        received.set((await parseInstance([bytes])).sopInstanceUid, bytes.subarray(datasetOffset(bytes)));
      }
      for (const [sop, expected] of reference) expect(received.get(sop)?.equals(expected), `C-MOVE data set bytes of ${sop}`).toBe(true);
    } finally {
      dest.kill();
    }
  });

  it('admits a calling AE added through the admin API, and refuses it again once removed', async () => {
    const echo = async (): Promise<number | null> =>
      (await runTool('echoscu', ['-aet', 'ADMINADDED', '-aec', 'PORTICO', '127.0.0.1', String(env.dimsePort)])).code;
    expect(await echo()).not.toBe(0);
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const put = await fetch(`${env.http}/admin/nodes/ADMINADDED`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ host: '127.0.0.1', port: 104, services: ['echo'] }),
    });
    expect(put.status).toBe(201);
    expect((await fetch(`${env.http}/admin/nodes`)).status).toBe(401);
    const listed = (await (await fetch(`${env.http}/admin/nodes`, { headers: auth })).json()) as Array<{ aeTitle: string; source: string }>;
    expect(listed).toContainEqual(expect.objectContaining({ aeTitle: 'ADMINADDED', source: 'api' }));
    await waitFor('the dimse role to pick up the new node', async () => ((await echo()) === 0 ? true : undefined), 15_000, 200);
    expect((await fetch(`${env.http}/admin/nodes/ADMINADDED`, { method: 'DELETE', headers: { authorization: auth.authorization } })).status).toBe(204);
    await waitFor('the dimse role to drop the node', async () => ((await echo()) !== 0 ? true : undefined), 15_000, 200);
  });

  it('serves metadata as DICOM JSON with character sets decoded to UTF-8', async () => {
    const manifest = corpusManifest().filter((r) => r['file']!.startsWith('charset/') && r['SOP instance UID']);
    const names: Record<string, string> = {};
    for (const row of manifest) {
      const [inst] = await getJson(`${root()}/instances?SOPInstanceUID=${row['SOP instance UID']}`);
      const meta = await getJson(`${str(inst!, '00081190')}/metadata`);
      const pn = meta[0]!['00100010']?.Value?.[0] as Record<string, string>;
      names[row['file']!] = [pn?.['Alphabetic'], pn?.['Ideographic'], pn?.['Phonetic']].filter(Boolean).join('=');
    }
    expect(names).toMatchObject({
      'charset/ISO_IR_100_french.dcm': 'Buc^Jérôme',
      'charset/ISO_IR_144_cyrillic.dcm': 'Люкceмбypг',
      'charset/ISO_IR_127_arabic.dcm': 'قباني^لنزار',
      'charset/ISO_2022_IR_87_japanese.dcm': 'Yamada^Tarou=山田^太郎=やまだ^たろう',
      'charset/ISO_2022_IR_149_korean.dcm': 'Hong^Gildong=洪^吉洞=홍^길동',
      'charset/ISO_IR_192_utf8.dcm': 'Wang^XiaoDong=王^小東',
    });
  });

  it('serves single frames of native and encapsulated multi-frame instances', async () => {
    const multi = await getJson(`${root()}/instances?limit=1000&includefield=00280008,00280010,00280011,00280100,00280002`);
    const frames = multi.filter((r) => Number(r['00280008']?.Value?.[0] ?? 1) > 1);
    expect(frames.length).toBeGreaterThan(2);
    for (const r of frames) {
      const n = Number(r['00280008']!.Value![0]);
      const res = await fetch(`${str(r, '00081190')}/frames/1,${n}`, {
        headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
      });
      expect(res.status, str(r, '00081190')).toBe(200);
      const parts = parseMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
      expect(parts).toHaveLength(2);
      for (const p of parts) expect(p.body.length).toBeGreaterThan(0);
    }
    const out = await fetch(`${str(frames[0]!, '00081190')}/frames/100000`);
    expect(out.status).toBe(404);
  });

  it('stores the corpus over STOW-RS with the PS3.18 response, byte-identical on retrieve', async () => {
    const files = FOLDERS.flatMap((f) => listFiles(path.join(CORPUS, f)));
    const { body, contentType } = stowBody(files);
    const res = await fetch(`${root()}/studies`, { method: 'POST', body, headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' } });
    expect(res.status).toBe(202); // some corpus files are deliberately broken
    const answer = (await res.json()) as Json;
    const refd = (answer['00081199']?.Value ?? []) as Json[];
    const failed = (answer['00081198']?.Value ?? []) as Json[];
    expect(refd.length + failed.length).toBe(files.length);
    expect(refd.length).toBeGreaterThanOrEqual(reference.size);
    for (const f of failed) expect(f['00081197']?.Value?.[0]).toBeTypeOf('number');
    // every referenced instance comes back byte-identical to the file that was posted
    const posted = files.map((f) => readFileSync(f));
    let compared = 0;
    for (const item of refd) {
      const url = str(item, '00081190')!;
      const sop = str(item, '00081155')!;
      // the DIMSE copy of the same instance is served until the STOW-RS copy is indexed: wait for it
      await waitFor(`${sop} replaced by the posted copy`, async () => {
        const r = await fetch(url);
        if (r.status !== 200) return undefined;
        const body = Buffer.from(await r.arrayBuffer());
        const part = parseMultipart(body, r.headers.get('content-type')!)[0]!.body;
        return posted.some((buf) => buf.equals(part)) ? true : undefined;
      });
      compared++;
    }
    expect(compared).toBe(refd.length);
  });

  it('rejects bad STOW-RS requests with the standard answers', async () => {
    const broken = listFiles(path.join(CORPUS, 'broken'));
    const { body, contentType } = stowBody(broken);
    const res = await fetch(`${root()}/studies`, { method: 'POST', body, headers: { 'Content-Type': contentType } });
    expect(res.status).toBe(409);
    const answer = (await res.json()) as Json;
    expect(((answer['00081198']?.Value ?? []) as Json[]).map((f) => f['00081197']?.Value?.[0])).toEqual(broken.map(() => 0xc000));
    const wrongStudy = await fetch(`${root()}/studies/9.9.9`, { method: 'POST', ...stowRequest([path.join(CORPUS, 'charset/ISO_IR_100_french.dcm')]) });
    expect(wrongStudy.status).toBe(409);
    const notMultipart = await fetch(`${root()}/studies`, { method: 'POST', body: 'x', headers: { 'Content-Type': 'text/plain' } });
    expect(notMultipart.status).toBe(415);
    expect(notMultipart.headers.get('content-type')).toMatch(/application\/problem\+json/);
  });

  it('keeps patient attributes out of the logs', async () => {
    const all = await getJson(`${root()}/studies?limit=1000`);
    const names = all.map((s) => str(s, '00100010')).filter((n): n is string => !!n && n.length > 4);
    const logs = env.procs.map((p) => p.logs()).join('\n');
    for (const n of names) expect(logs.includes(n), `log contains a patient name`).toBe(false);
  });

  // The cluster roles restart one by one in production; the standalone process is the one that must
  // come back from its own data folder.
  if (shape.name === 'standalone')
    it('keeps everything across a clean restart', async () => {
      // ingest is asynchronous: wait until the index stops changing before the restart
      let before = await getJson(`${root()}/instances?limit=1000`);
      await waitFor('index settled', async () => {
        await new Promise((r) => setTimeout(r, 1000));
        const now = await getJson(`${root()}/instances?limit=1000`);
        const settled = now.length === before.length;
        before = now;
        return settled ? true : undefined;
      });
      env.procs = (await env.restart!()) as PorticoProcess[];
      const after = await getJson(`${root()}/instances?limit=1000`);
      expect(after.length).toBe(before.length);
    });
});

function stowRequest(files: string[]): { body: Buffer; headers: Record<string, string> } {
  const { body, contentType } = stowBody(files);
  return { body, headers: { 'Content-Type': contentType } };
}
