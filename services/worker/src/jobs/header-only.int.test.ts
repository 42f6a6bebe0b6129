/**
 * The worker parses stored objects through ranged reads (seekableObject): it must give exactly the result
 * of a full sequential read, for every corpus file, while fetching only the header of a large instance.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseInstance } from '@portico/dicom';
import { openObjectStore, seekableObject } from '@portico/storage';
import { corpusDir, syntheticInstance, syntheticStream, testUid } from '@portico/testing';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe('header-only parse of stored objects', () => {
  it('gives the same result as a full read for every corpus file', async () => {
    const store = await openObjectStore({ kind: 'fs', root: mkdtempSync(path.join(tmpdir(), 'seek-')) });
    let compared = 0;
    for (const file of files(corpusDir()).filter((f) => !f.endsWith('.tsv') && !f.endsWith('.md'))) {
      const bytes = readFileSync(file);
      const full = await parseInstance([bytes]).catch((e: Error) => e);
      const key = `staging/${compared}.dcm`;
      await store.put(key, bytes);
      const ranged = await parseInstance(seekableObject(store, key, bytes.length)).catch((e: Error) => e);
      if (full instanceof Error) {
        expect(ranged, file).toBeInstanceOf(Error);
      } else {
        expect(ranged, file).toEqual(full);
      }
      compared++;
    }
    expect(compared).toBeGreaterThan(90);
  });

  it('reads the header of a 200 MB instance, not its pixel data', async () => {
    const store = await openObjectStore({ kind: 'fs', root: mkdtempSync(path.join(tmpdir(), 'seek-')) });
    const opts = {
      studyInstanceUid: testUid('hs', 1),
      seriesInstanceUid: testUid('hs', 2),
      sopInstanceUid: testUid('hs', 3),
      rows: 2048,
      columns: 2048,
      numberOfFrames: 24,
    };
    const { size } = await store.put('staging/big.dcm', syntheticStream(opts));
    const source = seekableObject(store, 'staging/big.dcm', size);
    const parsed = await parseInstance(source);
    expect(parsed.pixelData?.frames).toHaveLength(24);
    expect(size).toBeGreaterThan(200e6);
    expect(source.bytesRead).toBeLessThan(2 * 1024 * 1024);
  });

  it('reads 64 KiB of a 513 KiB CT instance: the first ranged read is small and grows only when needed', async () => {
    const store = await openObjectStore({ kind: 'fs', root: mkdtempSync(path.join(tmpdir(), 'seek-')) });
    const bytes = syntheticInstance({ studyInstanceUid: testUid('hc', 1), seriesInstanceUid: testUid('hc', 2), sopInstanceUid: testUid('hc', 3) });
    await store.put('staging/ct.dcm', bytes);
    const source = seekableObject(store, 'staging/ct.dcm', bytes.length);
    expect(await parseInstance(source)).toEqual(await parseInstance([bytes]));
    expect(bytes.length).toBeGreaterThan(500_000);
    expect(source.bytesRead).toBeLessThanOrEqual(64 * 1024);
    // a sequential read of the whole object crosses several growing ranges and yields every byte once
    const all = seekableObject(store, 'staging/ct.dcm', bytes.length);
    const chunks: Buffer[] = [];
    for await (const c of all) chunks.push(c);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });
});
