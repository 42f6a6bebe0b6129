import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from './net.ts';
import { run } from './run.ts';

describe('run', () => {
  it('returns exit code and output, and always sets TCP_NODELAY=1', async () => {
    const script = 'process.stdout.write(process.env.TCP_NODELAY + " " + process.env.EXTRA); process.stderr.write("warn"); process.exit(3)';
    const result = await run(process.execPath, ['-e', script], { env: { EXTRA: 'x', TCP_NODELAY: '0' } });
    expect(result).toEqual({ code: 3, signal: null, timedOut: false, stdout: '1 x', stderr: 'warn' });
  });

  it('runs in cwd', async () => {
    const result = await run(process.execPath, ['-e', 'process.stdout.write(process.cwd())'], { cwd: '/tmp' });
    expect(result.stdout).toBe('/tmp');
  });

  it('kills the process at the timeout', async () => {
    const started = Date.now();
    const result = await run(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { timeoutMs: 200 });
    expect(result).toMatchObject({ code: null, signal: 'SIGKILL', timedOut: true });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('rejects when the program does not exist', async () => {
    await expect(run('portico-no-such-tool', [])).rejects.toThrow(/cannot run portico-no-such-tool/);
  });
});

describe('freePort', () => {
  it('gives a port that can be listened on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });

  it('gives distinct ports below the ephemeral range, where no outgoing connection can take them', async () => {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(20);
    for (const port of ports) expect(port).toBeLessThan(low);
  });
});
