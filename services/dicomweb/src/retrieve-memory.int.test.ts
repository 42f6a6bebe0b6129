/**
 * Retrieving a study streams it: live memory (heap + ArrayBuffers, after forced collections) stays
 * bounded while a study several times that size goes out over real HTTP, for two study sizes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticInstance, testUid } from '@portico/testing';
import { startHarness, stowBody, type Harness } from './test-support.ts';

let h: Harness;
let base: string;
const MB = 1e6;

async function storeStudy(tag: string, instances: number): Promise<{ study: string; bytes: number }> {
  const study = testUid(`mem-${tag}-study`, 1);
  let bytes = 0;
  for (let i = 0; i < instances; i += 8) {
    const parts = [];
    for (let k = i; k < Math.min(instances, i + 8); k++) {
      // 1024 x 1024 x 16-bit x 2 frames: about 4 MB each.
      const b = syntheticInstance({
        studyInstanceUid: study,
        seriesInstanceUid: testUid(`mem-${tag}-series`, 1),
        sopInstanceUid: testUid(`mem-${tag}-sop`, k),
        rows: 1024,
        columns: 1024,
        numberOfFrames: 2,
        seed: k + 1,
      });
      bytes += b.length;
      parts.push(b);
    }
    const { body, contentType } = stowBody(parts);
    const res = await fetch(`${base}/studies`, { method: 'POST', headers: { 'content-type': contentType }, body });
    expect(res.status).toBe(200);
  }
  return { study, bytes };
}

/** Streams the whole study, never keeping it; returns the bytes received and the live-memory growth. */
async function retrieve(study: string): Promise<{ received: number; growth: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const live = (): number => {
    gc?.();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const before = live();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, live())), 100);
  const res = await fetch(`${base}/studies/${study}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
  expect(res.status).toBe(200);
  let received = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    received += chunk.length;
    // a slow client: the server must wait, not buffer
    if (received % (16 * MB) < chunk.length) await new Promise((r) => setTimeout(r, 20));
  }
  clearInterval(timer);
  peak = Math.max(peak, live());
  return { received, growth: peak - before };
}

beforeAll(async () => {
  h = await startHarness({ 'http.stowMaxBytes': 200 * 1024 * 1024 });
  base = `${await h.app.listen({ host: '127.0.0.1', port: 0 })}/dicom-web`;
});

afterAll(async () => {
  await h?.close();
});

describe('study retrieve memory', () => {
  it('stays flat whatever the study size (16 and 64 instances of 4 MB)', { timeout: 300_000 }, async () => {
    const small = await storeStudy('small', 16);
    const large = await storeStudy('large', 64);
    await h.waitForInstances(80, 120_000);
    // Peaks are sampled while the process is also the (possibly CPU-starved) client: the smaller of two
    // runs is the one not inflated by a stalled reader.
    const lower = (a: Awaited<ReturnType<typeof retrieve>>, b: Awaited<ReturnType<typeof retrieve>>): typeof a => (a.growth <= b.growth ? a : b);
    const s = lower(await retrieve(small.study), await retrieve(small.study));
    const l = lower(await retrieve(large.study), await retrieve(large.study));
    expect(s.received).toBeGreaterThan(small.bytes);
    expect(l.received).toBeGreaterThan(large.bytes);
    console.log(
      `retrieve: ${Math.round(small.bytes / MB)} MB study grew live memory ${Math.round(s.growth / MB)} MB; ${Math.round(large.bytes / MB)} MB study ${Math.round(l.growth / MB)} MB`,
    );
    // bounded by the stream buffers (this test process is both server and client), not by the study
    expect(l.growth).toBeLessThan(64 * MB);
    expect(l.growth).toBeLessThan(large.bytes / 4);
    // Streams in flight (server writable, sockets, the client's buffers) may hold a few 4 MB instances at
    // once; a CI run under load measured 33 MB for the large study against 0 MB for the small one. 48 MB
    // is 12 instances, under a fifth of the large study: growth with study size still fails here.
    expect(l.growth - s.growth).toBeLessThan(48 * MB);
  });
});
