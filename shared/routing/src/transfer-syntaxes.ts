/**
 * The transfer syntaxes a route may ask an instance to be transcoded to, by the friendly names routes.yml
 * accepts. UIDs of this table are accepted as well; anything else is rejected at load, so a typo never
 * reaches the export.
 * @see PS3.6 Table A-1
 * @see PS3.5 §10 and Annex A
 */
export const TRANSCODE_TARGETS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    'implicit-little-endian': '1.2.840.10008.1.2',
    'explicit-little-endian': '1.2.840.10008.1.2.1',
    'jpeg-baseline': '1.2.840.10008.1.2.4.50',
    'jpeg-lossless': '1.2.840.10008.1.2.4.70',
    'jpeg-ls-lossless': '1.2.840.10008.1.2.4.80',
    'jpeg-ls-near-lossless': '1.2.840.10008.1.2.4.81',
    'jpeg2000-lossless': '1.2.840.10008.1.2.4.90',
    jpeg2000: '1.2.840.10008.1.2.4.91',
    'htj2k-lossless': '1.2.840.10008.1.2.4.201',
    htj2k: '1.2.840.10008.1.2.4.203',
    rle: '1.2.840.10008.1.2.5',
  }),
);

const KNOWN_UIDS: ReadonlySet<string> = new Set(TRANSCODE_TARGETS.values());

/** Transfer syntax UID of a friendly name or of a UID of the table; `undefined` for anything else. */
export function transcodeTarget(nameOrUid: string): string | undefined {
  return TRANSCODE_TARGETS.get(nameOrUid) ?? (KNOWN_UIDS.has(nameOrUid) ? nameOrUid : undefined);
}
