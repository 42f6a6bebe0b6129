import { createConnection, createServer, type Server } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it for a listen on port 0).
 *
 * Prefer port 0 on the server itself wherever the server reports its port back; use this only for
 * programs that must be told a port up front (redis-server, embedded PostgreSQL, dcmtk storescp).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the listening port'))));
    });
  });
}

/**
 * A peer that is down, with its port kept: every connection to 127.0.0.1:port is reset at once (as a
 * crashed PACS behind a live address would answer), and no other test running in parallel can take the
 * port while the peer is away. Close it (`release`) just before the peer comes back on that port.
 */
export async function holdPort(port: number): Promise<{ release(): Promise<void> }> {
  const server: Server = createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * Sends `request` to host:port and resolves true when the first bytes of the answer start with `expect`;
 * false on refusal, timeout or any other answer. Used to probe Redis (`PING` → `+PONG`) without a client library.
 */
export function tcpProbe(host: string, port: number, request: string, expect: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = createConnection({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.length >= expect.length || answer.includes('\n')) done(answer.startsWith(expect));
    });
    socket.once('end', () => done(answer.startsWith(expect)));
  });
}
