/**
 * The DICOM File Meta Information (group 0002) that precedes the data set in a Part-10 file: written
 * for every object Portico stores (so the object store holds valid Part-10 files even when the bytes
 * arrived over DIMSE without one), read to learn how the data set that follows is encoded.
 * @see PS3.10 §7.1
 */
import { DicomParseError } from './errors.ts';

/** Portico's Implementation Class UID, under the Portico UID root. @see PS3.7 §D.3.3.2 */
export const PORTICO_IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.10.1482.1';
/** Portico's Implementation Version Name (at most 16 characters, SH). @see PS3.7 §D.3.3.2 */
export const PORTICO_IMPLEMENTATION_VERSION_NAME = 'PORTICO_010';

/** Length of the preamble plus the "DICM" prefix. @see PS3.10 §7.1 */
export const PART10_HEADER_LENGTH = 132;

/** Upper bound on a File Meta group we accept; real ones are a few hundred bytes. */
const MAX_META_BYTES = 4 * 1024 * 1024;

/** The File Meta Information a reader needs. */
export interface FileMetaInformation {
  /** (0002,0010); '' when the group lacks it */
  transferSyntaxUid: string;
  /** (0002,0002); '' when absent */
  sopClassUid: string;
  /** (0002,0003); '' when absent */
  sopInstanceUid: string;
  /** offset of the first byte after the File Meta group, i.e. of the data set */
  datasetOffset: number;
  /** (0002,0016) */
  sourceApplicationEntityTitle?: string;
  /** (0002,0017): the AE that sent the instance to the one that wrote this group */
  sendingApplicationEntityTitle?: string;
  /** (0002,0018): the AE title the instance was sent to (the Called AE Title of the association) */
  receivingApplicationEntityTitle?: string;
  /** (0002,0012) */
  implementationClassUid?: string;
  /** (0002,0013) */
  implementationVersionName?: string;
}

export interface WriteFileMetaOptions {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** AE title of the sender, recorded as (0002,0016) Source Application Entity Title */
  sourceApplicationEntityTitle?: string;
  /** (0002,0017) Sending Application Entity Title: the calling AE of the association it came on */
  sendingApplicationEntityTitle?: string;
  /** (0002,0018) Receiving Application Entity Title: the called AE of that association */
  receivingApplicationEntityTitle?: string;
}

/**
 * True when `buf` starts with the 128-byte preamble and the "DICM" prefix. The preamble content is not
 * checked: PS3.10 lets applications put anything there (TIFF headers, for example).
 * @see PS3.10 §7.1
 */
export function hasPart10Preamble(buf: Uint8Array): boolean {
  return buf.length >= PART10_HEADER_LENGTH && buf[128] === 0x44 && buf[129] === 0x49 && buf[130] === 0x43 && buf[131] === 0x4d;
}

function checkUid(name: string, uid: string): void {
  // Leading zeros in a component are invalid (PS3.5 §9.1) but common in received data; only the
  // character set and length are enforced, as those break the encoding itself.
  if (uid.length === 0 || uid.length > 64 || !/^[0-9.]+$/.test(uid)) {
    throw new RangeError(`${name} is not a valid UID (PS3.5 §9.1): ${JSON.stringify(uid)}`);
  }
}

