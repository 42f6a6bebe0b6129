/**
 * Runs `portico <role>` as a child process for end-to-end tests, with every port chosen free and logs
 * captured (printed when a test fails to start it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { porticoCommand } from '@portico/testing';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Quick retries and reconciliation, so the store-and-forward loss scenarios finish in seconds rather than
 * the minutes of the defaults.
 */
export const QUICK_RECOVERY_ENV: Readonly<Record<string, string>> = {
  PORTICO_EXPORT_BACKOFF_MS: '300',
  PORTICO_EXPORT_MAX_ATTEMPTS: '30',
  PORTICO_EXPORT_LEASE_MS: '3000',
  PORTICO_EXPORT_RECONCILE_INTERVAL_MS: '1000',
  PORTICO_EXPORT_RECONCILE_AFTER_MS: '2000',
  PORTICO_RECONCILE_INTERVAL_MS: '1000',
  PORTICO_RECONCILE_AFTER_MS: '3000',
};

export interface PorticoProcess {
  readonly child: ChildProcess;
  readonly role: string;
  logs(): string;
  /** Resolves with the exit code when the process ends by itself. */
  exited(): Promise<number | null>;
  /** SIGTERM (or the signal given), then wait for exit; SIGKILL after timeoutMs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export function startPortico(role: string, env: Record<string, string>): PorticoProcess {
  const launch = porticoCommand([role]);
  const child = spawn(launch.command, launch.args, {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', PORTICO_LOG_LEVEL: 'info', ...launch.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    role,
    logs: () => out,
    exited: () => exited,
    async stop(signal = 'SIGTERM', timeoutMs = 30_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Polls until GET url answers 200, or throws with the process logs. */
export async function waitForHttp(url: string, procs: PorticoProcess[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const p of procs) {
      if (p.child.exitCode !== null) throw new Error(`portico ${p.role} exited with ${p.child.exitCode}:\n${p.logs()}`);
    }
    try {
      const res = await fetch(url);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms:\n${procs.map((p) => `--- ${p.role}\n${p.logs()}`).join('\n')}`);
}

/** Polls until the DIMSE port accepts an association (echoscu). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
