/**
 * pino JSON logs to stdout. Patient attributes never belong in a log line: call sites log UIDs, AE titles,
 * keys and counts only; the redact list below is a seatbelt for the day someone logs a dataset anyway.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/** Attribute names (DICOM keywords and our column names) that must never reach a log. */
export const REDACTED_KEYS = [
  'PatientName',
  'PatientID',
  'PatientBirthDate',
  'PatientSex',
  'PatientAddress',
  'OtherPatientNames',
  'OtherPatientIDs',
  'ReferringPhysicianName',
  'AccessionNumber',
  'patient_name',
  'patient_id',
  'patient_birth_date',
  'dataset',
  'json',
  '00100010',
  '00100020',
  '00100030',
] as const;

export interface CreateLoggerOptions {
  readonly service: string;
  readonly level?: string;
  /** Write somewhere other than stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
}

/** A logger for one service (role); child loggers add `assocId`, `callingAet`, `queue`, `jobId`… */
export function createLogger(opts: CreateLoggerOptions): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: opts.service },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]), censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  };
  return opts.destination ? pino(options, opts.destination as pino.DestinationStream) : pino(options);
}

/**
 * Runs every shutdown step even when one fails, in the order given (callers list them in reverse order
 * of start), each bounded by the grace period; logs what failed.
 */
export async function runShutdown(log: Logger, graceMs: number, steps: ReadonlyArray<readonly [string, () => Promise<unknown>]>): Promise<boolean> {
  let ok = true;
  for (const [name, step] of steps) {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        step(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`did not finish within ${graceMs} ms`)), graceMs);
        }),
      ]);
      log.info({ step: name, ms: Date.now() - started }, 'shutdown step done');
    } catch (err) {
      ok = false;
      log.error({ step: name, err }, 'shutdown step failed');
    } finally {
      clearTimeout(timer);
    }
  }
  return ok;
}