function element(tag: number, vr: string, value: Buffer): Buffer {
  const long = vr === 'OB';
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(tag >>> 16, 0);
  header.writeUInt16LE(tag & 0xffff, 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(value.length, 8);
  else header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

/** UI values are padded to even length with NUL, other strings with a space. @see PS3.5 §6.2 */
function padded(text: string, pad: '\0' | ' '): Buffer {
  return Buffer.from(text.length % 2 === 0 ? text : text + pad, 'latin1');
}

/**
 * Encodes the 128-byte zero preamble, "DICM" and the File Meta group in Explicit VR Little Endian, with
 * Portico's Implementation Class UID and Version Name. Throws `RangeError` for values that cannot be
 * encoded (malformed UIDs, an AE title longer than 16 characters).
 * @see PS3.10 §7.1
 */
export function writeFileMetaInformation(opts: WriteFileMetaOptions): Buffer {
  checkUid('sopClassUid', opts.sopClassUid);
  checkUid('sopInstanceUid', opts.sopInstanceUid);
  checkUid('transferSyntaxUid', opts.transferSyntaxUid);
  const elements = [
    element(0x00020001, 'OB', Buffer.from([0x00, 0x01])),
    element(0x00020002, 'UI', padded(opts.sopClassUid, '\0')),
    element(0x00020003, 'UI', padded(opts.sopInstanceUid, '\0')),
    element(0x00020010, 'UI', padded(opts.transferSyntaxUid, '\0')),
    element(0x00020012, 'UI', padded(PORTICO_IMPLEMENTATION_CLASS_UID, '\0')),
    element(0x00020013, 'SH', padded(PORTICO_IMPLEMENTATION_VERSION_NAME, ' ')),
  ];
  for (const [tag, name] of [
    [0x00020016, 'sourceApplicationEntityTitle'],
    [0x00020017, 'sendingApplicationEntityTitle'],
    [0x00020018, 'receivingApplicationEntityTitle'],
  ] as const) {
    const ae = opts[name]?.trim();
    if (ae === undefined || ae === '') continue;
    // AE: 16 characters of the default repertoire, no backslash or control characters (PS3.5 Table 6.2-1).
    if (ae.length > 16 || !/^[\x20-\x5b\x5d-\x7e]+$/.test(ae)) {
      throw new RangeError(`${name} is not a valid AE title: ${JSON.stringify(ae)}`);
    }
    elements.push(element(tag, 'AE', padded(ae, ' ')));
  }
  const groupBody = Buffer.concat(elements);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(groupBody.length, 0);
  const preamble = Buffer.alloc(PART10_HEADER_LENGTH);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, element(0x00020000, 'UL', groupLength), groupBody]);
}

/** Explicit VRs whose length field is 32 bits (after two reserved bytes). @see PS3.5 §7.1.2 */
export const LONG_LENGTH_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);
/** Every VR defined by PS3.5 Table 6.2-1. */
export const KNOWN_VRS: ReadonlySet<string> = new Set([
  'AE',
  'AS',
  'AT',
  'CS',
  'DA',
  'DS',
  'DT',
  'FD',
  'FL',
  'IS',
  'LO',
  'LT',
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'PN',
  'SH',
  'SL',
  'SQ',
  'SS',
  'ST',
  'SV',
  'TM',
  'UC',
  'UI',
  'UL',
  'UN',
  'UR',
  'US',
  'UT',
  'UV',
]);

/** Result of scanning a possibly incomplete buffer: the meta information, or how many bytes are needed. */
export type FileMetaScan = { meta: FileMetaInformation } | { needBytes: number };

interface MetaElement {
  tag: number;
  valueOffset: number;
  length: number;
  end: number;
}

/**
 * Walks the File Meta group starting at `start` (132 after a preamble, 0 for a bare group). Returns
 * `needBytes` when `buf` is too short to decide, unless `complete` says no more bytes will come.
 *
 * Tolerated damage, each seen in real files:
 * - no (0002,0000) Group Length: the group ends at the first element of another group;
 * - elements of other groups inside the group length (e.g. a stray (0008,0000)): skipped as meta;
 * - a group length that does not land on an element boundary, or that ends while group 0002 elements
 *   continue: ignored, the group is walked as if it had none.
 * @see PS3.10 §7.1
 */
