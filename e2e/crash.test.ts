/**
 * An acknowledgement is a promise, across a crash: `portico standalone` is killed with SIGKILL while
 * dcmsend is sending. After a restart on the same data folder, every instance dcmsend saw answered with
 * Success is found through QIDO-RS within seconds — the ingest jobs the killed process held (claimed in
 * memory, or not yet enqueued durably) are taken over at start, none waits for the staging reconciler
 * (10 minutes by default, left at its default here).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, syntheticInstance, testUid } from '@portico/testing';
import { startPortico, waitForHttp, waitFor, type PorticoProcess } from './portico-process.ts';
import { dcmsend } from './dicom-clients.ts';

const N = 400;

describe('a crash of portico standalone', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'portico-e2e-crash-'));
  // As root, the embedded PostgreSQL runs as user postgres, which must be able to reach its data folder.
  chmodSync(work, 0o711);
  let proc: PorticoProcess | undefined;
  afterAll(async () => {
    await proc?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('loses no acknowledged instance when killed with SIGKILL mid-association', async () => {
    const study = testUid('crash-study', 1);
    const setDir = path.join(work, 'set');
    mkdirSync(setDir);
    for (let i = 0; i < N; i++)
      writeFileSync(
        path.join(setDir, `${i}.dcm`),
        syntheticInstance({
          studyInstanceUid: study,
          seriesInstanceUid: testUid('crash-series', 1),
          sopInstanceUid: testUid('crash-sop', i),
          rows: 256,
          columns: 256,
          seed: i + 1,
        }),
      );
    const [httpPort, dimsePort, pgPort] = [await freePort(), await freePort(), await freePort()];
    const env = {
      PORTICO_DATA_DIR: path.join(work, 'data'),
      PORTICO_HTTP_PORT: String(httpPort),
      PORTICO_DIMSE_PORT: String(dimsePort),
      PORTICO_EMBEDDED_PG_PORT: String(pgPort),
      PORTICO_HTTP_HOST: '127.0.0.1',
      PORTICO_DIMSE_HOST: '127.0.0.1',
      PORTICO_VIEWER_ENABLED: 'false',
    };
    const http = `http://127.0.0.1:${httpPort}`;
    const indexed = async (): Promise<Set<string>> => {
      const res = await fetch(`${http}/dicom-web/studies/${study}/instances?limit=${N + 1}`, { headers: { accept: 'application/dicom+json' } });
      if (res.status === 204) return new Set();
      const body = (await res.json()) as Array<Record<string, { Value?: string[] }>>;
      return new Set(body.map((ds) => ds['00080018']!.Value![0]!));
    };

    proc = startPortico('standalone', env);
    await waitForHttp(`${http}/readyz`, [proc], 120_000);
    const sending = dcmsend(work, dimsePort, [setDir]);
    // Killed once some instances are indexed and dcmsend is still sending the rest.
    await waitFor('the first instances indexed', async () => ((await indexed()).size >= 20 ? true : undefined), 60_000);
    proc.child.kill('SIGKILL');
    await proc.exited();
    const { entries } = await sending;
    const acknowledged = entries.filter((e) => e.status.startsWith('0x0000')).map((e) => e.sopInstanceUid);
    expect(acknowledged.length).toBeGreaterThanOrEqual(20);
    expect(acknowledged.length).toBeLessThan(N); // the kill came mid-association

    proc = startPortico('standalone', env);
    await waitForHttp(`${http}/readyz`, [proc], 120_000);
    let missing: string[] = [];
    await waitFor(
      'every acknowledged instance indexed after the restart',
      async () => {
        const found = await indexed();
        missing = acknowledged.filter((uid) => !found.has(uid));
        return missing.length === 0 ? true : undefined;
      },
      30_000,
    ).catch((err: unknown) => {
      throw new Error(`${missing.length} of ${acknowledged.length} acknowledged instances not indexed: ${(err as Error).message}\n${proc!.logs()}`);
    });
  });
});
