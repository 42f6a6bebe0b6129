/**
 * Presentation context negotiation (PS3.8 §9.3.2.2, PS3.7 Annex D.3.3.2).
 *
 * Portico stores the sender's bytes as received, so for storage it accepts every standard transfer
 * syntax it can index (it parses only the header; pixel data stays encoded). For each proposed context
 * the first transfer syntax *in the sender's order* that we support is chosen, so the sender keeps its
 * preference (normally the file's own encoding, which avoids a re-encode on its side).
 */
import { STORAGE_SOP_CLASSES } from '@portico/dicom';

export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1';
/** Modality Worklist Information Model FIND (PS3.4 Annex K). */
export const WORKLIST_SOP_CLASS = '1.2.840.10008.5.1.4.31';
/** Storage Commitment Push Model (PS3.4 Annex J). */
export const STORAGE_COMMITMENT_SOP_CLASS = '1.2.840.10008.1.20.1';

/** Query/Retrieve C-FIND, C-MOVE and C-GET: Patient Root and Study Root information models (PS3.4 Annex C.6). */
export const QUERY_SOP_CLASSES: ReadonlySet<string> = new Set([
  '1.2.840.10008.5.1.4.1.2.1.1', // Patient Root FIND
  '1.2.840.10008.5.1.4.1.2.2.1', // Study Root FIND
  '1.2.840.10008.5.1.4.1.2.1.2', // Patient Root MOVE
  '1.2.840.10008.5.1.4.1.2.2.2', // Study Root MOVE
  '1.2.840.10008.5.1.4.1.2.1.3', // Patient Root GET
  '1.2.840.10008.5.1.4.1.2.2.3', // Study Root GET
]);

/**
 * Transfer syntaxes accepted for storage (PS3.5 §10, PS3.6 Table A-1). The dictionary shipped in
 * ../shared/dicom-standard has no transfer syntax table, so this list is kept here.
 */
export const STORAGE_TRANSFER_SYNTAXES: ReadonlySet<string> = new Set([
  '1.2.840.10008.1.2', // Implicit VR Little Endian
  '1.2.840.10008.1.2.1', // Explicit VR Little Endian
  '1.2.840.10008.1.2.1.99', // Deflated Explicit VR Little Endian
  '1.2.840.10008.1.2.2', // Explicit VR Big Endian (retired)
  '1.2.840.10008.1.2.4.50', // JPEG Baseline
  '1.2.840.10008.1.2.4.51', // JPEG Extended
  '1.2.840.10008.1.2.4.57', // JPEG Lossless process 14
  '1.2.840.10008.1.2.4.70', // JPEG Lossless SV1
  '1.2.840.10008.1.2.4.80', // JPEG-LS lossless
  '1.2.840.10008.1.2.4.81', // JPEG-LS near-lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.4.92', // JPEG 2000 Part 2 multi-component lossless
  '1.2.840.10008.1.2.4.93', // JPEG 2000 Part 2 multi-component
  '1.2.840.10008.1.2.4.100', // MPEG2 MP@ML
  '1.2.840.10008.1.2.4.101', // MPEG2 MP@HL
  '1.2.840.10008.1.2.4.102', // MPEG-4 AVC/H.264 HP@4.1
  '1.2.840.10008.1.2.4.103', // MPEG-4 AVC/H.264 BD-compatible HP@4.1
  '1.2.840.10008.1.2.4.104', // MPEG-4 AVC/H.264 HP@4.2 2D
  '1.2.840.10008.1.2.4.105', // MPEG-4 AVC/H.264 HP@4.2 3D
  '1.2.840.10008.1.2.4.106', // MPEG-4 AVC/H.264 Stereo HP@4.2
  '1.2.840.10008.1.2.4.107', // HEVC/H.265 Main
  '1.2.840.10008.1.2.4.108', // HEVC/H.265 Main 10
  '1.2.840.10008.1.2.4.201', // HTJ2K lossless
  '1.2.840.10008.1.2.4.202', // HTJ2K lossless RPCL
  '1.2.840.10008.1.2.4.203', // HTJ2K
  '1.2.840.10008.1.2.5', // RLE Lossless
]);

/** Storage root (PS3.4 Annex B): retired storage SOP classes still arrive from old modalities. */
const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';

export function isStorageSopClass(uid: string): boolean {
  return STORAGE_SOP_CLASSES.has(uid) || uid.startsWith(STORAGE_ROOT);
}

export type ContextDecision =
  { readonly accept: true; readonly transferSyntaxUid: string } | { readonly accept: false; readonly reason: 'abstract-syntax' | 'transfer-syntax' };

/** Decides one proposed presentation context. Pure: unit-tested. */
export function decideContext(abstractSyntaxUid: string, proposedTransferSyntaxes: readonly string[], opts: { worklist?: boolean } = {}): ContextDecision {
  if (abstractSyntaxUid === WORKLIST_SOP_CLASS && !opts.worklist) return { accept: false, reason: 'abstract-syntax' };
  if (abstractSyntaxUid === VERIFICATION_SOP_CLASS) {
    // C-ECHO carries no data set: any proposed uncompressed syntax will do (PS3.7 §9.1.5).
    const ts = proposedTransferSyntaxes.find((t) => t === '1.2.840.10008.1.2' || t === '1.2.840.10008.1.2.1');
    return ts ? { accept: true, transferSyntaxUid: ts } : { accept: false, reason: 'transfer-syntax' };
  }
  if (QUERY_SOP_CLASSES.has(abstractSyntaxUid) || abstractSyntaxUid === STORAGE_COMMITMENT_SOP_CLASS || abstractSyntaxUid === WORKLIST_SOP_CLASS) {
    // Identifiers are small: the two uncompressed little-endian syntaxes every SCU proposes.
    const ts = proposedTransferSyntaxes.find((t) => t === '1.2.840.10008.1.2.1' || t === '1.2.840.10008.1.2');
    return ts ? { accept: true, transferSyntaxUid: ts } : { accept: false, reason: 'transfer-syntax' };
  }
  if (!isStorageSopClass(abstractSyntaxUid)) return { accept: false, reason: 'abstract-syntax' };
  const ts = proposedTransferSyntaxes.find((t) => STORAGE_TRANSFER_SYNTAXES.has(t));
  return ts ? { accept: true, transferSyntaxUid: ts } : { accept: false, reason: 'transfer-syntax' };
}

/** The node service (nodes file `services`) a presentation context's abstract syntax belongs to. */
export function serviceOf(abstractSyntaxUid: string): 'echo' | 'store' | 'find' | 'move' | 'get' | 'commitment' | 'worklist' | undefined {
  if (abstractSyntaxUid === VERIFICATION_SOP_CLASS) return 'echo';
  if (abstractSyntaxUid === WORKLIST_SOP_CLASS) return 'worklist';
  if (abstractSyntaxUid === STORAGE_COMMITMENT_SOP_CLASS) return 'commitment';
  if (abstractSyntaxUid.endsWith('.1') && QUERY_SOP_CLASSES.has(abstractSyntaxUid)) return 'find';
  if (abstractSyntaxUid.endsWith('.2') && QUERY_SOP_CLASSES.has(abstractSyntaxUid)) return 'move';
  if (abstractSyntaxUid.endsWith('.3') && QUERY_SOP_CLASSES.has(abstractSyntaxUid)) return 'get';
  if (isStorageSopClass(abstractSyntaxUid)) return 'store';
  return undefined;
}
