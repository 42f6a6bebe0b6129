/**
 * A STOW-RS client: sends Part-10 instances to another DICOMweb server in one
 * `multipart/related; type="application/dicom"` POST and reports, per SOP Instance UID, what the server
 * acknowledged. Used by the export service for DICOMweb destinations.
 *
 * The request body is produced part by part while it is sent (Node's fetch with a streaming body,
 * `duplex: 'half'`): a batch is never concatenated into one Buffer, and an item given as a function is
 * opened only when its part is reached. The answer is read as PS3.18 defines it: ReferencedSOPSequence
 * (stored, possibly with a WarningReason), FailedSOPSequence (with a FailureReason), and 200 / 202 / 409
 * statuses; an instance the response names in neither sequence counts as failed ("not acknowledged"), so
 * the caller sends it again rather than assume it arrived. Any other HTTP status, a network error or a
 * timeout rejects with an Error that says the status and the server's `detail` (problem+json) or the start
 * of its body; nothing from the instances is ever put into a message.
 * @see PS3.18 §10.5 (Store Transaction), Table 10.5.3-1 (status codes), §10.5.3.1 (response)
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';

export interface StowDestination {
  /** the STOW-RS endpoint, e.g. http://host/dicom-web/studies */
  readonly url: string;
  /** extra request headers, e.g. Authorization */
  readonly headers?: Readonly<Record<string, string>>;
  /** the whole request, from connecting to the end of the response */
  readonly timeoutMs: number;
}

export interface StowItem {
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  /** Part-10 bytes, or a function that opens them when the part is sent */
  readonly body: Buffer | (() => Promise<NodeJS.ReadableStream | AsyncIterable<Uint8Array>>);
  /** byte length, sent as the part's Content-Length when known */
  readonly size?: number;
}

export interface StowInstanceOutcome {
  readonly ok: boolean;
  /** FailureReason (0008,1197) or WarningReason (0008,1196) as hex (`0xA700`), or why it counts as failed */
  readonly reason?: string;
}

export interface StowResult {
  readonly httpStatus: number;
  /** one entry per item, keyed by SOP Instance UID */
  readonly perInstance: ReadonlyMap<string, StowInstanceOutcome>;
  /** the response's Warning headers (PS3.18 §8.10.3), if any */
  readonly warnings?: readonly string[];
}

const TAG = {
  FailedSOPSequence: '00081198',
  ReferencedSOPSequence: '00081199',
  ReferencedSOPInstanceUID: '00081155',
  FailureReason: '00081197',
  WarningReason: '00081196',
} as const;

type JsonDataset = Record<string, { Value?: unknown[] } | undefined>;

/** The endpoint without credentials, query or fragment: what error messages may show. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

function hex(code: unknown): string {
  return typeof code === 'number' ? `0x${code.toString(16).toUpperCase().padStart(4, '0')}` : 'unknown';
}

async function* multipartBody(items: readonly StowItem[], boundary: string): AsyncGenerator<Uint8Array> {
  for (const [i, item] of items.entries()) {
    const size = item.size ?? (Buffer.isBuffer(item.body) ? item.body.length : undefined);
    const length = size === undefined ? '' : `Content-Length: ${size}\r\n`;
    // RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter.
    yield Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: application/dicom\r\n${length}\r\n`, 'latin1');
    if (Buffer.isBuffer(item.body)) {
      yield item.body;
      continue;
    }
    let source: NodeJS.ReadableStream | AsyncIterable<Uint8Array>;
    try {
      source = await item.body();
    } catch (err) {
      throw new Error(`opening the body of part ${i + 1} failed: ${(err as Error).message}`, { cause: err });
    }
    for await (const chunk of source as AsyncIterable<Uint8Array | string>) yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
  }
  yield Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
}

/** The server's explanation of an error response: problem+json `detail`/`title`, or the start of the body. */
function describeBody(contentType: string, body: string): string {
  if (/json/i.test(contentType)) {
    try {
      const p = JSON.parse(body) as { detail?: unknown; title?: unknown };
      if (typeof p.detail === 'string' && p.detail) return p.detail.slice(0, 300);
      if (typeof p.title === 'string' && p.title) return p.title.slice(0, 300);
    } catch {
      // not JSON after all: fall through to the excerpt
    }
  }
  const excerpt = body.replace(/\s+/g, ' ').trim().slice(0, 200);
  return excerpt || 'no response body';
}

