/**
 * Protocol tests of the DIMSE SCP against real dcmtk peers (echoscu, storescu, dcmsend), a real folder
 * object store and real queues (BullMQ on PostgreSQL; Redis for the queue-outage case).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createWriteStream, mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore, type ObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues } from '@portico/jobs';
import { PORTICO_IMPLEMENTATION_CLASS_UID, PORTICO_IMPLEMENTATION_VERSION_NAME, parseInstance, readFileMetaInformation } from '@portico/dicom';
import { openDb, type Db } from '@portico/db';
import { corpusDir, createTestDatabase, freePort, run, syntheticInstance, syntheticStream, testUid, uniqueId } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';
import { StoreScu, datasetOffset } from './store-scu.ts';
import { rqPdu } from './test-support.ts';

const log = createLogger({ service: 'dimse-test', level: 'silent' });

async function writeSynthetic(dir: string, name: string, opts: Parameters<typeof syntheticInstance>[0]): Promise<string> {
  const file = path.join(dir, name);
  writeFileSync(file, syntheticInstance(opts));
  return file;
}

/** The data set bytes of a Part-10 file (after its File Meta group), keyed by SOP Instance UID. */
function dataSetOf(file: string): { sopInstanceUid: string; dataSet: Buffer } {
  const bytes = readFileSync(file);
  const meta = readFileMetaInformation(bytes);
  return { sopInstanceUid: meta.sopInstanceUid, dataSet: bytes.subarray(meta.datasetOffset) };
}

/** Runs a bit-preserving storescp (+B) into a folder for as long as fn runs: the reference receiver. */
async function withReferenceScp<T>(fn: (port: number, dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'dimse-ref-'));
  const port = await freePort();
  const scp = spawn('storescp', ['+B', '-od', dir, String(port)], { env: { ...process.env, TCP_NODELAY: '1' } });
  await new Promise((r) => setTimeout(r, 300));
  try {
    return await fn(port, dir);
  } finally {
    scp.kill();
  }
}

function stagedFiles(root: string): string[] {
  const dir = path.join(root, 'staging');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.dcm')) : [];
}

