import { spawn } from 'node:child_process';

/** Outcome of {@link run}. `code` is null when the process was ended by a signal (see `signal`, `timedOut`). */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** Default for {@link run}'s `timeoutMs`: long enough for any dcmtk tool on the test corpus, short enough not to hang CI. */
export const DEFAULT_RUN_TIMEOUT_MS = 60_000;

/**
 * Runs a program (typically a dcmtk tool: storescu, dcmsend, findscu, movescu, getscu, echoscu, storescp)
 * and resolves with its exit status and output; never rejects for a non-zero exit, only when the program
 * cannot be started (e.g. not installed).
 *
 * `TCP_NODELAY=1` is always set: dcmtk leaves Nagle's algorithm on unless told, which stalls every small
 * PDU by ~40 ms against a delayed-ACK peer. On timeout the process is killed with SIGKILL and the
 * result has `timedOut: true`.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env, TCP_NODELAY: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
  });
}
