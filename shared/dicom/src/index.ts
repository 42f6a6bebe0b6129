/**
 * @portico/dicom — pure DICOM encoding logic shared by the services: data dictionary, File Meta
 * Information, the streaming instance parser, DICOM JSON values and character sets. No I/O beyond reading
 * the streams passed in.
 */
export { DicomParseError } from './errors.ts';
export type { DicomParseErrorCode } from './errors.ts';

export { STORAGE_SOP_CLASSES } from './generated/sop-classes.ts';

export { DICTIONARY_SNAPSHOT, implicitVr, keywordToTag, lookupTag, tagToKeyword } from './dictionary.ts';
export type { DictionaryEntry } from './dictionary.ts';

export {
  hasPart10Preamble,
  PORTICO_IMPLEMENTATION_CLASS_UID,
  PORTICO_IMPLEMENTATION_VERSION_NAME,
  readFileMetaInformation,
  writeFileMetaInformation,
} from './file-meta.ts';
export type { FileMetaInformation, WriteFileMetaOptions } from './file-meta.ts';

export { parseInstance } from './parse-instance.ts';
export { ParsedHeaderHandoff, receivedHeaders } from './handoff.ts';
export type { HandedOffHeader } from './handoff.ts';
export type { ParsedInstance, ParseInstanceOptions, PixelDataLocation } from './parse-instance.ts';
export type { FrameLocation } from './frames.ts';

export { indexAttributes, INDEX_KEYWORDS } from './index-attributes.ts';
export type { IndexKeyword } from './index-attributes.ts';

export { hex8 } from './dicom-json.ts';
export type { DicomJsonDataset, DicomJsonElement, DicomJsonPersonName, DicomJsonValue } from './dicom-json.ts';

export { CHARSET_VRS, createCharsetDecoder, decodeText, normalizeSpecificCharacterSet } from './charset.ts';
export type { CharsetDecoder } from './charset.ts';

export { datasetEncoding, frameStartMarker, TRANSFER_SYNTAX } from './transfer-syntax.ts';
export type { DatasetEncoding } from './transfer-syntax.ts';
export { derivedUid, hierarchyUids, isValidUid } from './uids.ts';
export type { SeekableByteSource } from './byte-reader.ts';
export type { AttributePath, Mutation } from './mutation.ts';
