/**
 * Media types: parsing Content-Type and Accept (RFC 9110 §8.3, §12.5.1) and the DICOMweb negotiation
 * rules we apply (PS3.18 §8.7). Pure functions, unit-tested; the routes only ask "what do I answer with?".
 *
 * Parameter names are case-insensitive and lower-cased here; parameter values keep their case except
 * `type` (a media type, case-insensitive). Quoted strings are unquoted and `\x` escapes resolved.
 */
import { PorticoError } from '@portico/errors';

export interface MediaType {
  /** `type/subtype`, lower case. */
  readonly type: string;
  /** Parameters by lower-cased name. */
  readonly params: Readonly<Record<string, string>>;
}

export interface AcceptEntry extends MediaType {
  /** Quality value 0..1 (RFC 9110 §12.4.2). */
  readonly q: number;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Splits `s` on `sep` outside double-quoted strings (honouring `\` escapes inside them).
 */
function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\' && i + 1 < s.length) cur += s[++i]!;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      cur += c;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (quoted) throw new SyntaxError('unterminated quoted string');
  out.push(cur);
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\(.)/g, '$1');
  return v;
}

/**
 * Parses one media type with parameters (`multipart/related; type="application/dicom"; boundary=x`).
 * Returns null when the value is not a syntactically valid media type.
 */
export function parseMediaType(value: string | undefined): MediaType | null {
  if (value === undefined) return null;
  let pieces: string[];
  try {
    pieces = splitOutsideQuotes(value, ';');
  } catch {
    return null;
  }
  const type = pieces[0]!.trim().toLowerCase();
  const slash = type.indexOf('/');
  if (slash <= 0 || !TOKEN.test(type.slice(0, slash)) || !TOKEN.test(type.slice(slash + 1))) return null;
  const params: Record<string, string> = {};
  for (const raw of pieces.slice(1)) {
    const p = raw.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    if (eq <= 0) return null;
    const name = p.slice(0, eq).trim().toLowerCase();
    if (!TOKEN.test(name)) return null;
    let v = unquote(p.slice(eq + 1).trim());
    if (name === 'type') v = v.toLowerCase();
    params[name] = v;
  }
  return { type, params };
}

/**
 * Parses an Accept header into entries sorted by preference: q descending, then more specific first
 * (RFC 9110 §12.5.1), then header order. Entries with q=0 are dropped. An absent or empty header is
 * `*\/*`. Unparseable entries are skipped; if nothing parseable remains, the result is empty (→ 406).
 */
export function parseAccept(header: string | string[] | undefined): AcceptEntry[] {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value === undefined || value.trim() === '') return [{ type: '*/*', params: {}, q: 1 }];
  let items: string[];
  try {
    items = splitOutsideQuotes(value, ',');
  } catch {
    return [];
  }
  const entries: Array<AcceptEntry & { order: number; specificity: number }> = [];
  items.forEach((item, order) => {
    if (item.trim() === '') return;
    const mt = parseMediaType(item);
    if (!mt) return;
    const { q: qRaw, ...params } = mt.params;
    const q = qRaw === undefined ? 1 : Number(qRaw);
    if (!Number.isFinite(q) || q <= 0 || q > 1) return;
    const specificity = mt.type === '*/*' ? 0 : mt.type.endsWith('/*') ? 1 : 2 + Object.keys(params).length;
    entries.push({ type: mt.type, params, q, order, specificity });
  });
  entries.sort((a, b) => b.q - a.q || b.specificity - a.specificity || a.order - b.order);
  return entries.map(({ type, params, q }) => ({ type, params, q }));
}

/** True when a media range (`*\/*`, `image/*`, `image/jpeg`) covers the concrete type. */
export function rangeCovers(range: string, type: string): boolean {
  if (range === '*/*') return true;
  if (range.endsWith('/*')) return type.startsWith(range.slice(0, -1));
  return range === type;
}

/** Aliases clients send for the PS3.18 Table 8.7.3-2 media types (dicomweb-client, older drafts). */
const MEDIA_TYPE_ALIASES: Readonly<Record<string, string>> = {
  'image/x-jls': 'image/jls',
  'image/x-dicom-rle': 'image/dicom-rle',
  'image/jhc': 'image/jphc',
  'image/x-jp2': 'image/jp2',
  'application/json': 'application/dicom+json',
};

export function canonicalType(type: string): string {
  return MEDIA_TYPE_ALIASES[type] ?? type;
}

// ---------------------------------------------------------------------------------------------------
// Request Content-Type (STOW-RS)

export interface MultipartRelated {
  readonly boundary: string;
  /** The `type` parameter (root part type), lower case, or undefined when absent. */
  readonly rootType: string | undefined;
}

/**
 * Validates a STOW-RS request Content-Type: `multipart/related; type="application/dicom"; boundary=…`, or
 * `type="application/dicom+json"` (metadata + bulk data, PS3.18 §10.5.1.1; the XML form is refused).
 * @throws PorticoError UNSUPPORTED_MEDIA_TYPE (415) for another media type or a `type` we do not store,
 *   BAD_REQUEST (400) for a multipart/related without a usable boundary.
 * @see PS3.18 §10.5.1 (Store Instances request), RFC 2387 (multipart/related), RFC 2046 §5.1.1 (boundary)
 */
export function parseStowContentType(header: string | undefined): MultipartRelated {
  if (header === undefined || header.trim() === '') {
    throw new PorticoError('UNSUPPORTED_MEDIA_TYPE', 'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; boundary=…');
  }
  const mt = parseMediaType(header);
  if (!mt) throw new PorticoError('BAD_REQUEST', 'malformed Content-Type header');
  if (mt.type !== 'multipart/related') {
    throw new PorticoError('UNSUPPORTED_MEDIA_TYPE', `STOW-RS accepts multipart/related; type="application/dicom", not ${mt.type}`);
  }
  const rootType = mt.params['type'];
  if (rootType !== undefined && rootType !== 'application/dicom' && rootType !== 'application/dicom+json') {
    const detail =
      rootType === 'application/dicom+xml'
        ? 'STOW-RS with application/dicom+xml metadata is not implemented; send type="application/dicom+json" metadata with bulk data, or type="application/dicom"'
        : `multipart/related type="${rootType}" is not a STOW-RS payload; send type="application/dicom" or type="application/dicom+json"`;
    throw new PorticoError('UNSUPPORTED_MEDIA_TYPE', detail);
  }
  const boundary = mt.params['boundary'];
  // RFC 2046 §5.1.1: 1..70 characters, not ending in a space.
  if (boundary === undefined || boundary.length === 0 || boundary.length > 70 || boundary.endsWith(' ')) {
    throw new PorticoError('BAD_REQUEST', 'multipart/related Content-Type without a valid boundary parameter');
  }
  return { boundary, rootType };
}

/** `Content-Type` value with a quoted boundary (for the multipart parser and our responses). */
export function multipartContentType(type: string, boundary: string): string {
  return `multipart/related; type="${type}"; boundary=${boundary}`;
}

// ---------------------------------------------------------------------------------------------------
// Negotiation

/** For JSON answers (QIDO-RS, metadata, STOW-RS response): true when application/dicom+json is acceptable. */
export function acceptsDicomJson(accept: readonly AcceptEntry[]): boolean {
  return accept.some((e) => rangeCovers(e.type, 'application/dicom+json') || canonicalType(e.type) === 'application/dicom+json');
}

/** Throws NOT_ACCEPTABLE unless application/dicom+json is acceptable. @see PS3.18 §8.7.3.2 */
export function requireDicomJson(accept: readonly AcceptEntry[]): void {
  if (!acceptsDicomJson(accept)) {
    throw new PorticoError('NOT_ACCEPTABLE', 'this resource is available as application/dicom+json only (application/dicom+xml is not implemented)');
  }
}

/**
 * The inner media range and transfer-syntax a multipart Accept entry asks for. `multipart/related;
 * type=X; transfer-syntax=Y` → {X, Y}; a bare single-part type `X` is read the same way (we always answer
 * multipart for instances and frames, which clients asking for X parse); `*\/*` and `multipart/*` → any.
 */
export function innerRange(e: AcceptEntry): { type: string; transferSyntax: string | undefined } | null {
  if (e.type === '*/*' || e.type === 'multipart/*') return { type: '*/*', transferSyntax: e.params['transfer-syntax'] };
  if (e.type === 'multipart/related') return { type: canonicalType(e.params['type'] ?? '*/*'), transferSyntax: e.params['transfer-syntax'] };
  if (e.type.startsWith('multipart/')) return null;
  return { type: canonicalType(e.type), transferSyntax: e.params['transfer-syntax'] };
}

/** How instances go out: the stored bytes, or decompressed to Explicit VR Little Endian. */
export type InstanceRetrieval = 'as-stored' | 'decompress';

/**
 * WADO-RS instance retrieval. The first acceptable entry (in preference order) that allows
 * application/dicom decides: no transfer-syntax parameter, `*`, or exactly the stored transfer syntax of
 * every instance → the stored bytes; `1.2.840.10008.1.2.1` → decompressed when `canDecompress` accepts
 * every stored transfer syntax. Otherwise 406.
 *
 * Deviation: PS3.18 §8.7.3.5.2 makes Explicit VR Little Endian the default when `transfer-syntax` is
 * absent; we treat absence as "as stored" (what viewers expect from an archive that does not transcode).
 * @see PS3.18 §10.4.1.1.2, Table 8.7.3-5
 */
export function negotiateInstances(
  accept: readonly AcceptEntry[],
  storedTransferSyntaxes: ReadonlySet<string>,
  canDecompress: (transferSyntaxUid: string) => boolean = () => false,
): InstanceRetrieval {
  for (const e of accept) {
    const inner = innerRange(e);
    if (!inner || !rangeCovers(inner.type, 'application/dicom')) continue;
    const ts = inner.transferSyntax;
    if (ts === undefined || ts === '*') return 'as-stored';
    if ([...storedTransferSyntaxes].every((s) => s === ts)) return 'as-stored';
    if (ts === EXPLICIT_VR_LITTLE_ENDIAN && [...storedTransferSyntaxes].every((s) => s === ts || canDecompress(s))) return 'decompress';
  }
  const asked = accept.map((e) =>
    [e.type, e.params['type'] ? `type=${e.params['type']}` : '', e.params['transfer-syntax'] ? `transfer-syntax=${e.params['transfer-syntax']}` : '']
      .filter(Boolean)
      .join('; '),
  );
  throw new PorticoError(
    'NOT_ACCEPTABLE',
    `instances are stored as ${[...storedTransferSyntaxes].join(', ')}; they are served as stored or as ${EXPLICIT_VR_LITTLE_ENDIAN} (where the pixel data can be decoded). Accept asked for: ${asked.join(', ') || '(nothing usable)'}`,
  );
}

/** PS3.18 Table 8.7.3-2 / 8.7.4-1: the single-frame media type of an encapsulated transfer syntax. */
const ENCAPSULATED_MEDIA_TYPES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2.5': 'image/dicom-rle',
  '1.2.840.10008.1.2.4.50': 'image/jpeg',
  '1.2.840.10008.1.2.4.51': 'image/jpeg',
  '1.2.840.10008.1.2.4.57': 'image/jpeg',
  '1.2.840.10008.1.2.4.70': 'image/jpeg',
  '1.2.840.10008.1.2.4.80': 'image/jls',
  '1.2.840.10008.1.2.4.81': 'image/jls',
  '1.2.840.10008.1.2.4.90': 'image/jp2',
  '1.2.840.10008.1.2.4.91': 'image/jp2',
  '1.2.840.10008.1.2.4.92': 'image/jpx',
  '1.2.840.10008.1.2.4.93': 'image/jpx',
  '1.2.840.10008.1.2.4.201': 'image/jphc',
  '1.2.840.10008.1.2.4.202': 'image/jphc',
  '1.2.840.10008.1.2.4.203': 'image/jphc',
};

