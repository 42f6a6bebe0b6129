/**
 * End to end, store-and-forward in the cluster shape: migrate, dimse, worker, export and dicomweb as
 * separate `portico` processes on PostgreSQL, Redis and an S3-protocol server, with a nodes file and a
 * routes file as an administrator writes them. Destinations: two dcmtk storescp (IMAGEPACS, REPORTPACS)
 * and a second Portico (standalone) as STOW-RS destination.
 *
 * Shown: the example rule (everything received on AE IMAGEPACS goes to IMAGEPACS as JPEG 2000
 * lossless, except SR, which goes to REPORTPACS), pixels checked with GDCM; STOW-RS delivery, byte for
 * byte; the journey (`portico status`), the dry run (`portico route --explain`, admin endpoint), the
 * metrics; and zero loss: a destination down, the export and worker processes killed with SIGKILL, and
 * every queue job lost (Redis data gone) — every routed instance is delivered once things are back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import {
  corpusDir,
  corpusManifest,
  createTestDatabase,
  freePort,
  holdPort,
  startS3,
  syntheticInstance,
  testRedisUrl,
  testUid,
  uniqueId,
} from '@portico/testing';
import { QUICK_RECOVERY_ENV, REPO_ROOT, startPortico, waitFor, waitForHttp, type PorticoProcess } from './portico-process.ts';
import { datasetOffset, runTool } from './dicom-clients.ts';

const ADMIN_TOKEN = 'e2e-forward-token-0123456789';
const JPEG2000_LOSSLESS = '1.2.840.10008.1.2.4.90';
/** The SR instances of the corpus (SOP class 1.2.840.10008.5.1.4.1.1.88.x), whatever their file names. */
const SR_FILES = corpusManifest().filter((r) => /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.88\.\d+$/.test(r['SOP class'] ?? '') && r['SOP instance UID']);

const ROUTES = `# The issue's example, as an administrator writes it.
default: []
rules:
  - name: imagepacs
    when: { calledAeTitle: IMAGEPACS }
    then:
      - add: IMAGEPACS
        transcode: jpeg2000-lossless
  - name: reports
    when:
      calledAeTitle: IMAGEPACS
      SOPClassUID: { matches: '^1\\.2\\.840\\.10008\\.5\\.1\\.4\\.1\\.1\\.88\\.\\d+$' }
    then:
      - remove: IMAGEPACS
      - add: REPORTPACS
  - name: cloud
    when: { calledAeTitle: CLOUD }
    then:
      - add: CLOUD
`;

interface Storescp {
  readonly port: number;
  readonly dir: string;
  proc?: ChildProcess;
}

