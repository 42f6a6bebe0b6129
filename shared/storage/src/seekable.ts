/**
 * An object as a seekable byte source: iteration reads it from the current position with ranged gets,
 * and `seek` moves the position, so a reader that skips (the instance parser skipping pixel data) never
 * fetches the skipped bytes — from S3 as much as from a folder.
 */
import type { ObjectStore } from './index.ts';

export interface SeekableObject extends AsyncIterable<Buffer> {
  /** Continue at this absolute offset; false when it lies beyond the end of the object. */
  seek(position: number): Promise<boolean>;
  /** Bytes actually fetched so far (for tests and metrics). */
  readonly bytesRead: number;
}

export function seekableObject(store: ObjectStore, key: string, size: number): SeekableObject {
  let position = 0;
  let bytesRead = 0;
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
      return target <= size;
    },
    [Symbol.asyncIterator](): AsyncIterator<Buffer> {
      return {
        async next(): Promise<IteratorResult<Buffer>> {
          if (!chunks) {
            if (position >= size) return { done: true, value: undefined };
            stream = await store.get(key, { start: position, end: size - 1 });
            chunks = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
          }
          const r = await chunks.next();
          if (r.done) {
            stop();
            position = size;
            return { done: true, value: undefined };
          }
          const buf = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
          position += buf.length;
          bytesRead += buf.length;
          return { done: false, value: buf };
        },
        async return(): Promise<IteratorResult<Buffer>> {
          stop();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
