/**
 * The QIDO-RS / C-FIND attribute tables: which attributes we match on (and how), and which ones each
 * level returns by default.
 *
 * Matching keys map onto the indexed columns of the `study`, `series` and `instance` tables (aliases
 * `st`, `se`, `i` in the generated SQL). A key of a higher level may be used in a lower-level query
 * (`/instances?PatientID=…`); a lower-level key in a higher-level query (`/studies?Modality=CT`) is
 * refused — use ModalitiesInStudy.
 * @see PS3.18 §8.3.4 (query parameters), Table 6.7.1-1 (required matching keys), PS3.4 §C.2.2.2 (matching)
 */

export type Level = 'study' | 'series' | 'instance';

export const LEVEL_DEPTH: Readonly<Record<Level, number>> = { study: 0, series: 1, instance: 2 };

/**
 * How a key matches (PS3.4 §C.2.2.2):
 * - `pn`: Person Name, case- and accent-insensitive on the `*_norm` column; wildcards; fuzzy.
 * - `text`: single value or wildcard (`*`, `?`), case-sensitive.
 * - `codes`: single value, wildcard, or a list (`CT,MR` or `CT\MR`) meaning any of them.
 * - `uid`: single UID or UID list (`,` or `\` separated).
 * - `date`, `time`: single value or range (`a-b`, `-b`, `a-`).
 * - `integer`: single IS value.
 */
export type MatchKind = 'pn' | 'text' | 'codes' | 'uid' | 'date' | 'time' | 'integer';

export interface MatchingKey {
  readonly tag: string;
  readonly keyword: string;
  readonly level: Level;
  readonly kind: MatchKind;
  /** SQL expression of the column; `null` for keys with a special translation (ModalitiesInStudy). */
  readonly column: string | null;
}

export const MATCHING_KEYS: readonly MatchingKey[] = [
  // Patient / study (PS3.18 Table 6.7.1-1, study level)
  { tag: '00100010', keyword: 'PatientName', level: 'study', kind: 'pn', column: 'st.patient_name_norm' },
  { tag: '00100020', keyword: 'PatientID', level: 'study', kind: 'text', column: 'st.patient_id' },
  { tag: '00100021', keyword: 'IssuerOfPatientID', level: 'study', kind: 'text', column: 'st.issuer_of_patient_id' },
  { tag: '00100030', keyword: 'PatientBirthDate', level: 'study', kind: 'date', column: 'st.patient_birth_date' },
  { tag: '00100040', keyword: 'PatientSex', level: 'study', kind: 'codes', column: 'st.patient_sex' },
  { tag: '00080020', keyword: 'StudyDate', level: 'study', kind: 'date', column: 'st.study_date' },
  { tag: '00080030', keyword: 'StudyTime', level: 'study', kind: 'time', column: 'st.study_time' },
  { tag: '00080050', keyword: 'AccessionNumber', level: 'study', kind: 'text', column: 'st.accession_number' },
  { tag: '0020000D', keyword: 'StudyInstanceUID', level: 'study', kind: 'uid', column: 'st.study_instance_uid' },
  { tag: '00200010', keyword: 'StudyID', level: 'study', kind: 'text', column: 'st.study_id' },
  { tag: '00081030', keyword: 'StudyDescription', level: 'study', kind: 'text', column: 'st.study_description' },
  { tag: '00080090', keyword: 'ReferringPhysicianName', level: 'study', kind: 'pn', column: 'st.referring_physician_name_norm' },
  { tag: '00080061', keyword: 'ModalitiesInStudy', level: 'study', kind: 'codes', column: null },
  // Series (Table 6.7.1-1, series level)
  { tag: '00080060', keyword: 'Modality', level: 'series', kind: 'codes', column: 'se.modality' },
  { tag: '0020000E', keyword: 'SeriesInstanceUID', level: 'series', kind: 'uid', column: 'se.series_instance_uid' },
  { tag: '00200011', keyword: 'SeriesNumber', level: 'series', kind: 'integer', column: 'se.series_number' },
  { tag: '0008103E', keyword: 'SeriesDescription', level: 'series', kind: 'text', column: 'se.series_description' },
  { tag: '00400244', keyword: 'PerformedProcedureStepStartDate', level: 'series', kind: 'date', column: 'se.performed_procedure_step_start_date' },
  // Instance (Table 6.7.1-1, instance level)
  { tag: '00080018', keyword: 'SOPInstanceUID', level: 'instance', kind: 'uid', column: 'i.sop_instance_uid' },
  { tag: '00080016', keyword: 'SOPClassUID', level: 'instance', kind: 'uid', column: 'i.sop_class_uid' },
  { tag: '00200013', keyword: 'InstanceNumber', level: 'instance', kind: 'integer', column: 'i.instance_number' },
];

const BY_TAG = new Map(MATCHING_KEYS.map((k) => [k.tag, k]));

export function matchingKeyByTag(tag: string): MatchingKey | undefined {
  return BY_TAG.get(tag.toUpperCase());
}

/** Tags of computed or synthesised attributes (never stored in the json columns). */
export const TAG = {
  SpecificCharacterSet: '00080005',
  InstanceAvailability: '00080056',
  ModalitiesInStudy: '00080061',
  RetrieveURL: '00081190',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  SOPInstanceUID: '00080018',
  SOPClassUID: '00080016',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  NumberOfFrames: '00280008',
} as const;

/**
 * Default return attributes by level, taken from the level's json column (computed ones are added by
 * the route). PS3.18 Table 6.7.1-2 (study), 6.7.1-2a (series), 6.7.1-2b (instance); StudyDescription,
 * SeriesDate/Time and the parent UIDs are added because viewers (OHIF) need them.
 */
export const DEFAULT_TAGS: Readonly<Record<Level, readonly string[]>> = {
  study: [
    '00080020', // StudyDate
    '00080030', // StudyTime
    '00080050', // AccessionNumber
    '00080090', // ReferringPhysicianName
    '00080201', // TimezoneOffsetFromUTC
    '00081030', // StudyDescription
    '00100010', // PatientName
    '00100020', // PatientID
    '00100030', // PatientBirthDate
    '00100040', // PatientSex
    '0020000D', // StudyInstanceUID
    '00200010', // StudyID
  ],
  series: [
    '00080021', // SeriesDate
    '00080031', // SeriesTime
    '00080060', // Modality
    '00080201', // TimezoneOffsetFromUTC
    '0008103E', // SeriesDescription
    '0020000E', // SeriesInstanceUID
    '00200011', // SeriesNumber
    '00400244', // PerformedProcedureStepStartDate
    '00400245', // PerformedProcedureStepStartTime
    '00400275', // RequestAttributesSequence
  ],
  instance: [
    '00080016', // SOPClassUID
    '00080018', // SOPInstanceUID
    '00080201', // TimezoneOffsetFromUTC
    '00200013', // InstanceNumber
    '00280008', // NumberOfFrames
    '00280010', // Rows
    '00280011', // Columns
    '00280100', // BitsAllocated
  ],
};