function startStorescp(s: Storescp, ae: string): void {
  mkdirSync(s.dir, { recursive: true });
  s.proc = spawn('storescp', ['-aet', ae, '+xa', '-od', s.dir, '+B', String(s.port)], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
}

async function stopStorescp(s: Storescp): Promise<void> {
  const p = s.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

function filesFor(dir: string, sops: readonly string[]): string[] {
  const names = readdirSync(dir);
  return sops.flatMap((s) => names.filter((n) => n.endsWith(`.${s}`)).map((n) => path.join(dir, n)));
}

/** The transfer syntax of a file, as a UID (dcmdump prints known ones by name unless -Un). */
async function transferSyntaxOf(file: string): Promise<string> {
  const r = await runTool('dcmdump', ['-q', '-M', '-Un', '+P', '0002,0010', file]);
  return /\[(.*?)\]/.exec(r.output)?.[1]?.replace(/\0/g, '').trim() ?? '';
}

describe('store-and-forward, cluster shape', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'e2e-forward-'));
  const peers: Record<'IMAGEPACS' | 'REPORTPACS', Storescp> = {} as never;
  let env: Record<string, string>;
  let http: string;
  let dimsePort: number;
  let cloudHttp: string;
  let cloud: PorticoProcess;
  const procs = new Map<string, PorticoProcess>();
  let cleanup: Array<() => Promise<unknown>> = [];
  let redisUrl: string;
  let queuePrefix: string;

  const start = async (role: string): Promise<PorticoProcess> => {
    const p = startPortico(role, env);
    procs.set(role, p);
    return p;
  };
  const logs = (): string => [...procs.values()].map((p) => `--- ${p.role}\n${p.logs().slice(-4000)}`).join('\n');
  const adminGet = async (p: string): Promise<unknown> => {
    const res = await fetch(`${http}${p}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status, `${p}: ${await res.clone().text()}`).toBe(200);
    return res.json();
  };
  const deliveries = async (study: string): Promise<Array<{ destination: string; status: string; lastError: string | null; attempts: number }>> =>
    (await adminGet(`/admin/exports?study=${study}&limit=1000`)) as never;
  const dcmsend = async (aec: string, files: string[]): Promise<void> => {
    const r = await runTool('dcmsend', ['-nh', '+sd', '+r', '-aec', aec, '127.0.0.1', String(dimsePort), ...files]);
    expect(r.code, r.output).toBe(0);
  };
  const cli = async (args: string[]): Promise<{ code: number | null; output: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'services/portico/src/cli.ts'), ...args], {
        env: { PATH: process.env['PATH'] ?? '', ...env },
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('close', (code) => resolve({ code, output }));
    });

  function writeStudy(name: string, count: number): { study: string; dir: string; sops: string[] } {
    const dir = path.join(work, 'send', name);
    mkdirSync(dir, { recursive: true });
    const study = testUid('fwd-study', name);
    const sops: string[] = [];
    for (let i = 0; i < count; i++) {
      const sop = testUid('fwd-sop', `${name}.${i}`);
      sops.push(sop);
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({
          studyInstanceUid: study,
          seriesInstanceUid: testUid('fwd-series', name),
          sopInstanceUid: sop,
          rows: 128,
          columns: 128,
          instanceNumber: i + 1,
          seed: i,
        }),
      );
    }
    return { study, dir, sops };
  }

  beforeAll(async () => {
    expect(SR_FILES.length).toBeGreaterThan(0);
    for (const ae of ['IMAGEPACS', 'REPORTPACS'] as const) {
      peers[ae] = { port: await freePort(), dir: path.join(work, ae) };
      startStorescp(peers[ae], ae);
    }
    // The STOW-RS destination: a second Portico.
    const [cloudHttpPort, cloudDimse, cloudPg] = [await freePort(), await freePort(), await freePort()];
    cloudHttp = `http://127.0.0.1:${cloudHttpPort}`;
    cloud = startPortico('standalone', {
      PORTICO_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'e2e-forward-cloud-')),
      PORTICO_HTTP_PORT: String(cloudHttpPort),
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_DIMSE_PORT: String(cloudDimse),
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_EMBEDDED_PG_PORT: String(cloudPg),
      PORTICO_VIEWER_ENABLED: 'false',
    });
    const db = await createTestDatabase();
    const s3 = await startS3();
    redisUrl = await testRedisUrl();
    queuePrefix = uniqueId('fwd').replace(/[^a-z0-9_]/g, '_');
    const [httpPort, dimse] = [await freePort(), await freePort()];
    dimsePort = dimse;
    http = `http://127.0.0.1:${httpPort}`;
    const nodes = path.join(work, 'nodes.yml');
    writeFileSync(
      nodes,
      [
        'nodes:',
        '  - { aeTitle: DCMSEND, host: 127.0.0.1, port: 104 }',
        `  - { aeTitle: IMAGEPACS, host: 127.0.0.1, port: ${peers.IMAGEPACS.port}, batchSize: 25 }`,
        `  - { aeTitle: REPORTPACS, host: 127.0.0.1, port: ${peers.REPORTPACS.port} }`,
        'dicomweb:',
        `  - { name: CLOUD, url: '${cloudHttp}/dicom-web/studies', bearerToken: not-checked-by-the-peer, batchSize: 10 }`,
        '',
      ].join('\n'),
    );
    const routes = path.join(work, 'routes.yml');
    writeFileSync(routes, ROUTES);
    env = {
      PORTICO_ADMIN_TOKEN: ADMIN_TOKEN,
      PORTICO_NODES_FILE: nodes,
      PORTICO_NODES_RELOAD_MS: '500',
      PORTICO_ROUTES_FILE: routes,
      PORTICO_DATABASE_URL: db.url,
      PORTICO_REDIS_URL: redisUrl,
      PORTICO_QUEUE_PREFIX: queuePrefix,
      PORTICO_S3_ENDPOINT: `http://${s3.endPoint}:${s3.port}`,
      PORTICO_S3_ACCESS_KEY: s3.accessKey,
      PORTICO_S3_SECRET_KEY: s3.secretKey,
      PORTICO_S3_BUCKET: uniqueId('fwd')
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, '-'),
      PORTICO_HTTP_PORT: String(httpPort),
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_DIMSE_PORT: String(dimsePort),
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_DIMSE_ALLOW_UNKNOWN_AE: 'false',
      ...QUICK_RECOVERY_ENV,
    };
    const migrate = startPortico('migrate', env);
    expect(await migrate.exited(), migrate.logs()).toBe(0);
    for (const role of ['export', 'worker', 'dicomweb', 'dimse']) await start(role);
    await waitForHttp(`${http}/readyz`, [...procs.values()], 120_000);
    await waitForHttp(`${cloudHttp}/readyz`, [cloud], 120_000);
    await waitFor(
      'DIMSE port',
      async () => ((await runTool('echoscu', ['-aet', 'DCMSEND', '127.0.0.1', String(dimsePort)])).code === 0 ? true : undefined),
      60_000,
      300,
    );
    cleanup = [() => s3.stop(), () => db.drop()];
  });

  afterAll(async () => {
    for (const p of procs.values()) await p.stop();
    await cloud?.stop();
    for (const s of Object.values(peers)) await stopStorescp(s);
    for (const c of cleanup) await c().catch(() => undefined);
  });

  it('routes by the example rule: images to IMAGEPACS as JPEG 2000 lossless, SR to REPORTPACS', async () => {
    const ct = writeStudy('ct', 12);
    const srFiles = SR_FILES.map((r) => path.join(corpusDir(), r['file']!));
    await dcmsend('IMAGEPACS', [ct.dir, ...srFiles]);
    await waitFor(
      'CT deliveries',
      async () => {
        const d = await deliveries(ct.study);
        return d.length === 12 && d.every((x) => x.status === 'delivered') ? d : undefined;
      },
      120_000,
      500,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${logs()}`);
    });
    const images = filesFor(peers.IMAGEPACS.dir, ct.sops);
    expect(images).toHaveLength(12);
    for (const [i, file] of images.entries()) {
      expect(await transferSyntaxOf(file)).toBe(JPEG2000_LOSSLESS);
      // Lossless: GDCM decodes the JPEG 2000 stream back to the pixels that were sent.
      const raw = path.join(work, `raw-${i}.dcm`);
      const conv = await runTool('gdcmconv', ['--raw', file, raw]);
      expect(conv.code, conv.output).toBe(0);
      const sent = readFileSync(path.join(ct.dir, `${ct.sops.indexOf(ct.sops.find((s) => file.includes(s))!)}.dcm`));
      const pixels = (b: Buffer): Buffer => b.subarray(b.length - 128 * 128 * 2);
      expect(pixels(readFileSync(raw)).equals(pixels(sent))).toBe(true);
    }
    // Every SR went to REPORTPACS as stored, none to IMAGEPACS.
    const srUids = SR_FILES.map((r) => r['SOP instance UID']!);
    await waitFor('SR deliveries', async () => (filesFor(peers.REPORTPACS.dir, srUids).length === srUids.length ? true : undefined), 60_000, 500);
    expect(filesFor(peers.IMAGEPACS.dir, srUids)).toEqual([]);
    for (const r of SR_FILES) {
      // What REPORTPACS got is what Portico stored (dcmsend may re-encode while sending, so the stored
      // copy, not the file, is the reference).
      const sop = r['SOP instance UID']!;
      const [got] = filesFor(peers.REPORTPACS.dir, [sop]);
      const found = (await (await fetch(`${http}/dicom-web/instances?SOPInstanceUID=${sop}`)).json()) as Array<Record<string, { Value: string[] }>>;
      const series = found[0]!['0020000E']!.Value[0]!;
      const study = found[0]!['0020000D']!.Value[0]!;
      const res = await fetch(`${http}/dicom-web/studies/${study}/series/${series}/instances/${sop}`, {
        headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      });
      const stored = Buffer.from(await res.arrayBuffer());
      const a = readFileSync(got!);
      expect(stored.includes(a.subarray(datasetOffset(a))), r['file']).toBe(true);
    }

    // The journey, through the CLI and the admin API.
    const status = await cli(['status', ct.sops[0]!, '--url', http]);
    expect(status.code, status.output).toBe(0);
    expect(status.output).toMatch(/received .* via dimse from DCMSEND/);
    expect(status.output).toMatch(/→ IMAGEPACS: routed .* \(rule imagepacs\), delivered/);
    const journey = (await adminGet(`/admin/status/${ct.study}`)) as Array<{ destinations: Array<{ status: string; delivered: string }> }>;
    expect(journey).toHaveLength(12);
    expect(journey.every((j) => j.destinations.length === 1 && j.destinations[0]!.status === 'delivered' && j.destinations[0]!.delivered)).toBe(true);

    // Dry run: the CLI and the admin endpoint say where an SR would go and why.
    const explain = await cli(['route', '--explain', path.join(corpusDir(), SR_FILES[0]!['file']!), '--called-ae', 'IMAGEPACS']);
    expect(explain.code, explain.output).toBe(0);
    expect(explain.output).toMatch(/→ REPORTPACS: as stored \(rule reports\)/);
    expect(explain.output).toMatch(/✗ IMAGEPACS: removed by rule reports/);
    const res = await fetch(`${http}/admin/route/explain?calledAeTitle=IMAGEPACS`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/dicom' },
      body: readFileSync(path.join(ct.dir, '0.dcm')),
    });
    expect(res.status).toBe(200);
    const x = (await res.json()) as { destinations: Array<{ destination: string; rule: string; transferSyntaxUid?: string }> };
    expect(x.destinations).toEqual([expect.objectContaining({ destination: 'IMAGEPACS', rule: 'imagepacs', transferSyntaxUid: JPEG2000_LOSSLESS })]);

    // An operator sends the CT study to REPORTPACS too (CLI → admin API), and retries nothing dead.
    const replay = await cli(['export', 'replay', '--destination', 'REPORTPACS', '--study', ct.study, '--url', http]);
    expect(replay.code, replay.output).toBe(0);
    expect(replay.output).toContain('"replayed":12');
    await waitFor('replayed study at REPORTPACS', async () => (filesFor(peers.REPORTPACS.dir, ct.sops).length === 12 ? true : undefined), 60_000, 300);
    const retry = await cli(['export', 'retry', '--destination', 'IMAGEPACS', '--status', 'dead', '--url', http]);
    expect(retry.code, retry.output).toBe(0);
    expect(retry.output).toContain('"retried":0');

    // Metrics per destination.
    const metrics = await (await fetch(`${http}/metrics`)).text();
    expect(metrics).toMatch(/portico_export_deliveries\{destination="IMAGEPACS",status="delivered"\} 12/);
    expect(metrics).toMatch(/portico_export_deliveries\{destination="REPORTPACS",status="delivered"\} \d+/);
    expect(metrics).toMatch(/portico_export_queue_depth\{destination="IMAGEPACS"\} 0/);
    const dest = (await adminGet('/admin/destinations')) as Array<{ name: string; deliveries: { counts: Record<string, number> } | null }>;
    expect(dest.find((d) => d.name === 'IMAGEPACS')?.deliveries?.counts['delivered']).toBe(12);
  });

  it('delivers to a STOW-RS destination: a second Portico stores the same bytes', async () => {
    const st = writeStudy('cloud', 15);
    await dcmsend('CLOUD', [st.dir]);
    await waitFor(
      'STOW-RS deliveries',
      async () => {
        const d = await deliveries(st.study);
        return d.length === 15 && d.every((x) => x.status === 'delivered') ? d : undefined;
      },
      120_000,
      500,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${logs()}`);
    });
    for (const [i, sop] of st.sops.entries()) {
      // "delivered" is the destination's STOW-RS acknowledgement; it indexes afterwards, so wait for it.
      const body = await waitFor(
        `instance ${i} retrievable from the destination`,
        async () => {
          const res = await fetch(`${cloudHttp}/dicom-web/studies/${st.study}/series/${testUid('fwd-series', 'cloud')}/instances/${sop}`, {
            headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
          });
          const bytes = Buffer.from(await res.arrayBuffer());
          return res.status === 200 ? bytes : undefined;
        },
        30_000,
        200,
      );
      const sent = readFileSync(path.join(st.dir, `${i}.dcm`));
      expect(body.includes(sent.subarray(datasetOffset(sent)))).toBe(true);
    }
  });

  it('loses nothing: destination down, export and worker killed with SIGKILL, every queue job lost', async () => {
    await stopStorescp(peers.IMAGEPACS);
    const hold = await holdPort(peers.IMAGEPACS.port);
    const st = writeStudy('loss', 40);
    await dcmsend('IMAGEPACS', [st.dir]);
    // Deliveries fail while the destination is down…
    await waitFor(
      'failed attempts',
      async () => ((await deliveries(st.study)).some((x) => x.attempts > 0 && x.status !== 'delivered') ? true : undefined),
      60_000,
      300,
    );
    // …the export and worker processes die without a chance to clean up…
    for (const role of ['export', 'worker']) await procs.get(role)!.stop('SIGKILL');
    // …and the queue backend loses every job (Redis restarted without persistence).
    const redis = new Redis(redisUrl);
    const keys = await redis.keys(`${queuePrefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    // Things come back: the destination, then the processes.
    await hold.release();
    startStorescp(peers.IMAGEPACS, 'IMAGEPACS');
    await start('export');
    await start('worker');
    await waitFor(
      'every instance delivered after the outage',
      async () => {
        const d = await deliveries(st.study);
        return d.length === 40 && d.every((x) => x.status === 'delivered') ? d : undefined;
      },
      180_000,
      500,
    ).catch(async (err: unknown) => {
      const d = await deliveries(st.study);
      throw new Error(`${(err as Error).message}: ${d.length} rows, not delivered: ${JSON.stringify(d.filter((x) => x.status !== 'delivered'))}\n${logs()}`);
    });
    expect(filesFor(peers.IMAGEPACS.dir, st.sops)).toHaveLength(40);
  });
});

describe('store-and-forward, standalone shape', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'e2e-forward-standalone-'));
  const dest: Storescp = { port: 0, dir: path.join(work, 'DEST') };
  let portico: PorticoProcess;
  let http: string;
  let dimsePort: number;

  beforeAll(async () => {
    Object.assign(dest, { port: await freePort() });
    startStorescp(dest, 'DEST');
    const [httpPort, dimse, pgPort] = [await freePort(), await freePort(), await freePort()];
    dimsePort = dimse;
    http = `http://127.0.0.1:${httpPort}`;
    writeFileSync(path.join(work, 'nodes.yml'), `nodes:\n  - { aeTitle: DEST, host: 127.0.0.1, port: ${dest.port} }\n`);
    writeFileSync(path.join(work, 'routes.yml'), 'default: [DEST]\n');
    portico = startPortico('standalone', {
      PORTICO_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'e2e-forward-standalone-data-')),
      PORTICO_HTTP_PORT: String(httpPort),
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_DIMSE_PORT: String(dimsePort),
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_EMBEDDED_PG_PORT: String(pgPort),
      PORTICO_VIEWER_ENABLED: 'false',
      PORTICO_NODES_FILE: path.join(work, 'nodes.yml'),
      PORTICO_ROUTES_FILE: path.join(work, 'routes.yml'),
      PORTICO_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    await waitForHttp(`${http}/readyz`, [portico], 120_000);
  });

  afterAll(async () => {
    await portico?.stop();
    await stopStorescp(dest);
  });

  it('forwards what it receives to the default route, byte for byte', async () => {
    const dir = path.join(work, 'send');
    mkdirSync(dir);
    const study = testUid('fwd-standalone-study', 1);
    const sops = Array.from({ length: 8 }, (_, i) => testUid('fwd-standalone-sop', i));
    sops.forEach((sop, i) =>
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({ studyInstanceUid: study, seriesInstanceUid: testUid('fwd-standalone-series', 1), sopInstanceUid: sop, rows: 32, columns: 32 }),
      ),
    );
    const r = await runTool('dcmsend', ['-nh', '+sd', '127.0.0.1', String(dimsePort), dir]);
    expect(r.code, r.output).toBe(0);
    await waitFor('delivery', async () => (filesFor(dest.dir, sops).length === 8 ? true : undefined), 60_000, 300).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${portico.logs().slice(-4000)}`);
    });
    for (const [i, sop] of sops.entries()) {
      const got = readFileSync(filesFor(dest.dir, [sop])[0]!);
      const sent = readFileSync(path.join(dir, `${i}.dcm`));
      expect(got.subarray(datasetOffset(got)).equals(sent.subarray(datasetOffset(sent)))).toBe(true);
    }
    const res = await fetch(`${http}/admin/status/${study}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const journey = (await res.json()) as Array<{ destinations: Array<{ destination: string; status: string; rule: string }> }>;
    expect(journey).toHaveLength(8);
    await waitFor('delivered rows', async () => {
      const j = (await (await fetch(`${http}/admin/status/${study}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as typeof journey;
      return j.every((x) => x.destinations[0]?.status === 'delivered' && x.destinations[0].rule === 'default') ? true : undefined;
    });
  });
});
