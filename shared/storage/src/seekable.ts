/**
 * An object as a seekable byte source: iteration reads it from the current position with ranged gets,
 * and `seek` moves the position, so a reader that skips (the instance parser skipping pixel data) never
 * fetches the skipped bytes — from S3 as much as from a folder.
 *
 * The ranges grow: the first get after a start or seek asks for FIRST_WINDOW bytes, each following one
 * for twice as many (up to the end of the object). A header is usually a few KiB and the parser seeks
 * over the pixel data right after it, so a 513 KiB CT instance costs a 64 KiB read instead of the whole
 * object (a folder store read it in one 512 KiB chunk; S3 sent all of it).
 */
import type { ObjectStore } from './index.ts';

export interface SeekableObject extends AsyncIterable<Buffer> {
  /** Continue at this absolute offset; false when it lies beyond the end of the object. */
  seek(position: number): Promise<boolean>;
  /** Bytes actually fetched so far (for tests and metrics). */
  readonly bytesRead: number;
}

/** Bytes asked for by the first ranged get after a start or seek. */
const FIRST_WINDOW = 64 * 1024;

export function seekableObject(store: ObjectStore, key: string, size: number): SeekableObject {
  let position = 0;
  let bytesRead = 0;
  let window = FIRST_WINDOW;
  /** End (exclusive) of the range being read. */
  let rangeEnd = 0;
  let stream: NodeJS.ReadableStream | undefined;
  let chunks: AsyncIterator<Buffer | string> | undefined;

  const stop = (): void => {
    (stream as { destroy?: () => void } | undefined)?.destroy?.();
    stream = undefined;
    chunks = undefined;
  };

  return {
    get bytesRead() {
      return bytesRead;
    },
    async seek(target: number): Promise<boolean> {
      stop();
      position = target;
      window = FIRST_WINDOW;
      return target <= size;
    },
    [Symbol.asyncIterator](): AsyncIterator<Buffer> {
      return {
        async next(): Promise<IteratorResult<Buffer>> {
          for (;;) {
            if (!chunks) {
              if (position >= size) return { done: true, value: undefined };
              rangeEnd = Math.min(size, position + window);
              window *= 2;
              stream = await store.get(key, { start: position, end: rangeEnd - 1 });
              chunks = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
            }
            const r = await chunks.next();
            if (!r.done) {
              const buf = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
              position += buf.length;
              bytesRead += buf.length;
              return { done: false, value: buf };
            }
            stop();
            // The range is read; the next one starts where it ended (a short range: the object shrank).
            if (position < rangeEnd) {
              position = size;
              return { done: true, value: undefined };
            }
          }
        },
        async return(): Promise<IteratorResult<Buffer>> {
          stop();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