/** PS3.18 Table 8.7.3-2: the transfer syntax a media type means when it has no transfer-syntax parameter. */
const DEFAULT_TS_OF_MEDIA_TYPE: Readonly<Record<string, string>> = {
  'image/dicom-rle': '1.2.840.10008.1.2.5',
  'image/jpeg': '1.2.840.10008.1.2.4.50',
  'image/jls': '1.2.840.10008.1.2.4.80',
  'image/jp2': '1.2.840.10008.1.2.4.90',
  'image/jpx': '1.2.840.10008.1.2.4.92',
  'image/jphc': '1.2.840.10008.1.2.4.201',
  'application/octet-stream': '1.2.840.10008.1.2.1',
};

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';
export const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';

export interface FramePayloadType {
  /** The `type` of the multipart and the media type of each part. */
  readonly type: string;
  /** Full part Content-Type (with transfer-syntax). */
  readonly partContentType: string;
  /** frames must be decoded to native little-endian samples (compressed, big endian or deflated storage) */
  readonly decode?: boolean;
}

/**
 * Media type of frames (or encapsulated pixel data) for a stored instance, chosen from Accept.
 *
 * - Native little-endian pixel data (stored Implicit or Explicit VR LE: frame bytes are identical) →
 *   `application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1`.
 * - Encapsulated pixel data → the compressed bytes as stored, as the Table 8.7.3-2 image type
 *   (`image/jpeg; transfer-syntax=…`) or as `application/octet-stream; transfer-syntax=<stored>` when the
 *   client asked for octet-stream with `transfer-syntax=*` or the stored UID. Octet-stream without a
 *   transfer-syntax means Explicit VR Little Endian (uncompressed): 406 for compressed data.
 * - Big endian and deflated data: 406 (we would have to byte-swap / inflate).
 * @see PS3.18 §8.7.3.3.2, Table 8.7.3-2, §10.4.1.1.3 (frames)
 */
