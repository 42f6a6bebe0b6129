/**
 * multipart/related in both directions, streaming.
 *
 * Reading (STOW-RS): `@fastify/multipart` (busboy) only speaks multipart/form-data, so the request stream
 * is fed chunk by chunk to multipasta's core parser and each part's bytes are pushed into a PassThrough
 * handed to the caller. Back-pressure is end to end: after each request chunk we wait until the current
 * part's stream has room again, and only then read the next chunk from the socket. Nothing holds more
 * than a chunk plus the part stream's high-water mark.
 *
 * Writing (WADO-RS): {@link partHead} / {@link closeDelimiter} frame the parts; the routes stream the
 * bodies in between from the object store.
 * @see RFC 2046 §5.1 (multipart syntax), RFC 2387 (multipart/related), PS3.18 §8.6.1.2
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import * as MP from 'multipasta';
import { PorticoError } from '@portico/errors';

export interface IncomingPart {
  /** 1-based position in the request. */
  readonly index: number;
  /** Header fields by lower-cased name. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** The part's bytes; must be consumed (or destroyed) by the receiver, else the request stalls. */
  readonly body: Readable;
}

export interface ReadMultipartOptions {
  readonly boundary: string;
  /** Total request bytes allowed; more → PAYLOAD_TOO_LARGE while streaming. */
  readonly maxBytes: number;
  /** Per-part stream buffer (default 1 MiB). */
  readonly highWaterMark?: number;
}

export interface ReadMultipartResult {
  readonly parts: number;
  readonly bytes: number;
  /** True when the close delimiter was seen. */
  readonly complete: boolean;
}

/** Resolves once `s` can take more data (or will never: destroyed, errored, closed). */
export function waitWritable(s: Writable): Promise<void> {
  if (!s.writableNeedDrain || s.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      s.off('error', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
    s.on('error', done);
  });
}

function describe(e: MP.MultipartError): string {
  switch (e._tag) {
    case 'InvalidBoundary':
      return 'invalid multipart boundary';
    case 'BadHeaders':
      return `malformed part headers (${e.error.reason})`;
    case 'InvalidDisposition':
      return 'invalid Content-Disposition in a part';
    case 'ReachedLimit':
      return `multipart limit reached (${e.limit})`;
    case 'EndNotReached':
      return 'the multipart body ended before its close delimiter';
  }
}

/**
 * Streams the parts of a multipart body to `onPart`, one at a time, in order. Rejects with
 * PAYLOAD_TOO_LARGE past `maxBytes`, BAD_REQUEST for malformed multipart syntax, or the source's error
 * (client gone); in each case the part being received is destroyed with that error first. A body that
 * ends without its close delimiter resolves with `complete: false` after destroying the unfinished part.
 */
export async function readMultipart(
  source: AsyncIterable<Uint8Array>,
  opts: ReadMultipartOptions,
  onPart: (part: IncomingPart) => void,
): Promise<ReadMultipartResult> {
  let current: PassThrough | undefined;
  let failure: MP.MultipartError | undefined;
  let complete = false;
  let parts = 0;
  let bytes = 0;
  const hwm = opts.highWaterMark ?? 256 * 1024;

  const parser = MP.make({
    // Our own parse of the request Content-Type already validated the boundary; hand it over quoted.
    headers: { 'content-type': `multipart/related; boundary="${opts.boundary}"` },
    // Every part is a stream: the default treats parts without a filename as small in-memory fields.
    isFile: () => true,
    onField: () => undefined,
    onFile: (info) => {
      const body = new PassThrough({ highWaterMark: hwm });
      // The receiver may stop reading and destroy its side; never let a late error become uncaught.
      body.on('error', () => undefined);
      current = body;
      parts += 1;
      // multipasta keeps the whitespace after "name:" when a chunk ends right after the colon.
      const headers = Object.fromEntries(Object.entries(info.headers).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => x.trim()) : v.trim()]));
      onPart({ index: parts, headers, body });
      return (chunk) => {
        if (chunk === null) {
          body.end();
          if (current === body) current = undefined;
        } else if (!body.destroyed) {
          body.write(chunk);
        }
      };
    },
    onError: (e) => {
      failure ??= e;
    },
    onDone: () => {
      complete = true;
    },
  });

  // multipasta 0.2.8 recognises the close delimiter only when both of its trailing dashes arrive in one
  // write; split between them ("--b-" | "-"), it reports bad part headers. We hold back such a lone
  // trailing dash and send it with the next chunk.
  const closeStart = Buffer.from(`--${opts.boundary}-`, 'latin1');
  let recent = Buffer.alloc(0);
  let carry: Buffer | undefined;
  try {
    for await (const chunk of source) {
      if (complete) continue; // epilogue: read and ignore (RFC 2046 §5.1.1)
      bytes += chunk.length;
      if (bytes > opts.maxBytes) throw new PorticoError('PAYLOAD_TOO_LARGE', `request body exceeds the STOW-RS limit of ${opts.maxBytes} bytes`);
      let data = carry ? Buffer.concat([carry, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      carry = undefined;
      recent = Buffer.concat([recent, data.subarray(Math.max(0, data.length - closeStart.length))]).subarray(-closeStart.length);
      if (recent.equals(closeStart)) {
        carry = data.subarray(data.length - 1);
        data = data.subarray(0, data.length - 1);
      }
      if (data.length > 0) parser.write(data);
      if (failure) throw new PorticoError('BAD_REQUEST', describe(failure));
      if (current) await waitWritable(current);
    }
    if (carry && !complete) parser.write(carry);
    parser.end();
    if (failure && (failure as MP.MultipartError)._tag !== 'EndNotReached') throw new PorticoError('BAD_REQUEST', describe(failure));
  } catch (err) {
    current?.destroy(err as Error);
    throw err;
  }
  if (!complete && current) current.destroy(new PorticoError('CANNOT_UNDERSTAND', 'the multipart body ended inside this part (no close delimiter)'));
  return { parts, bytes, complete };
}

// ---------------------------------------------------------------------------------------------------
// Writing

/** A fresh boundary: 32 hex digits, safe unquoted (RFC 2046 bchars). */
export function newBoundary(): string {
  return randomBytes(16).toString('hex');
}

/**
 * The delimiter and header block that open part `index` (0-based): the CRLF before the delimiter belongs
 * to the delimiter (RFC 2046 §5.1.1), so every part but the first starts with one.
 */
export function partHead(boundary: string, index: number, headers: Readonly<Record<string, string | number>>): Buffer {
  let s = `${index > 0 ? '\r\n' : ''}--${boundary}\r\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  return Buffer.from(`${s}\r\n`, 'latin1');
}

/** The close delimiter after `parts` parts (an empty multipart still has its delimiter line). */
export function closeDelimiter(boundary: string, parts: number): Buffer {
  return Buffer.from(`${parts > 0 ? '\r\n' : ''}--${boundary}--\r\n`, 'latin1');
}