/**
 * POSTs `items` to `dest` as one STOW-RS request.
 * @returns the HTTP status (200, 202 or 409) and an outcome for every item
 * @throws Error for any other status, a network failure or the timeout (the message names the endpoint
 *   without credentials, the status and the server's explanation)
 */
export async function stowInstances(dest: StowDestination, items: readonly StowItem[]): Promise<StowResult> {
  const where = safeUrl(dest.url);
  if (items.length === 0) return { httpStatus: 200, perInstance: new Map() };
  const boundary = `portico-${randomUUID()}`;
  const signal = AbortSignal.timeout(dest.timeoutMs);
  const { url, authorization } = splitCredentials(dest.url);
  const hasAuthorization = Object.keys(dest.headers ?? {}).some((k) => k.toLowerCase() === 'authorization');
  // Error texts from fetch quote the URL: never let its query (tokens) or credentials through.
  const scrub = (text: string): string => text.split(dest.url).join(where).split(url).join(where);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: {
        ...(authorization && !hasAuthorization ? { authorization } : {}),
        ...dest.headers,
        'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        accept: 'application/dicom+json',
      },
      body: Readable.toWeb(Readable.from(multipartBody(items, boundary), { objectMode: false })) as ReadableStream<Uint8Array>,
      duplex: 'half',
      // a redirect cannot replay a streamed body
      redirect: 'manual',
      signal,
    } as RequestInit & { duplex: 'half' });
  } catch (err) {
    throw new Error(`STOW-RS to ${where} failed: ${scrub(networkReason(err, dest.timeoutMs))}`, { cause: err });
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw new Error(`STOW-RS to ${where}: HTTP ${res.status}, reading the response failed: ${scrub(networkReason(err, dest.timeoutMs))}`, { cause: err });
  }
  const contentType = res.headers.get('content-type') ?? '';
  if (res.status !== 200 && res.status !== 202 && res.status !== 409) {
    throw new Error(`STOW-RS to ${where} answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}: ${describeBody(contentType, text)}`);
  }
  const warnings = res.headers.get('warning') ? [res.headers.get('warning')!] : undefined;
  return { httpStatus: res.status, perInstance: outcomes(items, text), ...(warnings ? { warnings } : {}) };
}

/** fetch refuses URLs with user:password: they become a Basic Authorization header. @see RFC 7617 */
function splitCredentials(raw: string): { url: string; authorization?: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { url: raw };
  }
  if (!u.username && !u.password) return { url: raw };
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { url: u.toString(), authorization };
}

function networkReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no complete answer within ${timeoutMs} ms`;
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message ?? 'error'} (${cause})` : (e.message ?? String(err));
}

/** Maps the PS3.18 response onto the items. @see PS3.18 §10.5.3.1 */
function outcomes(items: readonly StowItem[], text: string): Map<string, StowInstanceOutcome> {
  let ds: JsonDataset | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    // Some servers answer with the data set wrapped in an array.
    ds = (Array.isArray(parsed) ? parsed[0] : parsed) as JsonDataset | undefined;
  } catch {
    ds = undefined;
  }
  const seen = new Map<string, StowInstanceOutcome>();
  const uidOf = (item: unknown): string | undefined => {
    const v = (item as JsonDataset)[TAG.ReferencedSOPInstanceUID]?.Value?.[0];
    return typeof v === 'string' ? v : undefined;
  };
  for (const item of ds?.[TAG.ReferencedSOPSequence]?.Value ?? []) {
    const uid = uidOf(item);
    const warning = (item as JsonDataset)[TAG.WarningReason]?.Value?.[0];
    if (uid) seen.set(uid, { ok: true, ...(warning !== undefined ? { reason: `warning ${hex(warning)}` } : {}) });
  }
  for (const item of ds?.[TAG.FailedSOPSequence]?.Value ?? []) {
    const uid = uidOf(item);
    if (uid) seen.set(uid, { ok: false, reason: hex((item as JsonDataset)[TAG.FailureReason]?.Value?.[0]) });
  }
  const missing = ds ? 'not acknowledged' : 'not acknowledged (the response is not a DICOM JSON data set)';
  return new Map(items.map((i) => [i.sopInstanceUid, seen.get(i.sopInstanceUid) ?? { ok: false, reason: missing }]));
}
