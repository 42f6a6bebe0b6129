import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RoutesError, watchRoutes, type RouteSet, type RoutesWatcher } from './index.ts';

const dir = mkdtempSync(join(tmpdir(), 'portico-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let clock = Math.floor(Date.now() / 1000);
/** Writes a new version of the file with an mtime that surely differs from the previous one. */
function write(file: string, text: string): void {
  writeFileSync(file, text);
  clock += 10;
  utimesSync(file, clock, clock);
}

const rules = (...names: string[]): string =>
  `default: [ARCHIVE]\nrules:\n${names.map((n) => `  - name: ${n}\n    then: [{add: ${n.toUpperCase()}}]\n`).join('')}`;

async function until(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Recorder {
  errors: Error[];
  reloads: RouteSet[];
}

const watchers: RoutesWatcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.stop();
});

function watch(file: string): { watcher: RoutesWatcher; seen: Recorder } {
  const seen: Recorder = { errors: [], reloads: [] };
  const watcher = watchRoutes(file, { intervalMs: 10, onError: (e) => seen.errors.push(e), onReload: (r) => seen.reloads.push(r) });
  watchers.push(watcher);
  return { watcher, seen };
}

describe('watchRoutes', () => {
  it('loads the file at start and picks up a new valid version', async () => {
    const file = join(dir, 'reload.yml');
    write(file, rules('a'));
    const { watcher, seen } = watch(file);
    expect(watcher.current().ruleNames).toEqual(['a']);
    write(file, rules('a', 'b'));
    await until('the reload', () => seen.reloads.length === 1);
    expect(watcher.current().ruleNames).toEqual(['a', 'b']);
    expect(seen.reloads[0]).toBe(watcher.current());
    expect(seen.errors).toEqual([]);
  });

  it('keeps the last valid rules when the file becomes invalid, reports it once, and recovers', async () => {
    const file = join(dir, 'invalid.yml');
    write(file, rules('good'));
    const { watcher, seen } = watch(file);
    const good = watcher.current();
    write(file, 'default: [ARCHIVE]\nrules:\n  - name: bad\n    then: [{add: X, transcode: zip}]\n');
    await until('the error', () => seen.errors.length === 1);
    const err = seen.errors[0]!;
    expect(err).toBeInstanceOf(RoutesError);
    expect((err as RoutesError).line).toBe(4);
    expect(err.message).toContain(`${file}:4:`);
    expect(watcher.current()).toBe(good);
    // the same invalid version is not reported again on every poll
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.errors).toHaveLength(1);
    expect(watcher.current()).toBe(good);
    write(file, rules('fixed'));
    await until('the reload', () => seen.reloads.length === 1);
    expect(watcher.current().ruleNames).toEqual(['fixed']);
  });

  it('keeps the rules when the file disappears, and takes it again when it is back', async () => {
    const file = join(dir, 'vanishing.yml');
    write(file, rules('one'));
    const { watcher, seen } = watch(file);
    rmSync(file);
    await until('the error', () => seen.errors.length === 1);
    expect(seen.errors[0]!.message).toMatch(/cannot read the routes file: ENOENT/);
    await new Promise((r) => setTimeout(r, 60));
    expect(seen.errors).toHaveLength(1);
    expect(watcher.current().ruleNames).toEqual(['one']);
    write(file, rules('two'));
    await until('the reload', () => seen.reloads.length === 1);
    expect(watcher.current().ruleNames).toEqual(['two']);
  });

  it('takes a file swapped in by rename (how editors and Kubernetes ConfigMaps update it)', async () => {
    const file = join(dir, 'swapped.yml');
    write(file, rules('old'));
    const { watcher, seen } = watch(file);
    const next = join(dir, 'swapped.yml.tmp');
    write(next, rules('new'));
    renameSync(next, file);
    await until('the reload', () => seen.reloads.length === 1);
    expect(watcher.current().ruleNames).toEqual(['new']);
  });

  it('refuses to start on an invalid file: there are no earlier rules to keep', () => {
    const file = join(dir, 'bad-at-start.yml');
    write(file, 'rules:\n  - name: x\n');
    expect(() => watchRoutes(file, { intervalMs: 10, onError: () => undefined })).toThrow(RoutesError);
    expect(() => watchRoutes(join(dir, 'absent.yml'), { intervalMs: 10, onError: () => undefined })).toThrow(RoutesError);
  });

  it('stops polling when stopped', async () => {
    const file = join(dir, 'stopped.yml');
    write(file, rules('before'));
    const { watcher, seen } = watch(file);
    watcher.stop();
    write(file, rules('after'));
    await new Promise((r) => setTimeout(r, 80));
    expect(seen.reloads).toEqual([]);
    expect(watcher.current().ruleNames).toEqual(['before']);
  });
});
