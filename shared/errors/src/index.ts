/**
 * One internal error, projected at each edge.
 *
 * Every failure that can reach a client is a {@link PorticoError} carrying a code from {@link ERROR_CODES}.
 * Each code maps once to its DIMSE status (PS3.7 Annex C, PS3.4 Table B.2-1 for C-STORE), its STOW-RS
 * FailureReason (PS3.18 Table 10.5.3-1 / PS3.4 B.2.3) and its HTTP status (PS3.18 §8.5), so the DIMSE SCP,
 * the DICOMweb routes and the worker never invent their own mapping.
 */

/** The projection of one error code onto the three edges. */
export interface ErrorProjection {
  /** DIMSE status for C-STORE responses. @see PS3.4 Table B.2-1, PS3.7 Annex C */
  readonly dimseStatus: number;
  /** (0008,1197) FailureReason in a STOW-RS FailedSOPSequence item. @see PS3.18 §10.5.3, PS3.4 Table B.2-1 */
  readonly failureReason: number;
  /** HTTP status when the error ends a whole request. @see PS3.18 §8.5 */
  readonly httpStatus: number;
  /** Whether retrying the same work later may succeed (workers turn non-retryable errors into UnrecoverableError). */
  readonly retryable: boolean;
  readonly title: string;
}

/**
 * The error table. Status values:
 * - 0xA700 Refused: Out of Resources (PS3.4 Table B.2-1) — store, database or queue unavailable.
 * - 0xA900 Error: Data Set does not match SOP Class (PS3.4 Table B.2-1).
 * - 0xC000 Error: Cannot understand (PS3.4 Table B.2-1) — unparseable data set.
 * - 0x0122 Refused: SOP Class not supported (PS3.7 C.5.6 / PS3.4 B.2.3 FailureReason 0x0122).
 * - 0x0110 Processing failure (PS3.7 C.4.2, FailureReason 0x0110, used by STOW-RS for generic failures).
 * - 0xA770 is not a standard status; never use it.
 */
export const ERROR_CODES = {
  /** A backend (object store, database, queue) is down or full: the sender may retry later. */
  OUT_OF_RESOURCES: { dimseStatus: 0xa700, failureReason: 0xa700, httpStatus: 503, retryable: true, title: 'Out of resources' },
  /** The bytes are not a parseable DICOM data set. */
  CANNOT_UNDERSTAND: { dimseStatus: 0xc000, failureReason: 0xc000, httpStatus: 400, retryable: false, title: 'Cannot understand' },
  /** The data set contradicts the request (e.g. SOP Instance UID differs from the command, or study UID from the STOW URL). */
  DATASET_MISMATCH: { dimseStatus: 0xa900, failureReason: 0xa900, httpStatus: 409, retryable: false, title: 'Data set does not match SOP class or request' },
  /** A required attribute (SOP Class UID, SOP Instance UID, Study/Series Instance UID) is missing. */
  MISSING_ATTRIBUTE: { dimseStatus: 0xc000, failureReason: 0xc000, httpStatus: 400, retryable: false, title: 'Missing required attribute' },
  /** The SOP class is not one we store (e.g. a DICOMDIR, which is a media directory, not an instance). */
  SOP_CLASS_NOT_SUPPORTED: {
    dimseStatus: 0x0122,
    failureReason: 0x0122,
    httpStatus: 409,
    retryable: false,
    title: 'SOP class not supported',
  },
  /** Generic processing failure. */
  PROCESSING_FAILURE: { dimseStatus: 0x0110, failureReason: 0x0110, httpStatus: 500, retryable: true, title: 'Processing failure' },
  /** Request malformed at the protocol level (bad query parameter, bad content type...). */
  BAD_REQUEST: { dimseStatus: 0xc000, failureReason: 0xc000, httpStatus: 400, retryable: false, title: 'Bad request' },
  /** Requested resource absent. */
  NOT_FOUND: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 404, retryable: false, title: 'Not found' },
  /** Credentials missing or wrong (admin API). */
  UNAUTHORIZED: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 401, retryable: false, title: 'Unauthorized' },
  /** The request contradicts the current state (e.g. an admin change to a node defined in the nodes file). */
  CONFLICT: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 409, retryable: false, title: 'Conflict' },
  /** The method is switched off for this resource (e.g. DELETE with PORTICO_HTTP_DELETE_ENABLED=false). */
  METHOD_NOT_ALLOWED: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 405, retryable: false, title: 'Method not allowed' },
  /** The client asked for a representation we cannot produce. */
  NOT_ACCEPTABLE: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 406, retryable: false, title: 'Not acceptable' },
  /** The request media type is not supported. */
  UNSUPPORTED_MEDIA_TYPE: { dimseStatus: 0xc000, failureReason: 0x0110, httpStatus: 415, retryable: false, title: 'Unsupported media type' },
  /** Request body larger than the configured limit. */
  PAYLOAD_TOO_LARGE: { dimseStatus: 0xa700, failureReason: 0xa700, httpStatus: 413, retryable: false, title: 'Payload too large' },
} as const satisfies Record<string, ErrorProjection>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The one internal error type. `detail` must never contain patient attributes (it reaches logs). */
export class PorticoError extends Error {
  readonly code: ErrorCode;
  readonly projection: ErrorProjection;

  constructor(code: ErrorCode, detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.name = 'PorticoError';
    this.code = code;
    this.projection = ERROR_CODES[code];
  }
}

/** Narrowing helper. */
export function isPorticoError(err: unknown): err is PorticoError {
  return err instanceof PorticoError;
}

/** Any error → PorticoError; unknown errors become `fallback` (default OUT_OF_RESOURCES, the safe answer for a sender). */
export function toPorticoError(err: unknown, fallback: ErrorCode = 'OUT_OF_RESOURCES'): PorticoError {
  if (err instanceof PorticoError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PorticoError(fallback, message, { cause: err });
}
