/**
 * The standalone object store: a folder. A key maps to the path under the root with the same segments.
 *
 * Durability: `put` streams into a temp file beside the target (`.<name>.<uuid>.tmp`, same folder so the
 * rename is atomic), fsyncs it, renames it over the target and fsyncs the folder; folders it creates are
 * fsynced into their parents too. Only then does `put` resolve, which is what lets C-STORE answer success
 * (DESIGN.md "An acknowledgement is a promise"). A crash mid-put leaves at most a temp file, never a
 * partial object under the real key. `copy` takes the same temp-file route.
 *
 * Limits: a key cannot be both an object and the folder of another (`a/b` and `a/b/c`); our key layout
 * never does that. `contentType` is not stored.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, copyFile, link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { batches, checkDeclaredSize, chunksOf, discardBody, dropBytes } from './body.ts';
import type { ObjectBody } from './body.ts';
import { InvalidRangeError, ObjectNotFoundError } from './errors.ts';
import { assertValidKey, assertValidRange } from './keys.ts';
import type { ObjectReader, ObjectStore, PutOptions } from './index.ts';
import { FolderSync, flushOnce } from './folder-sync.ts';

/**
 * Chunks are gathered into writev batches of this size: few syscalls (each a thread-pool round trip, and on
 * a busy 2-CPU machine often a context switch), bounded memory. Small enough that the file is written while
 * the rest of the instance is still arriving: with 512 KiB batches a 513 KiB CT instance was written only
 * after its last PDU, and that write (0.25-1.3 ms here) sat between the last byte and the C-STORE-RSP. With
 * 128 KiB (dcmsend's largest PDU) `bench/ingest.ts` gave 175-193 instead of 143-164 instances/s over one
 * association and 222-239 instead of 199-225 over four, at no more CPU per instance (alternated runs).
 */
const WRITE_BATCH_BYTES = 128 * 1024;
/** Reads in chunks this large: an instance of a few hundred KiB in one or two reads (each a thread-pool round trip). */
const READ_CHUNK_BYTES = 512 * 1024;

export class FsObjectStore implements ObjectStore {
  readonly kind = 'fs';
  readonly root: string;
  /** Folders known to exist (created or seen by this store); saves a mkdir per put on hot folders. */
  private readonly folders = new Set<string>();
  /** Folder flushes, through cached handles and coalesced per folder. */
  private readonly folderSync = new FolderSync();
  private static readonly MAX_KNOWN_FOLDERS = 10_000;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Creates the root folder when missing. */
  async open(): Promise<this> {
    await mkdirDurable(this.root);
    return this;
  }

