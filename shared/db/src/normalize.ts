/**
 * Normalised copy of a Person Name (or any text) for case- and accent-insensitive matching: Unicode
 * NFKD with combining marks removed, then upper case. The same function normalises stored values and
 * query values, so matching is symmetric. `^` and `=` component separators are kept.
 */
export function normalizePersonName(value: string): string {
  return value.normalize('NFKD').replace(/\p{M}/gu, '').toUpperCase();
}
