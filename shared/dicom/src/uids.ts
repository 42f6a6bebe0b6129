import { createHash } from 'node:crypto';

/**
 * Deterministic UID for a missing Study or Series Instance UID, derived from the SOP Instance UID:
 * `2.25.<first 128 bits of SHA-256>` (PS3.5 §B.2, UUID-derived form). Re-sending the same instance
 * always yields the same UID, so it lands in the same place.
 */
export function derivedUid(sopInstanceUid: string, level: 'study' | 'series'): string {
  const digest = createHash('sha256').update(`${level}/${sopInstanceUid}`).digest();
  return `2.25.${BigInt(`0x${digest.subarray(0, 16).toString('hex')}`).toString()}`;
}

/**
 * The Study and Series Instance UIDs an instance is indexed under. Real files sometimes lack these Type 1
 * attributes; a gateway keeps such instances rather than refusing them, under derived UIDs.
 */
export function hierarchyUids(
  sopInstanceUid: string,
  studyInstanceUid: string,
  seriesInstanceUid: string,
): { study: string; series: string; derived: boolean } {
  return {
    study: studyInstanceUid || derivedUid(sopInstanceUid, 'study'),
    series: seriesInstanceUid || derivedUid(sopInstanceUid, 'series'),
    derived: !studyInstanceUid || !seriesInstanceUid,
  };
}

/** A syntactically valid UID (PS3.5 §9.1): digits and dots, no empty component, at most 64 characters. */
export function isValidUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= 64 && /^[0-9]+(\.[0-9]+)*$/.test(uid);
}