  /**
   * mkdirDurable, skipped for folders this store already made or saw. A folder removed behind our back
   * (by hand) makes the next open or rename fail with ENOENT; callers then see the error, as they would
   * without the cache. Bounded: the set is cleared when it grows past MAX_KNOWN_FOLDERS.
   */
  private async ensureFolder(dir: string): Promise<void> {
    if (this.folders.has(dir)) return;
    await mkdirDurable(dir);
    if (this.folders.size >= FsObjectStore.MAX_KNOWN_FOLDERS) this.folders.clear();
    this.folders.add(dir);
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: ObjectBody, opts: PutOptions = {}): Promise<{ size: number }> {
    let path: string;
    let tmp: string;
    let file: FileHandle;
    try {
      path = this.pathOf(key);
      await this.ensureFolder(dirname(path));
      tmp = tempPathFor(path);
      file = await open(tmp, 'wx');
    } catch (err) {
      discardBody(body);
      throw err;
    }
    let size = 0;
    try {
      for await (const batch of batches(chunksOf(body), WRITE_BATCH_BYTES)) {
        const batchBytes = batch.reduce((n, chunk) => n + chunk.length, 0);
        size += batchBytes;
        checkDeclaredSize(key, opts.size, size, false);
        // writev may write less than asked (rare for files, e.g. near ENOSPC): continue with the rest.
        for (let rest = batch, left = batchBytes; left > 0;) {
          const { bytesWritten } = await file.writev(rest);
          left -= bytesWritten;
          rest = dropBytes(rest, bytesWritten);
        }
      }
      checkDeclaredSize(key, opts.size, size, true);
      if (!opts.onVisible) {
        await file.sync();
        await file.close();
        await rename(tmp, path);
      }
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    if (opts.onVisible) {
      // The key is the caller's alone (see the interface): publish first, then flush the file and the
      // folder entry at once — one journal commit instead of two in a row.
      try {
        await rename(tmp, path);
      } catch (err) {
        await file.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw err;
      }
      opts.onVisible();
      try {
        await Promise.all([file.sync(), this.folderSync.sync(dirname(path))]);
        await file.close();
      } catch (err) {
        await file.close().catch(() => undefined);
        await rm(path, { force: true });
        throw err;
      }
      return { size };
    }
    await this.folderSync.sync(dirname(path));
    return { size };
  }

  async get(key: string, range?: { start: number; end: number }): Promise<NodeJS.ReadableStream> {
    const path = this.pathOf(key);
    if (range) assertValidRange(range);
    let file;
    try {
      file = await open(path, 'r');
    } catch (err) {
      throw isMissing(err) ? new ObjectNotFoundError(key, { cause: err }) : err;
    }
    try {
      const info = await file.stat();
      if (!info.isFile()) throw new ObjectNotFoundError(key);
      if (range && range.start >= info.size) {
        throw new InvalidRangeError(`range ${range.start}-${range.end} starts beyond ${key} (${info.size} bytes)`);
      }
    } catch (err) {
      await file.close();
      throw err;
    }
    // The stream owns the handle from here and closes it at end, error or destroy.
    return file.createReadStream({ highWaterMark: READ_CHUNK_BYTES, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async openReader(key: string): Promise<ObjectReader> {
    const path = this.pathOf(key);
    let file: FileHandle;
    try {
      file = await open(path, 'r');
    } catch (err) {
      throw isMissing(err) ? new ObjectNotFoundError(key, { cause: err }) : err;
    }
    return {
      read: async (into, length, position) => (await file.read(into, 0, length, position)).bytesRead,
      close: () => file.close(),
    };
  }

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const info = await stat(this.pathOf(key));
      return info.isFile() ? { size: info.size } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async copy(from: string, to: string): Promise<void> {
    const src = this.pathOf(from);
    const dst = this.pathOf(to);
    if (src === dst) {
      if (await this.stat(from)) return;
      throw new ObjectNotFoundError(from);
    }
    await this.ensureFolder(dirname(dst));
    // A hard link: no bytes copied, and the data is already durable (objects are immutable once written,
    // so sharing the inode is safe). Only the folder entry needs flushing. Straight to the key when it is
    // free (the usual case: a new instance); over an existing object through a temp name and a rename,
    // which replaces it atomically.
    try {
      await link(src, dst);
      await this.folderSync.sync(dirname(dst));
      return;
    } catch (err) {
      if (isMissing(err)) throw new ObjectNotFoundError(from, { cause: err });
      // EEXIST (replace), or links not possible here (EXDEV, EPERM): the route below.
    }
    const tmp = tempPathFor(dst);
    try {
      try {
        await link(src, tmp);
      } catch (err) {
        if (isMissing(err)) throw err;
        // Another filesystem, or links not allowed: a reflink where the filesystem can (btrfs, XFS), else
        // an in-kernel copy.
        await copyFile(src, tmp, constants.COPYFILE_FICLONE);
        await flushOnce(tmp);
      }
      await rename(tmp, dst);
    } catch (err) {
      await rm(tmp, { force: true });
      throw isMissing(err) ? new ObjectNotFoundError(from, { cause: err }) : err;
    }
    await this.folderSync.sync(dirname(dst));
  }

  async move(from: string, to: string): Promise<void> {
    const src = this.pathOf(from);
    const dst = this.pathOf(to);
    if (src === dst) {
      if (await this.stat(from)) return;
      throw new ObjectNotFoundError(from);
    }
    await this.ensureFolder(dirname(dst));
    try {
      await rename(src, dst);
    } catch (err) {
      // Idempotent: a retried move whose first attempt got as far as the rename.
      if (isMissing(err) && (await this.stat(to))) return;
      throw isMissing(err) ? new ObjectNotFoundError(from, { cause: err }) : err;
    }
    // Both folder entries are flushed at once (one journal commit where the filesystem journals).
    await Promise.all([this.folderSync.sync(dirname(dst)), dirname(src) !== dirname(dst) ? this.folderSync.sync(dirname(src)) : undefined]);
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number; modified: Date }> {
    const folder = prefix.replace(/\/+$/, '');
    const dir = this.pathOf(`${folder}/x`).slice(0, -2);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const name of names) {
      // temp files of puts in progress are not objects
      if (name.startsWith('.')) continue;
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (info?.isFile()) yield { key: `${folder}/${name}`, size: info.size, modified: info.mtime };
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    // Durable like S3's DELETE: a crash must not bring back a deleted instance.
    await this.folderSync.sync(dirname(path));
  }

  async ping(): Promise<void> {
    const info = await stat(this.root);
    if (!info.isDirectory()) throw new Error(`object store root ${this.root} is not a folder`);
    await access(this.root, constants.R_OK | constants.W_OK);
  }

  async close(): Promise<void> {
    await this.folderSync.close();
  }
}

/** A temp file beside path (same folder, so the final rename is atomic); put and copy write here first. */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomUUID()}.tmp`);
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * mkdir -p, then fsync every folder that gained an entry (the parent of the first folder created, down to
 * dir itself), so the new folders survive a crash along with the file about to be renamed into dir.
 */
async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  const top = dirname(first);
  for (let d = dir; ; d = dirname(d)) {
    await flushOnce(d);
    if (d === top || d === dirname(d)) break;
  }
}
