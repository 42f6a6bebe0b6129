/**
 * STOW-RS throughput over real HTTP against real backends (PostgreSQL, folder store with fsync, BullMQ on
 * PostgreSQL, the ingest worker running alongside). The request body is generated on the fly, never held
 * whole. Run: node services/dicomweb/src/bench/stow-throughput.ts [copies] [corpus file]
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { corpusDir } from '@portico/testing';
import { closeDelimiter, newBoundary, partHead } from '../multipart.ts';
import { corpusFiles, startHarness } from '../test-support.ts';

const out = (line: string): void => void process.stdout.write(`${line}\n`);

const copies = Number(process.argv[2] ?? 200);
const name = process.argv[3] ?? 'ts/jpeg-lossless-p14_MR_1024.dcm';
const h = await startHarness({ 'http.stowMaxBytes': 64 * 1024 ** 3 });
try {
  const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
  async function stow(parts: Buffer[], label: string): Promise<void> {
    const boundary = newBoundary();
    let i = 0;
    let bytes = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i < parts.length) {
          const head = partHead(boundary, i, { 'Content-Type': 'application/dicom' });
          controller.enqueue(head);
          controller.enqueue(parts[i]!);
          bytes += head.length + parts[i]!.length;
          i += 1;
        } else {
          const end = closeDelimiter(boundary, parts.length);
          bytes += end.length;
          controller.enqueue(end);
          controller.close();
        }
      },
    });
    const started = performance.now();
    const res = await fetch(`${address}/dicom-web/studies`, {
      method: 'POST',
      body,
      duplex: 'half',
      headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` },
    } as RequestInit);
    await res.arrayBuffer();
    const s = (performance.now() - started) / 1000;
    out(
      `${label}: ${parts.length} parts, ${(bytes / 1e6).toFixed(1)} MB, HTTP ${res.status}, ${s.toFixed(2)} s = ${(bytes / 1e6 / s).toFixed(1)} MB/s, ${(parts.length / s).toFixed(0)} instances/s`,
    );
  }
  const corpus = await corpusFiles('ts', 'objects', 'series', 'charset');
  await stow(await Promise.all(corpus.map((c) => readFile(c.path))), 'corpus (ts, objects, series, charset) in one request');
  const one = await readFile(join(corpusDir(), name));
  await stow(
    Array.from({ length: copies }, () => one),
    `${name} x ${copies}`,
  );
  const small = await readFile(join(corpusDir(), 'objects/CT_small.dcm'));
  await stow(
    Array.from({ length: 1000 }, () => small),
    'objects/CT_small.dcm x 1000',
  );

  // Read side, over HTTP once the worker has indexed everything.
  await h.waitForInstances(new Set((await corpusFiles('ts', 'objects', 'series', 'charset')).map((c) => c.name)).size - 10);
  for (;;) {
    const c = await h.queues.counts();
    if ((c['waiting'] ?? 0) + (c['active'] ?? 0) + (c['delayed'] ?? 0) === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const timed = async (label: string, url: string, n: number, accept = 'application/dicom+json'): Promise<void> => {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      const res = await fetch(`${address}${url}`, { headers: { accept } });
      bytes += (await res.arrayBuffer()).byteLength;
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    const total = times.reduce((a, b) => a + b, 0) / 1000;
    out(
      `${label}: p50 ${times[Math.floor(n / 2)]!.toFixed(2)} ms, p95 ${times[Math.floor(n * 0.95)]!.toFixed(2)} ms, ${(bytes / 1e6 / total).toFixed(1)} MB/s`,
    );
  };
  await timed('QIDO /studies?PatientName=doe*', '/dicom-web/studies?PatientName=doe*', 200);
  await timed('QIDO /studies?StudyDate=20000101-20201231&limit=100', '/dicom-web/studies?StudyDate=20000101-20201231&limit=100', 200);
  await timed('QIDO /series?Modality=MR', '/dicom-web/series?Modality=MR', 200);
  await timed('WADO-RS study of 16 MR instances (2.1 MB)', '/dicom-web/studies/1.113654.3.13.1026', 50, 'multipart/related; type="application/dicom"');
  await timed('WADO-RS study metadata (16 MR instances)', '/dicom-web/studies/1.113654.3.13.1026/metadata', 50);
} finally {
  await h.close();
}
