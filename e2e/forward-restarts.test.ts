/**
 * Store-and-forward through backend restarts, cluster shape: dimse, worker and export as `portico`
 * processes on a PostgreSQL and a Redis of this test's own (so they can be restarted without touching
 * anything else), a folder object store, and a dcmtk storescp destination.
 *
 * - Redis restarted (without persistence: every queue job is gone) while deliveries wait for a destination
 *   that is down: every instance is delivered once things are back.
 * - PostgreSQL restarted while deliveries wait, and instances received while it is down: every one is
 *   indexed, routed and delivered once it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '@portico/db';
import { createLogger } from '@portico/logging';
import { freePort, holdPort, syntheticInstance, testUid } from '@portico/testing';
import { QUICK_RECOVERY_ENV, startPortico, waitFor, type PorticoProcess } from './portico-process.ts';
import { runTool } from './dicom-clients.ts';

const log = createLogger({ service: 'e2e-restarts', level: 'silent' });

function spawnQuiet(cmd: string, args: string[]): ChildProcess {
  return spawn(cmd, args, { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
}

async function kill(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

describe('store-and-forward through Redis and PostgreSQL restarts', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'e2e-restarts-'));
  const pgDir = mkdtempSync(path.join(tmpdir(), 'e2e-restarts-pg-'));
  const destDir = path.join(work, 'DEST');
  let pgPort: number;
  let postgres: EmbeddedPostgresHandle | undefined;
  let redisPort: number;
  let redis: ChildProcess | undefined;
  let destPort: number;
  let dest: ChildProcess | undefined;
  let dimsePort: number;
  let env: Record<string, string>;
  const procs: PorticoProcess[] = [];

  const startRedis = async (): Promise<void> => {
    redis = spawnQuiet('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    await waitFor(
      'redis',
      async () => ((await runTool('redis-cli', ['-p', String(redisPort), 'ping'])).output.includes('PONG') ? true : undefined),
      20_000,
      100,
    );
  };
  let destHold: Awaited<ReturnType<typeof holdPort>> | undefined;
  const startDest = async (): Promise<void> => {
    await destHold?.release();
    destHold = undefined;
    mkdirSync(destDir, { recursive: true });
    dest = spawnQuiet('storescp', ['-aet', 'DEST', '+xa', '-od', destDir, String(destPort)]);
  };
  /** The destination goes down; its port is kept so nothing else takes it meanwhile. */
  const stopDest = async (): Promise<void> => {
    await kill(dest);
    destHold = await holdPort(destPort);
  };
  const query = async <T extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<T[]> => {
    const c = new pg.Client({ connectionString: postgres!.url });
    await c.connect();
    try {
      return (await c.query<T>(sql, values)).rows;
    } finally {
      await c.end();
    }
  };
  const deliveries = (study: string): Promise<Array<{ status: string; attempts: number }>> =>
    query('SELECT status, attempts FROM export_request WHERE study_instance_uid = $1', [study]).catch(() => []);
  const logs = (): string => procs.map((p) => `--- ${p.role}\n${p.logs().slice(-3000)}`).join('\n');

  function writeStudy(name: string, count: number): { study: string; dir: string; sops: string[] } {
    const dir = path.join(work, 'send', name);
    mkdirSync(dir, { recursive: true });
    const study = testUid('restart-study', name);
    const sops = Array.from({ length: count }, (_, i) => testUid('restart-sop', `${name}.${i}`));
    sops.forEach((sop, i) =>
      writeFileSync(
        path.join(dir, `${i}.dcm`),
        syntheticInstance({ studyInstanceUid: study, seriesInstanceUid: testUid('restart-series', name), sopInstanceUid: sop, rows: 32, columns: 32 }),
      ),
    );
    return { study, dir, sops };
  }
  const send = async (dir: string): Promise<void> => {
    const r = await runTool('dcmsend', ['-nh', '+sd', '-aet', 'MODALITY', '-aec', 'PORTICO', '127.0.0.1', String(dimsePort), dir]);
    expect(r.code, r.output).toBe(0);
  };
  const arrived = (sops: readonly string[]): number => {
    const names = readdirSync(destDir);
    return sops.filter((s) => names.some((n) => n.endsWith(`.${s}`))).length;
  };
  const waitDelivered = async (st: { study: string; sops: string[] }): Promise<void> => {
    await waitFor(
      `${st.sops.length} deliveries of ${st.study}`,
      async () => {
        const d = await deliveries(st.study);
        return d.length === st.sops.length && d.every((x) => x.status === 'delivered') && arrived(st.sops) === st.sops.length ? true : undefined;
      },
      180_000,
      500,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await deliveries(st.study))}\n${logs()}`);
    });
  };

  beforeAll(async () => {
    [pgPort, redisPort, destPort, dimsePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    postgres = await startEmbeddedPostgres({ dir: pgDir, port: pgPort, log });
    await startRedis();
    await startDest();
    writeFileSync(path.join(work, 'nodes.yml'), `nodes:\n  - { aeTitle: DEST, host: 127.0.0.1, port: ${destPort} }\n`);
    writeFileSync(path.join(work, 'routes.yml'), 'default: [DEST]\n');
    env = {
      PORTICO_DATABASE_URL: postgres.url,
      PORTICO_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      PORTICO_OBJECTS_DIR: path.join(work, 'objects'),
      PORTICO_NODES_FILE: path.join(work, 'nodes.yml'),
      PORTICO_ROUTES_FILE: path.join(work, 'routes.yml'),
      PORTICO_DIMSE_PORT: String(dimsePort),
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_DIMSE_ALLOW_UNKNOWN_AE: 'true',
      ...QUICK_RECOVERY_ENV,
    };
    const migrate = startPortico('migrate', env);
    expect(await migrate.exited(), migrate.logs()).toBe(0);
    for (const role of ['worker', 'export', 'dimse']) procs.push(startPortico(role, env));
    await waitFor('DIMSE port', async () => ((await runTool('echoscu', ['127.0.0.1', String(dimsePort)])).code === 0 ? true : undefined), 60_000, 300);
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    await destHold?.release();
    await kill(dest);
    await kill(redis);
    await postgres?.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(pgDir, { recursive: true, force: true });
  });

  it('delivers everything after Redis restarts empty while deliveries wait', async () => {
    await stopDest();
    const st = writeStudy('redis', 20);
    await send(st.dir);
    await waitFor(
      'routed deliveries failing',
      async () => {
        const d = await deliveries(st.study);
        return d.length === 20 && d.some((x) => x.attempts > 0) ? true : undefined;
      },
      60_000,
      300,
    );
    // Redis dies and comes back without its data: every queue job is gone.
    await kill(redis);
    await new Promise((r) => setTimeout(r, 1000));
    await startRedis();
    await startDest();
    await waitDelivered(st);
    for (const p of procs) expect(p.child.exitCode, `${p.role} exited\n${p.logs().slice(-3000)}`).toBeNull();
  });

  it('delivers everything after PostgreSQL restarts, including what arrived while it was down', async () => {
    await stopDest();
    const before = writeStudy('pg-before', 10);
    await send(before.dir);
    await waitFor(
      'routed deliveries failing',
      async () => {
        const d = await deliveries(before.study);
        return d.length === 10 && d.some((x) => x.attempts > 0) ? true : undefined;
      },
      60_000,
      300,
    );
    await postgres!.stop();
    // Received while the index is down: acknowledged (the bytes are stored and the job queued), indexed
    // and routed once it is back.
    const during = writeStudy('pg-during', 10);
    await send(during.dir);
    await new Promise((r) => setTimeout(r, 2000));
    postgres = await startEmbeddedPostgres({ dir: pgDir, port: pgPort, log });
    await startDest();
    await waitDelivered(before);
    await waitDelivered(during);
    for (const p of procs) expect(p.child.exitCode, `${p.role} exited\n${p.logs().slice(-3000)}`).toBeNull();
  });
});
