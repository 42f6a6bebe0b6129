/**
 * Small helpers over the DICOM JSON model (PS3.18 Annex F) for the answers we compose.
 */

export type DicomJson = Record<string, DicomJsonElement>;
export interface DicomJsonElement {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}

/** An element; an empty or absent value list is written without `Value` (zero-length, PS3.18 §F.2.5). */
export function el(vr: string, values?: readonly unknown[]): DicomJsonElement {
  return values && values.length > 0 ? { vr, Value: [...values] } : { vr };
}

/** True when any string in the value contains a character outside US-ASCII. */
export function hasNonAscii(value: unknown): boolean {
  if (typeof value === 'string') {
    for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return true;
    return false;
  }
  if (Array.isArray(value)) return value.some(hasNonAscii);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasNonAscii);
  return false;
}

/**
 * All JSON we send is UTF-8. When a data set holds non-ASCII text, (0008,0005) says ISO_IR 192 so a client
 * that turns the JSON back into Part 10 encodes it correctly; the original value (e.g. ISO 2022 IR 87) no
 * longer describes the text. @see PS3.18 §F.2, PS3.5 §6.1.2.5
 */
export function declareUtf8(ds: DicomJson): DicomJson {
  if (hasNonAscii(ds)) ds['00080005'] = { vr: 'CS', Value: ['ISO_IR 192'] };
  return ds;
}

/** The data set with its keys in ascending tag order (PS3.18 §F.2.1 asks for it in nested items too). */
export function sortByTag(ds: DicomJson): DicomJson {
  const out: DicomJson = {};
  for (const k of Object.keys(ds).sort()) out[k] = ds[k]!;
  return out;
}

const ABSOLUTE_URI = /^[a-z][a-z0-9+.-]*:/i;

/**
 * Deep copy of `json` with every relative BulkDataURI (a tag path such as `7FE00010` or
 * `00540016/0/00181072`, as the parser writes them) turned into `${instanceUrl}/bulkdata/${path}`.
 * @see PS3.18 §8.7.3.3 (BulkDataURI), §10.4.1.1.5
 */
export function absolutizeBulkDataUris<T>(json: T, instanceUrl: string): T {
  if (Array.isArray(json)) return json.map((v: unknown) => absolutizeBulkDataUris(v, instanceUrl)) as T;
  if (json === null || typeof json !== 'object') return json;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    out[k] = k === 'BulkDataURI' && typeof v === 'string' && !ABSOLUTE_URI.test(v) ? `${instanceUrl}/bulkdata/${v}` : absolutizeBulkDataUris(v, instanceUrl);
  }
  return out as T;
}