export function negotiateFrames(
  accept: readonly AcceptEntry[],
  storedTs: string,
  encapsulated: boolean,
  canDecode: (transferSyntaxUid: string) => boolean = () => false,
): FramePayloadType {
  const decodable = canDecode(storedTs);
  const needsDecoding = encapsulated || storedTs === EXPLICIT_VR_BIG_ENDIAN || storedTs === DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
  if (!encapsulated && needsDecoding && !decodable) {
    throw new PorticoError('NOT_ACCEPTABLE', `frames of ${storedTs === EXPLICIT_VR_BIG_ENDIAN ? 'big endian' : 'deflated'} instances cannot be served here`);
  }
  const natural = encapsulated ? (ENCAPSULATED_MEDIA_TYPES[storedTs] ?? 'application/octet-stream') : 'application/octet-stream';
  const servedTs = encapsulated ? storedTs : EXPLICIT_VR_LITTLE_ENDIAN;
  for (const e of accept) {
    const inner = innerRange(e);
    if (!inner) continue;
    const ts = inner.transferSyntax;
    if (inner.type === 'application/octet-stream') {
      if (!encapsulated && (ts === undefined || ts === '*' || ts === EXPLICIT_VR_LITTLE_ENDIAN))
        return { ...octet(servedTs), ...(needsDecoding ? { decode: true } : {}) };
      if (encapsulated && (ts === '*' || ts === storedTs)) return octet(servedTs);
      // Octet-stream without a transfer syntax means Explicit VR Little Endian (Table 8.7.3-2): decompress.
      if (encapsulated && decodable && (ts === undefined || ts === EXPLICIT_VR_LITTLE_ENDIAN)) return { ...octet(EXPLICIT_VR_LITTLE_ENDIAN), decode: true };
      continue;
    }
    if (!rangeCovers(inner.type, natural)) continue;
    // A wildcard range (*/*, image/*) takes the natural type; a concrete one without transfer-syntax means
    // its Table 8.7.3-2 default transfer syntax.
    const concrete = !inner.type.includes('*');
    if (ts === undefined ? !concrete || DEFAULT_TS_OF_MEDIA_TYPE[natural] === servedTs : ts === '*' || ts === servedTs) {
      if (natural === 'application/octet-stream') return { ...octet(servedTs), ...(needsDecoding ? { decode: true } : {}) };
      return { type: natural, partContentType: `${natural}; transfer-syntax=${servedTs}` };
    }
  }
  throw new PorticoError(
    'NOT_ACCEPTABLE',
    `frames are stored as ${encapsulated ? `${natural} (transfer syntax ${storedTs})` : 'uncompressed pixel data'}. ` +
      (encapsulated
        ? `Accept ${natural}, application/octet-stream with transfer-syntax=* or =${storedTs}${decodable ? `, or application/octet-stream with transfer-syntax=${EXPLICIT_VR_LITTLE_ENDIAN} (decompressed)` : ''}.`
        : 'Accept application/octet-stream.'),
  );
}

function octet(ts: string): FramePayloadType {
  return { type: 'application/octet-stream', partContentType: `application/octet-stream; transfer-syntax=${ts}` };
}

/**
 * Bulk data (non-pixel): multipart/related; type=application/octet-stream by default, or a single-part
 * application/octet-stream body when the client prefers that. @see PS3.18 §10.4.1.1.5
 */
export function negotiateBulkData(accept: readonly AcceptEntry[]): 'multipart' | 'single' {
  for (const e of accept) {
    if (e.type === 'application/octet-stream') return 'single';
    const inner = innerRange(e);
    if (inner && (e.type.startsWith('multipart/') || e.type === '*/*') && rangeCovers(inner.type, 'application/octet-stream')) return 'multipart';
  }
  throw new PorticoError('NOT_ACCEPTABLE', 'bulk data is served as application/octet-stream (single part or multipart/related)');
}
