/**
 * End to end, storage commitment in the cluster shape: the `export` process asks Orthanc to commit each
 * delivered batch (nodes.yml `storageCommitment: true`); Orthanc reports on a new association to the
 * `dimse` process — another process than the one that asked — which records the outcome in PostgreSQL.
 * Seen by an operator in `portico status`, `GET /admin/exports` and `/metrics`. The destination is a node
 * added through the admin API with `storageCommitment: true`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createTestDatabase, freePort, startOrthanc, startS3, syntheticInstance, testRedisUrl, testUid, uniqueId, type TestOrthanc } from '@portico/testing';
import { QUICK_RECOVERY_ENV, REPO_ROOT, startPortico, waitFor, waitForHttp, type PorticoProcess } from './portico-process.ts';
import { runTool } from './dicom-clients.ts';

const ADMIN_TOKEN = 'e2e-commitment-token-0123456789';

const ROUTES = `default: []
rules:
  - name: archive
    when: { calledAeTitle: ARCHIVE }
    then: [{ add: ORTHANC }]
`;

interface Delivery {
  sopInstanceUid: string;
  status: string;
  commitmentStatus: string | null;
  commitmentError: string | null;
}

describe('storage commitment, cluster shape, Orthanc as destination', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'e2e-commitment-'));
  const procs = new Map<string, PorticoProcess>();
  let env: Record<string, string>;
  let http: string;
  let dimsePort: number;
  let orthanc: TestOrthanc;
  let cleanup: Array<() => Promise<unknown>> = [];

  const logs = (): string => [...procs.values()].map((p) => `--- ${p.role}\n${p.logs().slice(-4000)}`).join('\n');
  const admin = async (method: string, p: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
    const res = await fetch(`${http}${p}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const deliveries = async (study: string): Promise<Delivery[]> => (await admin('GET', `/admin/exports?study=${study}&limit=1000`)).json as Delivery[];
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

  async function sendStudy(name: string, count: number, calledAe: string): Promise<{ study: string; sops: string[] }> {
    const dir = path.join(work, 'send', name);
    mkdirSync(dir, { recursive: true });
    const study = testUid('e2e-commit-study', name);
    const sops: string[] = [];
    for (let i = 0; i < count; i++) {
      const sop = testUid('e2e-commit-sop', `${name}.${i}`);
      sops.push(sop);
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({
          studyInstanceUid: study,
          seriesInstanceUid: testUid('e2e-commit-series', name),
          sopInstanceUid: sop,
          rows: 32,
          columns: 32,
          instanceNumber: i + 1,
        }),
      );
    }
    const r = await runTool('dcmsend', ['-nh', '+sd', '+r', '-aet', 'DCMSEND', '-aec', calledAe, '127.0.0.1', String(dimsePort), dir]);
    expect(r.code, r.output).toBe(0);
    return { study, sops };
  }

  const waitCommitted = (study: string, n: number): Promise<Delivery[]> =>
    waitFor(
      `${n} committed deliveries of ${study}`,
      async () => {
        const d = await deliveries(study);
        return d.length === n && d.every((x) => x.status === 'delivered' && x.commitmentStatus === 'committed') ? d : undefined;
      },
      120_000,
      300,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await deliveries(study))}\n${logs()}`);
    });

  beforeAll(async () => {
    const db = await createTestDatabase();
    const s3 = await startS3();
    const redisUrl = await testRedisUrl();
    const [httpPort, dimse] = [await freePort(), await freePort()];
    dimsePort = dimse;
    http = `http://127.0.0.1:${httpPort}`;
    // Orthanc reports to the requester's DicomModalities entry: Portico's dimse process.
    orthanc = await startOrthanc({ dir: path.join(work, 'orthanc'), modalities: { portico: ['PORTICO', '127.0.0.1', dimsePort] } });
    const nodes = path.join(work, 'nodes.yml');
    writeFileSync(nodes, ['nodes:', '  - { aeTitle: DCMSEND, host: 127.0.0.1, port: 104, services: [echo, store] }', ''].join('\n'));
    writeFileSync(path.join(work, 'routes.yml'), ROUTES);
    env = {
      PORTICO_ADMIN_TOKEN: ADMIN_TOKEN,
      PORTICO_NODES_FILE: nodes,
      PORTICO_NODES_RELOAD_MS: '500',
      PORTICO_ROUTES_FILE: path.join(work, 'routes.yml'),
      PORTICO_DATABASE_URL: db.url,
      PORTICO_REDIS_URL: redisUrl,
      PORTICO_QUEUE_PREFIX: uniqueId('commit').replace(/[^a-z0-9_]/g, '_'),
      PORTICO_S3_ENDPOINT: `http://${s3.endPoint}:${s3.port}`,
      PORTICO_S3_ACCESS_KEY: s3.accessKey,
      PORTICO_S3_SECRET_KEY: s3.secretKey,
      PORTICO_S3_BUCKET: uniqueId('commit')
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
    for (const role of ['export', 'worker', 'dicomweb', 'dimse']) procs.set(role, startPortico(role, env));
    await waitForHttp(`${http}/readyz`, [...procs.values()], 120_000);
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
    orthanc?.stop();
    for (const c of cleanup) await c().catch(() => undefined);
  });

  it('records committed per instance, shown by portico status, /admin/exports and /metrics', async () => {
    // The destination is added through the admin API, with the option, as an operator would.
    const put = await admin('PUT', '/admin/nodes/ORTHANC', { host: '127.0.0.1', port: orthanc.dicomPort, storageCommitment: true });
    expect(put.status, JSON.stringify(put.json)).toBe(201);
    const listed = (await admin('GET', '/admin/nodes')).json as Array<{ aeTitle: string; storageCommitment?: boolean }>;
    expect(listed.find((n) => n.aeTitle === 'ORTHANC')?.storageCommitment).toBe(true);
    // The export and dimse processes pick it up on their next reload (PORTICO_NODES_RELOAD_MS).
    await new Promise((r) => setTimeout(r, 1500));
    const { study, sops } = await sendStudy('ct', 5, 'ARCHIVE');
    await waitCommitted(study, 5);
    // The report came to the dimse process on an association Orthanc opened.
    expect(procs.get('dimse')!.logs()).toMatch(/storage commitment recorded/);
    const status = await cli(['status', sops[0]!, '--url', http]);
    expect(status.code, status.output).toBe(0);
    expect(status.output).toMatch(/→ ORTHANC: routed .*delivered .*\n\s+storage commitment committed \d{4}-/);
    const metrics = await (await fetch(`${http}/metrics`)).text();
    expect(metrics).toMatch(/portico_export_commitments\{destination="ORTHANC",outcome="committed"\} 5\n/);
    expect(metrics).toMatch(/portico_export_commitments\{destination="ORTHANC",outcome="failed"\} 0\n/);
    const journey = (await admin('GET', `/admin/status/${sops[0]}`)).json as Array<{
      destinations: Array<{ commitment: { status: string; transactionUid: string } }>;
    }>;
    expect(journey[0]!.destinations[0]!.commitment).toMatchObject({ status: 'committed', transactionUid: expect.stringMatching(/^2\.25\.\d+$/) });
  });
});