describe('DIMSE SCP with dcmtk peers', () => {
  let server: DimseServer;
  let store: ObjectStore;
  let queues: JobQueues;
  let root: string;
  let drop: () => Promise<void>;
  let index: Db;
  const work = mkdtempSync(path.join(tmpdir(), 'dimse-int-'));

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    root = mkdtempSync(path.join(tmpdir(), 'dimse-objects-'));
    store = await openObjectStore({ kind: 'fs', root });
    queues = await openJobQueues({ kind: 'postgres', url: db.url, schema: uniqueId('q').replace(/[^a-z0-9_]/g, '_') }, log);
    index = openDb(db.url);
    // A maximum PDU length above dcmjs-dimse's own default (262144), which used to cap the one we announce.
    const config = loadConfig({ env: {}, overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'dimse.maxAssociations': 4, 'dimse.maxPduLength': 524288 } });
    server = await startDimseServer({ config, log, store, queues, db: index, allowUnknownAe: true });
  });
  afterAll(async () => {
    await server?.close(1000);
    await queues?.close();
    await index?.close();
    await drop?.();
  });

  it("answers C-ECHO, and its A-ASSOCIATE-AC names Portico's implementation and maximum PDU length", async () => {
    const r = await run('echoscu', ['-d', '-aec', 'PORTICO', '127.0.0.1', String(server.port)]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    const ac = out.slice(out.indexOf('BEGIN A-ASSOCIATE-AC'), out.indexOf('END A-ASSOCIATE-AC'));
    expect(ac).toMatch(new RegExp(`Their Implementation Class UID:\\s+${PORTICO_IMPLEMENTATION_CLASS_UID.replaceAll('.', '\\.')}\\s`));
    expect(ac).toMatch(new RegExp(`Their Implementation Version Name:\\s+${PORTICO_IMPLEMENTATION_VERSION_NAME}\\s`));
    expect(ac).toMatch(/Their Max PDU Receive Size:\s+524288\s/);
  });

  /** Sends one PDU on a fresh connection and collects what comes back until the SCP closes or 2 s pass. */
  const exchange = (pdu: Buffer): Promise<{ reply: Buffer; closed: boolean }> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const s = net.connect(server.port, '127.0.0.1', () => s.write(pdu));
      const done = (closed: boolean): void => {
        clearTimeout(timer);
        s.destroy();
        resolve({ reply: Buffer.concat(chunks), closed });
      };
      const timer = setTimeout(() => done(false), 2000);
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('close', () => done(true));
      s.on('error', () => undefined);
    });

  it('answers an A-ASSOCIATE-RQ it cannot honour with the standard reject, and an unreadable one with an A-ABORT', async () => {
    // PS3.8 Table 9-21: a foreign application context is rejected permanently by the service user, reason 2.
    const foreign = await exchange(rqPdu({ appContext: '1.2.3.4.5' }));
    expect([...foreign.reply]).toEqual([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 2]);
    // Protocol version without bit 0: rejected by the ACSE service provider, protocol version not supported.
    const version = await exchange(rqPdu({ version: 2 }));
    expect([...version.reply]).toEqual([0x03, 0, 0, 0, 0, 4, 0, 1, 2, 2]);
    // An item that runs past the PDU: A-ABORT, service provider, invalid PDU parameter value; then closed.
    const bad = rqPdu();
    bad.writeUInt16BE(0xfff0, 74 + 2);
    const aborted = await exchange(bad);
    expect([...aborted.reply]).toEqual([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6]);
    expect(aborted.closed).toBe(true);
    // The SCP still serves the next association.
    expect((await run('echoscu', ['-aec', 'PORTICO', '127.0.0.1', String(server.port)])).code).toBe(0);
  });

  it('stages the exact data set bytes behind a correct File Meta group and enqueues one ingest job', async () => {
    const before = (await queues.counts())['waiting'] ?? 0;
    const file = path.join(corpusDir(), 'series/nist_MR_explicit/IM01.dcm');
    const r = await run('storescu', ['-aec', 'PORTICO', '-aet', 'MODALITY1', '127.0.0.1', String(server.port), file]);
    expect(r.code, r.stderr).toBe(0);
    const staged = stagedFiles(root);
    expect(staged).toHaveLength(1);
    const bytes = readFileSync(path.join(root, 'staging', staged[0]!));
    // dcmtk re-encodes while sending: the reference is what a bit-preserving storescp receives from the same command
    const refDir = mkdtempSync(path.join(tmpdir(), 'dimse-ref-'));
    const refPort = await freePort();
    const scp = spawn('storescp', ['+B', '-od', refDir, String(refPort)], { env: { ...process.env, TCP_NODELAY: '1' } });
    await new Promise((r) => setTimeout(r, 300));
    const refRun = await run('storescu', ['-aet', 'MODALITY1', '127.0.0.1', String(refPort), file]);
    scp.kill();
    expect(refRun.code, refRun.stderr).toBe(0);
    const original = readFileSync(path.join(refDir, readdirSync(refDir)[0]!));
    const metaEnd = (b: Buffer): number => 132 + 12 + b.readUInt32LE(140);
    expect(bytes.subarray(metaEnd(bytes)).equals(original.subarray(metaEnd(original)))).toBe(true);
    const parsed = await parseInstance(
      (async function* () {
        yield bytes;
      })(),
    );
    expect(parsed.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(bytes.toString('latin1').includes('MODALITY1')).toBe(true); // (0002,0016) Source AE Title
    expect(((await queues.counts())['waiting'] ?? 0) - before).toBe(1);
  });

  it('answers Success to every corpus file dcmsend sends with the options a user types', async () => {
    const report = path.join(work, 'dcmsend-report.txt');
    const folders = ['ts', 'objects', 'series', 'charset', 'odd', 'broken'];
    const r = await run('dcmsend', ['-nh', '+sd', '+r', '127.0.0.1', String(server.port), ...folders, '-aec', 'PORTICO', '+crf', report], {
      cwd: corpusDir(),
      timeoutMs: 300_000,
    });
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(report, 'utf8');
    const statuses = [...text.matchAll(/^DIMSE Status\s*:\s*(.*)$/gm)].map((m) => m[1]!.trim());
    const sent = statuses.filter((st) => st !== '<not sent>');
    expect(sent.length).toBeGreaterThanOrEqual(80);
    expect(sent.filter((st) => !st.startsWith('0x0000'))).toEqual([]);
  });

  it('stores every corpus file byte for byte as a pass-through sender sends it', async () => {
    // dcmtk re-encodes many files while sending; Portico's own C-STORE SCU sends each file's data set
    // bytes as they are, so what is staged must equal the file after its File Meta group.
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    const files = ['ts', 'objects', 'series', 'charset', 'odd', 'broken'].flatMap((f) => walk(path.join(corpusDir(), f)));
    // The command names what the data set says (a few corpus files' File Meta groups contradict it).
    const objects: Array<{ sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string; objectKey: string }> = [];
    for (const file of files) {
      try {
        const bytes = readFileSync(file);
        datasetOffset(bytes); // the sender needs a preamble and a File Meta group length
        const parsed = await parseInstance(
          (async function* () {
            yield bytes;
          })(),
        );
        if (parsed.sopClassUid && parsed.sopInstanceUid)
          objects.push({
            sopClassUid: parsed.sopClassUid,
            sopInstanceUid: parsed.sopInstanceUid,
            transferSyntaxUid: parsed.transferSyntaxUid,
            objectKey: file,
          });
      } catch {
        // not a data set Portico accepts: the dcmsend test above covers what happens to those
      }
    }
    const scu = await StoreScu.open(
      { host: '127.0.0.1', port: server.port, callingAeTitle: 'PASSTHRU', calledAeTitle: 'PORTICO', maxPduLength: 16384, timeoutMs: 30_000 },
      objects,
    );
    const files$ = {
      get: async (key: string) =>
        (async function* () {
          yield readFileSync(key);
        })(),
    } as unknown as ObjectStore;
    let stored = 0;
    const differing: string[] = [];
    for (const object of objects) {
      if (!scu.acceptedContext(object) || scu.acceptedSyntax(object) !== object.transferSyntaxUid) continue;
      const before = new Set(stagedFiles(root));
      const { status } = await scu.send(object, files$);
      expect(status, object.objectKey).toBe(0);
      const added = stagedFiles(root).filter((f) => !before.has(f));
      expect(added, object.objectKey).toHaveLength(1);
      if (!dataSetOf(path.join(root, 'staging', added[0]!)).dataSet.equals(dataSetOf(object.objectKey).dataSet)) differing.push(object.objectKey);
      stored++;
    }
    await scu.release();
    expect(stored).toBeGreaterThanOrEqual(80);
    expect(differing).toEqual([]);
  });

  it('stores the same bytes whatever PDU size the sender uses (4 KiB to 128 KiB PDUs)', async () => {
    const file = await writeSynthetic(work, 'pdu-sizes.dcm', {
      studyInstanceUid: testUid('pdu-st', 1),
      seriesInstanceUid: testUid('pdu-se', 1),
      sopInstanceUid: testUid('pdu-i', 1),
    });
    const expected = await withReferenceScp(async (port, dir) => {
      const ref = await run('storescu', ['127.0.0.1', String(port), file]);
      expect(ref.code, ref.stderr).toBe(0);
      return dataSetOf(path.join(dir, readdirSync(dir)[0]!)).dataSet;
    });
    for (const pdu of ['4096', '16384', '131072']) {
      const before = new Set(stagedFiles(root));
      const r = await run('storescu', ['--max-send-pdu', pdu, '-aec', 'PORTICO', '127.0.0.1', String(server.port), file]);
      expect(r.code, r.stderr).toBe(0);
      const added = stagedFiles(root).filter((f) => !before.has(f));
      expect(added, `PDU ${pdu}`).toHaveLength(1);
      expect(dataSetOf(path.join(root, 'staging', added[0]!)).dataSet.equals(expected), `PDU ${pdu}`).toBe(true);
    }
  });

  it('accepts a data set without Study Instance UID (the worker derives one) and stages it', async () => {
    const stagedBefore = stagedFiles(root).length;
    const file = await writeSynthetic(work, 'nostudy.dcm', {
      studyInstanceUid: '',
      seriesInstanceUid: testUid('s', 1),
      sopInstanceUid: testUid('i', 1),
      rows: 16,
      columns: 16,
      omit: ['0020000D'],
    });
    const r = await run('storescu', ['-aec', 'PORTICO', '127.0.0.1', String(server.port), file]);
    expect(r.code, r.stderr).toBe(0);
    expect(stagedFiles(root)).toHaveLength(stagedBefore + 1);
  });

  it('refuses a data set whose SOP Instance UID contradicts the command with 0xA900 and keeps nothing', async () => {
    const stagedBefore = stagedFiles(root).length;
    const dimse = (await import('dcmjs-dimse')).default;
    const file = await writeSynthetic(work, 'mismatch.dcm', {
      studyInstanceUid: testUid('st', 3),
      seriesInstanceUid: testUid('s', 3),
      sopInstanceUid: testUid('i', 3),
      rows: 16,
      columns: 16,
    });
    const client = new dimse.Client();
    const request = new dimse.requests.CStoreRequest(file);
    request.setAffectedSopInstanceUid(testUid('other', 3));
    const statuses: number[] = [];
    request.on('response', (response: { getStatus(): number }) => statuses.push(response.getStatus()));
    client.addRequest(request);
    await new Promise<void>((resolve, reject) => {
      client.on('closed', () => resolve());
      client.on('networkError', (e: Error) => reject(e));
      client.send('127.0.0.1', server.port, 'DCMJS', 'PORTICO');
    });
    expect(statuses).toEqual([0xa900]);
    expect(stagedFiles(root)).toHaveLength(stagedBefore);
  });

  it('stores a 300 MB instance with flat memory and byte-identical pixel data', async () => {
    const big = path.join(work, 'big.dcm');
    const opts = {
      studyInstanceUid: testUid('st', 2),
      seriesInstanceUid: testUid('se', 2),
      sopInstanceUid: testUid('i', 2),
      rows: 2048,
      columns: 2048,
      numberOfFrames: 36,
    };
    await pipeline(Readable.from(syntheticStream(opts)), createWriteStream(big));
    // Live memory (collections forced when --expose-gc is on, as in the integration project): RSS alone
    // mostly measures garbage that V8 has not collected yet.
    const gc = (globalThis as { gc?: () => void }).gc;
    const live = (): number => {
      gc?.();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const rssBefore = live();
    let peak = rssBefore;
    const timer = setInterval(() => (peak = Math.max(peak, live())), 200);
    const stagedBefore = new Set(stagedFiles(root));
    const r = await run('storescu', ['-aec', 'PORTICO', '127.0.0.1', String(server.port), big], { timeoutMs: 120_000 });
    clearInterval(timer);
    expect(r.code, r.stderr).toBe(0);
    const added = stagedFiles(root).filter((f) => !stagedBefore.has(f));
    expect(added).toHaveLength(1);
    console.log(`300 MB C-STORE: live memory (heap + buffers) grew ${Math.round((peak - rssBefore) / 1e6)} MB`);
    // bounded by the socket, PDU and channel buffers (measured: 50-95 MB live for 100 MB to 900 MB instances)
    expect(peak - rssBefore).toBeLessThan(120e6);
    const stored = readFileSync(path.join(root, 'staging', added[0]!));
    const original = readFileSync(big);
    expect(stored.length - (132 + 12 + stored.readUInt32LE(140))).toBe(original.length - (132 + 12 + original.readUInt32LE(140)));
    expect(stored.subarray(-1_000_000).equals(original.subarray(-1_000_000))).toBe(true);
  });

  it('leaves nothing half-stored when the sender dies mid-transfer', async () => {
    const big = path.join(work, 'big.dcm');
    const stagedBefore = stagedFiles(root).length;
    const child = spawn('storescu', ['-aec', 'PORTICO', '127.0.0.1', String(server.port), big], { env: { ...process.env, TCP_NODELAY: '1' } });
    await new Promise((r) => setTimeout(r, 400));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The receiver notices the dead connection and removes its temp file asynchronously (slower on a
    // loaded machine): wait for it, bounded.
    await vi.waitFor(
      () => {
        expect(stagedFiles(root)).toHaveLength(stagedBefore);
        expect(readdirSync(path.join(root, 'staging')).filter((f) => !f.endsWith('.dcm'))).toEqual([]);
      },
      { timeout: 15_000, interval: 100 },
    );
  });

  it('drops the data set in flight on an A-ABORT and keeps the earlier instances of the association', async () => {
    const stagedBefore = stagedFiles(root).length;
    const whole = syntheticInstance({ studyInstanceUid: testUid('ab-st', 1), seriesInstanceUid: testUid('ab-se', 1), sopInstanceUid: testUid('ab-i', 1) });
    const meta = readFileMetaInformation(whole);
    const object = { sopClassUid: meta.sopClassUid, sopInstanceUid: meta.sopInstanceUid, transferSyntaxUid: meta.transferSyntaxUid, objectKey: 'x' };
    const scu = await StoreScu.open(
      { host: '127.0.0.1', port: server.port, callingAeTitle: 'ABORTER', calledAeTitle: 'PORTICO', maxPduLength: 16384, timeoutMs: 10_000 },
      [object],
    );
    // One instance stored in full, then a second whose data set stops half-way: the sender then aborts.
    const source = (body: AsyncIterable<Buffer>): ObjectStore => ({ get: async () => body }) as unknown as ObjectStore;
    const once = async function* (b: Buffer): AsyncGenerator<Buffer> {
      yield b;
    };
    expect((await scu.send(object, source(once(whole)))).status).toBe(0);
    let stalled!: () => void;
    const halfSent = new Promise<void>((r) => (stalled = r));
    const half = (async function* () {
      yield whole.subarray(0, 300_000);
      stalled();
      await new Promise(() => undefined);
    })();
    void scu.send({ ...object, sopInstanceUid: testUid('ab-i', 2) }, source(half)).catch(() => undefined);
    await halfSent;
    await new Promise((r) => setTimeout(r, 200));
    // A-ABORT (PS3.8 §9.3.8) on an open connection: the receiver drops the partial object by itself.
    const socket = (scu as unknown as { socket: net.Socket }).socket;
    socket.write(Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
    await new Promise((r) => setTimeout(r, 500));
    expect(stagedFiles(root)).toHaveLength(stagedBefore + 1);
    expect(readdirSync(path.join(root, 'staging')).filter((f) => !f.endsWith('.dcm'))).toEqual([]);
    socket.destroy();
  });

  it('rejects associations over the limit with reason local-limit-exceeded', async () => {
    // hold 4 associations open with slow echoes is awkward with dcmtk; open raw sockets instead
    const held = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect(server.port, '127.0.0.1', () => resolve(s));
          }),
      ),
    );
    try {
      const r = await run('echoscu', ['-aec', 'PORTICO', '127.0.0.1', String(server.port)]);
      expect(r.code).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/Local Limit Exceeded|rejected/i);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe('DIMSE SCP when a backend is down', () => {
  it('answers 0xA700 Out of Resources when the queue is unreachable, and keeps no staging object', async () => {
    const redisPort = await freePort();
    const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    const root = mkdtempSync(path.join(tmpdir(), 'dimse-down-'));
    const store = await openObjectStore({ kind: 'fs', root });
    const queues = await openJobQueues({ kind: 'redis', url: `redis://127.0.0.1:${redisPort}`, prefix: 'down' }, log);
    const config = loadConfig({ env: {}, overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1' } });
    // C-STORE never touches the index: a pool that would fail on first use is enough.
    const unusedIndex = openDb('postgres://postgres@127.0.0.1:1/none');
    const server = await startDimseServer({ config, log, store, queues, db: unusedIndex, allowUnknownAe: true });
    try {
      redis.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      const file = path.join(corpusDir(), 'series/nist_MR_explicit/IM02.dcm');
      const r = await run('storescu', ['-v', '-aec', 'PORTICO', '127.0.0.1', String(server.port), file], { timeoutMs: 60_000 });
      expect(`${r.stdout}${r.stderr}`).toMatch(/0xa700|Out ?of ?Resources/i);
      expect(stagedFiles(root)).toEqual([]);
    } finally {
      await server.close(1000);
      await queues.close();
      await unusedIndex.close();
      redis.kill('SIGKILL');
    }
  });
});

describe('DIMSE SCP with a failing or slow object store', () => {
  let server: DimseServer;
  let root: string;
  let drop: () => Promise<void>;
  let queues: JobQueues;
  let index: Db;
  /** What the store does with each chunk of a put, given the bytes received so far. */
  let onChunk: (received: number) => Promise<void> = async () => undefined;
  const work = mkdtempSync(path.join(tmpdir(), 'dimse-slow-'));

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    root = mkdtempSync(path.join(tmpdir(), 'dimse-slow-objects-'));
    const inner = await openObjectStore({ kind: 'fs', root });
    // The folder store, with every put body passed through onChunk first.
    const store = Object.create(inner) as ObjectStore;
    store.put = (key, body, opts) =>
      inner.put(
        key,
        (async function* () {
          let received = 0;
          for await (const chunk of body as AsyncIterable<Buffer>) {
            received += chunk.length;
            await onChunk(received);
            yield chunk;
          }
        })(),
        opts,
      );
    queues = await openJobQueues({ kind: 'postgres', url: db.url, schema: uniqueId('q').replace(/[^a-z0-9_]/g, '_') }, log);
    index = openDb(db.url);
    const config = loadConfig({ env: {}, overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1' } });
    server = await startDimseServer({ config, log, store, queues, db: index, allowUnknownAe: true });
  });
  afterAll(async () => {
    await server?.close(1000);
    await queues?.close();
    await index?.close();
    await drop?.();
  });

  it('answers 0xA700 when the object store fails mid-stream, and keeps nothing', async () => {
    onChunk = async (received) => {
      if (received > 200_000) throw new Error('disk on fire');
    };
    const file = await writeSynthetic(work, 'fails.dcm', {
      studyInstanceUid: testUid('f-st', 1),
      seriesInstanceUid: testUid('f-se', 1),
      sopInstanceUid: testUid('f-i', 1),
    });
    const r = await run('storescu', ['-v', '-aec', 'PORTICO', '127.0.0.1', String(server.port), file]);
    onChunk = async () => undefined;
    expect(`${r.stdout}${r.stderr}`).toMatch(/0xa700|Out ?of ?Resources/i);
    expect(stagedFiles(root)).toEqual([]);
    expect(existsSync(path.join(root, 'staging')) ? readdirSync(path.join(root, 'staging')) : []).toEqual([]);
  });

  it('slows the sender down to a slow object store instead of buffering what it cannot store yet', async () => {
    const big = path.join(work, 'slow.dcm');
    const opts = {
      studyInstanceUid: testUid('sl-st', 1),
      seriesInstanceUid: testUid('sl-se', 1),
      sopInstanceUid: testUid('sl-i', 1),
      rows: 2048,
      columns: 2048,
      numberOfFrames: 12,
    };
    await pipeline(Readable.from(syntheticStream(opts)), createWriteStream(big));
    // A proxy counts what reaches Portico's socket; the store counts what it has taken. Without
    // back-pressure the difference grows to most of the ~100 MB instance; with it, it stays within the
    // socket buffers and a few PDUs.
    let forwarded = 0;
    let stored = 0;
    let backlog = 0;
    const proxy = net.createServer((client) => {
      const upstream = net.connect(server.port, '127.0.0.1');
      client.on('data', (chunk: Buffer) => {
        forwarded += chunk.length;
        backlog = Math.max(backlog, forwarded - stored);
      });
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    // about 1 ms per 128 KiB: ~100 MB in a second or more, slower than the network
    onChunk = async (received) => {
      stored = received;
      if (received % (128 * 1024) < 65536) await new Promise((r) => setTimeout(r, 1));
    };
    const started = performance.now();
    const r = await run('storescu', ['-aec', 'PORTICO', '127.0.0.1', String((proxy.address() as net.AddressInfo).port), big], { timeoutMs: 120_000 });
    onChunk = async () => undefined;
    proxy.close();
    expect(r.code, r.stderr).toBe(0);
    console.log(
      `slow store, 100 MB C-STORE in ${Math.round(performance.now() - started)} ms: at most ${Math.round(backlog / 1e6)} MB received but not yet stored`,
    );
    expect(backlog).toBeLessThan(16e6);
    expect(stagedFiles(root)).toHaveLength(1);
  });
});
