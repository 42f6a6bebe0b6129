/**
 * The flat attribute values the study/series/instance index stores, taken from a parsed instance.
 * @see PS3.4 §C.6.1.1 (the Study Root keys these columns answer)
 * @see PS3.18 §10.6.1.2 (QIDO-RS matching attributes)
 */
import type { DicomJsonPersonName } from './dicom-json.ts';
import { keywordToTag } from './dictionary.ts';
import type { ParsedInstance } from './parse-instance.ts';

/** Keywords of the attributes the index stores, spelled as PS3.6 spells them. */
export const INDEX_KEYWORDS = [
  'PatientName',
  'PatientID',
  'IssuerOfPatientID',
  'PatientBirthDate',
  'PatientSex',
  'StudyInstanceUID',
  'StudyDate',
  'StudyTime',
  'AccessionNumber',
  'StudyID',
  'StudyDescription',
  'ReferringPhysicianName',
  'SeriesInstanceUID',
  'Modality',
  'SeriesNumber',
  'SeriesDescription',
  'PerformedProcedureStepStartDate',
  'SOPClassUID',
  'SOPInstanceUID',
  'InstanceNumber',
  'NumberOfFrames',
  'Rows',
  'Columns',
  'BitsAllocated',
] as const;

/** One of {@link INDEX_KEYWORDS}. */
export type IndexKeyword = (typeof INDEX_KEYWORDS)[number];

const INDEX_TAGS: readonly (readonly [IndexKeyword, string])[] = INDEX_KEYWORDS.map((k) => {
  const tag = keywordToTag(k);
  if (!tag) throw new Error(`generated dictionary lacks ${k}`);
  return [k, tag] as const;
});

/**
 * First value of each index attribute as a string ('' when absent or empty): PN as its Alphabetic group
 * (e.g. 'Doe^John'), numbers in their shortest decimal form. The SOP Class/Instance UIDs fall back to the
 * File Meta group as in {@link ParsedInstance}. Only top-level attributes are read.
 * @see PS3.18 §F.2
 */
export function indexAttributes(p: ParsedInstance): Record<IndexKeyword, string> {
  const out = {} as Record<IndexKeyword, string>;
  for (const [keyword, tag] of INDEX_TAGS) {
    const v = p.json[tag]?.Value?.[0];
    let s = '';
    if (typeof v === 'string') s = v;
    else if (typeof v === 'number') s = String(v);
    else if (v !== null && v !== undefined && typeof v === 'object' && !('vr' in v)) {
      s = (v as DicomJsonPersonName).Alphabetic ?? '';
    }
    out[keyword] = s;
  }
  out.SOPClassUID = p.sopClassUid;
  out.SOPInstanceUID = p.sopInstanceUid;
  return out;
}
