import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';

/** Where ports handed out by {@link freePort} come from: below the kernel's ephemeral range. */
const PORT_FLOOR = 10_000;
/** Parallel test processes each get their own slice of that range, so two never pick the same port. */
const SLICES = 16;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > PORT_FLOOR + SLICES * 64) return low;
  } catch {
    // not Linux: fall through to the IANA dynamic range's start
  }
  return 49_152;
}

function portSlice(): { from: number; size: number } {
  const size = Math.floor((ephemeralLow() - PORT_FLOOR) / SLICES);
  const worker = Number(process.env['VITEST_POOL_ID'] ?? process.env['VITEST_WORKER_ID'] ?? process.pid);
  return { from: PORT_FLOOR + (worker % SLICES) * size, size };
}

let slice: { from: number; size: number } | undefined;
let nextInSlice = -1;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that nobody listens on, for programs that must be told a port up front
 * (redis-server, embedded PostgreSQL, dcmtk storescp, a DIMSE port an Orthanc config names).
 *
 * The port comes from below the kernel's ephemeral range, so no outgoing connection (a database
 * client, a peer's SCU) can take it as its local port while the program it was meant for is still
 * starting — a port the kernel picked for `listen(0)` can be, and was (EADDRINUSE in CI). Each test
 * process walks its own slice of that range (by vitest pool id), so parallel files never collide.
 * Prefer port 0 on the server itself wherever the server reports its port back.
 */
export async function freePort(): Promise<number> {
  slice ??= portSlice();
  if (nextInSlice < 0) nextInSlice = Math.floor(Math.random() * slice.size);
  for (let tries = 0; tries < slice.size; tries++) {
    const port = slice.from + (nextInSlice++ % slice.size);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${slice.from}-${slice.from + slice.size - 1}`);
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
