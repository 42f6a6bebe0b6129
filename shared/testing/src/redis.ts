/**
 * Redis for tests: env `PORTICO_TEST_REDIS_URL`; else a server on 127.0.0.1:6379 that answers PING;
 * else `redis-server` from PATH on a free port, once per process. (A testcontainers step would slot in
 * before the spawn, used only when a Docker engine answers; there is none on our machines.)
 * Isolation between test files is by key prefix / queue name ({@link uniqueId}), not by server.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, tcpProbe } from './net.ts';

let redisUrl: Promise<string> | undefined;

/**
 * A Redis URL, resolved once per process: env `PORTICO_TEST_REDIS_URL`; else `redis://127.0.0.1:6379`
 * when PING answers within 1 s; else a `redis-server --port <free> --save '' --appendonly no` child,
 * killed when the process exits. Throws with instructions when none of these is possible.
 */
export function testRedisUrl(): Promise<string> {
  redisUrl ??= resolveRedisUrl().catch((err: unknown) => {
    redisUrl = undefined;
    throw err;
  });
  return redisUrl;
}

async function resolveRedisUrl(): Promise<string> {
  const fromEnv = process.env['PORTICO_TEST_REDIS_URL'];
  if (fromEnv) return fromEnv;
  if (await redisPing('127.0.0.1', 6379, 1000)) return 'redis://127.0.0.1:6379';
  return (await startRedisServer()).url;
}

/** True when a Redis server on host:port answers an inline `PING` with `+PONG` within timeoutMs. */
export function redisPing(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return tcpProbe(host, port, 'PING\r\n', '+PONG', timeoutMs);
}

/**
 * Spawns `redis-server` from PATH on 127.0.0.1 and a free port, without persistence, logging to a temp
 * file (read back into the error when it fails to start). The child does not keep the event loop alive;
 * it is killed, and its log removed, when the process exits.
 */
export async function startRedisServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const logFile = join(tmpdir(), `portico-redis-${process.pid}-${randomBytes(4).toString('hex')}.log`);
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--logfile', logFile], {
    stdio: 'ignore',
  });
  const kill = (): void => {
    child.kill('SIGKILL');
  };
  const onExit = (): void => {
    kill();
    rmSync(logFile, { force: true });
  };
  process.once('exit', onExit);
  const exited = new Promise<string>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      resolve(
        err.code === 'ENOENT'
          ? 'redis-server is not on PATH. Set PORTICO_TEST_REDIS_URL, run Redis on 127.0.0.1:6379, or install redis-server (apt-get install redis-server).'
          : `cannot start redis-server: ${err.message}`,
      ),
    );
    child.once('exit', (code, signal) => resolve(`redis-server exited (code ${code}, signal ${signal})`));
  });
  const stop = async (): Promise<void> => {
    process.removeListener('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) {
      kill();
      await exited;
    }
    await rm(logFile, { force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const failure = await Promise.race([exited, sleep(50).then(() => undefined)]);
    if (failure !== undefined) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      await stop();
      throw new Error(`${failure}\n${log}`);
    }
    if (await redisPing('127.0.0.1', port, 500)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
    }
  }
  child.unref();
  return { url: `redis://127.0.0.1:${port}`, stop };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
