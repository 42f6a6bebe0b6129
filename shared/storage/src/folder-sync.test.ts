import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FolderSync } from './folder-sync.ts';

const root = mkdtempSync(join(tmpdir(), 'folder-sync-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('FolderSync', () => {
  it('coalesces the flushes asked for while one runs into one more', async () => {
    const dir = join(root, 'a');
    mkdirSync(dir);
    const probe = await open(dir, 'r');
    const sync = vi.spyOn(Object.getPrototypeOf(probe) as { sync: () => Promise<void> }, 'sync');
    await probe.close();
    const fs = new FolderSync();
    try {
      await fs.sync(dir);
      expect(sync).toHaveBeenCalledTimes(1);
      sync.mockClear();
      // one starts now; the nine asked for while it runs share the next
      await Promise.all(Array.from({ length: 10 }, () => fs.sync(dir)));
      expect(sync).toHaveBeenCalledTimes(2);
      sync.mockClear();
      // one after the other: a flush each
      await fs.sync(dir);
      await fs.sync(dir);
      expect(sync).toHaveBeenCalledTimes(2);
    } finally {
      sync.mockRestore();
      await fs.close();
    }
  });

  it('keeps a bounded number of folder handles open and closes them on close()', async () => {
    const before = openFds();
    const fs = new FolderSync();
    for (let i = 0; i < 100; i++) {
      const dir = join(root, `many-${i}`);
      mkdirSync(dir);
      await fs.sync(dir);
    }
    // allow the evicted handles' close() to finish
    await new Promise((r) => setTimeout(r, 50));
    expect(openFds() - before).toBeLessThanOrEqual(32);
    expect(openFds() - before).toBeGreaterThan(0);
    await fs.close();
    expect(openFds()).toBe(before);
    // still flushes after close, without keeping handles
    await fs.sync(join(root, 'many-0'));
    expect(openFds()).toBe(before);
  });

  it('rejects for a folder that does not exist, and recovers when it appears', async () => {
    const fs = new FolderSync();
    const dir = join(root, 'later');
    await expect(fs.sync(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    mkdirSync(dir);
    await expect(fs.sync(dir)).resolves.toBeUndefined();
    await fs.close();
  });
});
