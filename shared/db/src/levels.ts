/**
 * Which attributes belong to which query/retrieve level, by tag. Ingest copies these from an instance's
 * DICOM JSON into `study.json` and `series.json`; QIDO-RS and C-FIND answer from those columns.
 *
 * @see PS3.18 Table 6.7.1-2 (QIDO-RS study), 6.7.1-2a (series), PS3.4 C.6.2.1 (Study Root keys)
 */
export const STUDY_LEVEL_TAGS: readonly string[] = [
  '00080005', // SpecificCharacterSet
  '00080020', // StudyDate
  '00080030', // StudyTime
  '00080050', // AccessionNumber
  '00080051', // IssuerOfAccessionNumberSequence
  '00080090', // ReferringPhysicianName
  '00081030', // StudyDescription
  '00081032', // ProcedureCodeSequence
  '00081060', // NameOfPhysiciansReadingStudy
  '00100010', // PatientName
  '00100020', // PatientID
  '00100021', // IssuerOfPatientID
  '00100030', // PatientBirthDate
  '00100040', // PatientSex
  '00101000', // OtherPatientIDs (retired, still common)
  '00101001', // OtherPatientNames
  '00101010', // PatientAge
  '00101020', // PatientSize
  '00101030', // PatientWeight
  '00102160', // EthnicGroup
  '00104000', // PatientComments
  '0020000D', // StudyInstanceUID
  '00200010', // StudyID
  '00321032', // RequestingPhysician
  '00321060', // RequestedProcedureDescription
];

export const SERIES_LEVEL_TAGS: readonly string[] = [
  '00080021', // SeriesDate
  '00080031', // SeriesTime
  '00080060', // Modality
  '00080070', // Manufacturer
  '00080080', // InstitutionName
  '0008103E', // SeriesDescription
  '00081010', // StationName
  '00081050', // PerformingPhysicianName
  '00081090', // ManufacturerModelName
  '00180015', // BodyPartExamined
  '00185100', // PatientPosition
  '0020000E', // SeriesInstanceUID
  '00200011', // SeriesNumber
  '00200060', // Laterality
  '00400244', // PerformedProcedureStepStartDate
  '00400245', // PerformedProcedureStepStartTime
  '00400275', // RequestAttributesSequence
];

/** The subset of a DICOM JSON data set with the given tags (plus SpecificCharacterSet semantics kept by the caller). */
export function pickTags(json: Record<string, unknown>, tags: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of tags) if (json[t] !== undefined) out[t] = json[t];
  return out;
}