export function scanFileMeta(buf: Uint8Array, start: number, complete = false): FileMetaScan {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (n: number): { needBytes: number } => {
    if (complete || n > start + MAX_META_BYTES) {
      throw new DicomParseError(
        complete ? 'TRUNCATED' : 'MALFORMED',
        complete ? 'File Meta Information is incomplete' : 'File Meta Information is implausibly large',
        start,
      );
    }
    return { needBytes: n };
  };

  // Reads one explicit VR LE element at pos, or returns the number of bytes needed.
  const readElement = (pos: number): MetaElement | { needBytes: number } => {
    if (view.length < pos + 8) return need(pos + 8);
    const tag = ((view.readUInt16LE(pos) << 16) | view.readUInt16LE(pos + 2)) >>> 0;
    const vr = view.toString('latin1', pos + 4, pos + 6);
    let valueOffset: number;
    let length: number;
    if (KNOWN_VRS.has(vr)) {
      if (LONG_LENGTH_VRS.has(vr)) {
        if (view.length < pos + 12) return need(pos + 12);
        length = view.readUInt32LE(pos + 8);
        valueOffset = pos + 12;
      } else {
        length = view.readUInt16LE(pos + 6);
        valueOffset = pos + 8;
      }
    } else {
      // Implicit VR inside the meta group (written by some old toolkits): 32-bit length after the tag.
      length = view.readUInt32LE(pos + 4);
      valueOffset = pos + 8;
    }
    if (length === 0xffffffff) throw new DicomParseError('MALFORMED', 'undefined length inside File Meta Information', pos);
    if (view.length < valueOffset + length) return need(valueOffset + length);
    return { tag, valueOffset, length, end: valueOffset + length };
  };

  const walk = (useGroupLength: boolean): FileMetaScan | 'inconsistent' => {
    const values = new Map<number, Buffer>();
    let pos = start;
    let groupEnd: number | undefined;
    for (;;) {
      if (groupEnd !== undefined && pos === groupEnd) {
        // A group length that stops while group 0002 continues is wrong; confirm with the next tag.
        if (view.length < pos + 2) {
          if (!complete) return need(pos + 2);
        } else if (view.readUInt16LE(pos) === 0x0002) {
          return 'inconsistent';
        }
        break;
      }
      if (groupEnd !== undefined && pos > groupEnd) return 'inconsistent';
      if (groupEnd === undefined) {
        if (view.length < pos + 2) {
          if (complete && view.length === pos && pos > start) break;
          return need(pos + 2);
        }
        if (view.readUInt16LE(pos) !== 0x0002) break;
      }
      const el = readElement(pos);
      if ('needBytes' in el) return el;
      if (el.tag >>> 16 === 0x0002) values.set(el.tag, view.subarray(el.valueOffset, el.end));
      if (useGroupLength && el.tag === 0x00020000 && pos === start && el.length === 4) {
        groupEnd = el.end + view.readUInt32LE(el.valueOffset);
        if (groupEnd - start > MAX_META_BYTES) return 'inconsistent';
      }
      pos = el.end;
    }
    return { meta: toMeta(values, pos) };
  };

  const first = walk(true);
  if (first !== 'inconsistent') return first;
  const second = walk(false);
  if (second === 'inconsistent') throw new DicomParseError('MALFORMED', 'File Meta Information cannot be delimited', start);
  return second;
}

function toMeta(values: Map<number, Buffer>, datasetOffset: number): FileMetaInformation {
  const uid = (tag: number): string =>
    values
      .get(tag)
      ?.toString('latin1')
      .replace(/[\0 ]+$/, '')
      .trim() ?? '';
  const text = (tag: number): string | undefined => {
    const v = values.get(tag);
    return v === undefined
      ? undefined
      : v
          .toString('latin1')
          .replace(/[\0 ]+$/, '')
          .trim();
  };
  const meta: FileMetaInformation = {
    transferSyntaxUid: uid(0x00020010),
    sopClassUid: uid(0x00020002),
    sopInstanceUid: uid(0x00020003),
    datasetOffset,
  };
  const ae = text(0x00020016);
  if (ae) meta.sourceApplicationEntityTitle = ae;
  const sending = text(0x00020017);
  if (sending) meta.sendingApplicationEntityTitle = sending;
  const receiving = text(0x00020018);
  if (receiving) meta.receivingApplicationEntityTitle = receiving;
  const implClass = text(0x00020012);
  if (implClass) meta.implementationClassUid = implClass;
  const implVersion = text(0x00020013);
  if (implVersion) meta.implementationVersionName = implVersion;
  return meta;
}

/**
 * Reads the File Meta Information of a Part-10 file from its first bytes (the whole file is not needed;
 * a few KB always suffice). Throws `DicomParseError` with code `NOT_DICOM` when there is no preamble and
 * `TRUNCATED` when `buf` ends inside the group.
 * @see PS3.10 §7.1
 */
export function readFileMetaInformation(buf: Uint8Array): FileMetaInformation {
  if (!hasPart10Preamble(buf)) {
    throw new DicomParseError('NOT_DICOM', 'no DICOM Part-10 preamble ("DICM" at byte 128)', 0);
  }
  const scan = scanFileMeta(buf, PART10_HEADER_LENGTH, true);
  if ('needBytes' in scan) throw new DicomParseError('TRUNCATED', 'File Meta Information is incomplete', buf.length);
  return scan.meta;
}
