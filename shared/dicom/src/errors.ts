/**
 * Why a DICOM byte stream could not be read.
 * - `NOT_DICOM`: neither a Part-10 preamble nor a plausible bare data set (e.g. a PNG).
 * - `TRUNCATED`: the stream ended inside an element, item, sequence or the File Meta group.
 * - `MALFORMED`: the encoding contradicts itself (item outside a sequence, lengths crossing their container …).
 * - `HEADER_TOO_LARGE`: the non-bulk part of the data set exceeds the configured memory budget.
 */
export type DicomParseErrorCode = 'NOT_DICOM' | 'TRUNCATED' | 'MALFORMED' | 'HEADER_TOO_LARGE';

/**
 * The only error the readers in this package reject with, so callers can map every parse failure to one
 * answer (C-STORE 0xC000 "Cannot understand", STOW-RS FailureReason 0xC000) without guessing.
 * @see PS3.4 §B.2.3 (C-STORE failure statuses)
 * @see PS3.18 §10.5.3 (STOW-RS failure reasons)
 */
export class DicomParseError extends Error {
  readonly code: DicomParseErrorCode;
  /** byte offset in the stored object (or in the inflated data set when deflated) where the problem was found */
  readonly offset: number | undefined;

  constructor(code: DicomParseErrorCode, message: string, offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
    this.name = 'DicomParseError';
    this.code = code;
    this.offset = offset;
  }
}
