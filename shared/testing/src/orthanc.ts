/**
 * Orthanc (Debian `orthanc`) as a DICOM peer in tests: a private storage and index folder, its DICOM and
 * HTTP ports on loopback, no authentication. CI installs it (.ci/run); without it the caller fails loudly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './net.ts';

export const ORTHANC_BINARY = ['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].find((p) => existsSync(p));

export interface TestOrthanc {
  readonly url: string;
  readonly dicomPort: number;
  readonly process: ChildProcess;
  stop(): void;
}

/** Starts Orthanc in `dir` and waits until its REST API answers. */
export async function startOrthanc(opts: {
  readonly dir: string;
  readonly aeTitle?: string;
  /** Orthanc's DicomModalities: name → [AE title, host, port]. */
  readonly modalities?: Readonly<Record<string, readonly [string, string, number]>>;
  /** Fixed ports (e.g. when a nodes file must name them first); free ones otherwise. */
  readonly dicomPort?: number;
}): Promise<TestOrthanc> {
  if (!ORTHANC_BINARY) throw new Error('Orthanc is not installed (apt-get install orthanc); .ci/run installs it');
  const [dicomPort, httpPort] = [opts.dicomPort ?? (await freePort()), await freePort()];
  mkdirSync(opts.dir, { recursive: true });
  const configFile = path.join(opts.dir, 'orthanc.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      Name: 'portico-test',
      StorageDirectory: path.join(opts.dir, 'storage'),
      IndexDirectory: path.join(opts.dir, 'index'),
      DicomAet: opts.aeTitle ?? 'ORTHANC',
      DicomPort: dicomPort,
      HttpPort: httpPort,
      RemoteAccessAllowed: false,
      AuthenticationEnabled: false,
      DicomCheckCalledAet: false,
      DicomModalities: opts.modalities ?? {},
      Plugins: [],
    }),
  );
  const child = spawn(ORTHANC_BINARY, [configFile], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
  const url = `http://127.0.0.1:${httpPort}`;
  for (const until = Date.now() + 60_000; ;) {
    if (child.exitCode !== null) throw new Error(`Orthanc exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/system`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > until) {
      child.kill();
      throw new Error('Orthanc did not start within 60 s');
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, dicomPort, process: child, stop: () => void child.kill() };
}
