/**
 * The transfer syntax facts the parser acts on. Every transfer syntax not listed as implicit or big endian
 * encodes its data set in Explicit VR Little Endian (PS3.5 §10 and Annex A), so an unknown UID is read that
 * way rather than rejected.
 * @see PS3.5 §10, Annex A
 * @see PS3.6 Table A-1
 */

/** Transfer syntax UIDs with special data set encodings. @see PS3.6 Table A-1 */
export const TRANSFER_SYNTAX = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JPIPReferencedDeflate: '1.2.840.10008.1.2.4.95',
} as const;

/** How a data set's elements are laid out. */
export interface DatasetEncoding {
  explicitVr: boolean;
  littleEndian: boolean;
  /** the data set after the File Meta group is a raw deflate stream (RFC 1951) @see PS3.5 §A.5 */
  deflated: boolean;
}

/** Data set encoding of a transfer syntax. @see PS3.5 Annex A */
export function datasetEncoding(transferSyntaxUid: string): DatasetEncoding {
  switch (transferSyntaxUid) {
    case TRANSFER_SYNTAX.ImplicitVRLittleEndian:
      return { explicitVr: false, littleEndian: true, deflated: false };
    case TRANSFER_SYNTAX.ExplicitVRBigEndian:
      return { explicitVr: true, littleEndian: false, deflated: false };
    case TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian:
    case TRANSFER_SYNTAX.JPIPReferencedDeflate:
      return { explicitVr: true, littleEndian: true, deflated: true };
    default:
      return { explicitVr: true, littleEndian: true, deflated: false };
  }
}

/**
 * The marker every frame's codestream starts with, for transfer syntaxes where it identifies frame
 * boundaries among fragments: SOI (FFD8) for JPEG and JPEG-LS (ISO 10918-1 / 14495-1), SOC (FF4F) for
 * JPEG 2000 and HTJ2K codestreams (ISO 15444-1 / -15). `undefined` for others (RLE, MPEG, JPEG XL …).
 * @see PS3.5 §8.2
 */
export function frameStartMarker(transferSyntaxUid: string): number | undefined {
  const m = /^1\.2\.840\.10008\.1\.2\.4\.(\d+)$/.exec(transferSyntaxUid);
  if (!m) return undefined;
  const n = Number(m[1]);
  if ((n >= 50 && n <= 66) || n === 70 || n === 80 || n === 81) return 0xffd8;
  if ((n >= 90 && n <= 93) || (n >= 201 && n <= 203)) return 0xff4f;
  return undefined;
}
