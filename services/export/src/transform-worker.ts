/**
 * The thread that makes destination copies (transform.ts): transcoding runs synchronous WASM codecs for
 * tens to hundreds of milliseconds per instance, which on the main thread would stall every association
 * and request of the process (standalone runs them all in one).
 */
import { parentPort } from 'node:worker_threads';
import { transformInstance, type TransformOptions } from '@portico/imaging';

interface Request {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly opts: TransformOptions;
}

parentPort!.on('message', (m: Request) => {
  transformInstance(m.bytes, m.opts).then(
    (out) => {
      // Copied to the main thread (a pooled or WASM-backed buffer cannot be transferred; one copy of one
      // instance is cheap next to the encode).
      parentPort!.postMessage({ id: m.id, ok: true, bytes: out.bytes, transferSyntaxUid: out.transferSyntaxUid });
    },
    (err: unknown) => parentPort!.postMessage({ id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
