import { describe, expect, it } from 'vitest';
import { PorticoError } from '@portico/errors';
import { buildQidoQuery, wildcardToLike, type QidoQuery } from './query.ts';

const q = (over: Partial<QidoQuery>): QidoQuery => ({ level: 'study', keys: [], limit: 10, offset: 0, ...over });
const where = (sql: string): string => sql.slice(sql.indexOf('\nWHERE '), sql.lastIndexOf('ORDER BY')).trim();

function badRequest(fn: () => unknown, mentions: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PorticoError);
  expect((err as PorticoError).code).toBe('BAD_REQUEST');
  expect((err as PorticoError).message).toContain(mentions);
}

describe('buildQidoQuery', () => {
  it('study level without keys: ordered by pk, limit and offset bound', () => {
    const { sql, params } = buildQidoQuery(q({ limit: 5, offset: 0 }));
    expect(sql).toMatch(/FROM study st\nORDER BY st.study_pk\nLIMIT \$1 OFFSET \$2$/);
    expect(params).toEqual([5, 0]);
    expect(sql).not.toContain('\nWHERE');
  });

  it('with an offset, each level picks the page of primary keys first and computes its columns for those rows only', () => {
    const study = buildQidoQuery(q({ keys: [{ tag: '00100020', value: 'P1' }], limit: 5, offset: 20 }));
    expect(study.sql).toMatch(
      /FROM study st\nCROSS JOIN LATERAL \([^\n]*\) sx\nWHERE st.study_pk = ANY \(ARRAY\(SELECT st.study_pk FROM study st\nWHERE st.patient_id = \$1\nORDER BY st.study_pk\nLIMIT \$2 OFFSET \$3\)\)\nORDER BY st.study_pk/,
    );
    expect(study.sql).toMatch(/\)\)\nORDER BY st.study_pk$/);
    // the computed attributes are evaluated outside the paging subquery
    expect(study.sql.indexOf('AS number_of_instances')).toBeLessThan(study.sql.indexOf('ANY (ARRAY('));
    expect(study.params).toEqual(['P1', 5, 20]);
    const series = buildQidoQuery({ level: 'series', keys: [], limit: 3, offset: 1 });
    expect(series.sql).toContain(
      'FROM series se JOIN study st ON st.study_pk = se.study_pk\nWHERE se.series_pk = ANY (ARRAY(SELECT se.series_pk FROM series se JOIN study st ON st.study_pk = se.study_pk\nORDER BY se.series_pk\nLIMIT $1 OFFSET $2))\nORDER BY se.series_pk',
    );
    const instance = buildQidoQuery({ level: 'instance', keys: [], instanceTags: ['00080016'], limit: 3, offset: 7 });
    expect(instance.sql).toContain('WHERE i.instance_pk = ANY (ARRAY(SELECT i.instance_pk FROM instance i JOIN series se');
    expect(instance.sql).toMatch(/LIMIT \$2 OFFSET \$3\)\)\nORDER BY i.instance_pk$/);
    expect(instance.params).toEqual([['00080016'], 3, 7]);
  });

  it('PatientName exact: normalised, prefix LIKE (index) plus a regex for trailing components and groups', () => {
    const { sql, params } = buildQidoQuery(q({ keys: [{ tag: '00100010', value: 'Doe^Jöhn' }] }));
    expect(where(sql)).toBe('WHERE (st.patient_name_norm LIKE $1 AND st.patient_name_norm ~ $2)');
    expect(params.slice(0, 2)).toEqual(['DOE^JOHN%', '^DOE\\^JOHN[\\^ ]*(=|$)']);
    const re = new RegExp(params[1] as string);
    expect(re.test('DOE^JOHN')).toBe(true);
    expect(re.test('DOE^JOHN^^')).toBe(true);
    expect(re.test('DOE^JOHN=ド^ジョン')).toBe(true);
    expect(re.test('DOE^JOHNNY')).toBe(false);
    expect(re.test('DOE^JOHN^A')).toBe(false);
  });

  it('PatientName with trailing carets in the query matches the same names', () => {
    const { params } = buildQidoQuery(q({ keys: [{ tag: '00100010', value: 'doe^john^^' }] }));
    expect(params[0]).toBe('DOE^JOHN%');
  });

  it('PatientName wildcards become an escaped LIKE on the normalised column', () => {
    const { sql, params } = buildQidoQuery(q({ keys: [{ tag: '00100010', value: 'do?_%*' }] }));
    expect(where(sql)).toBe('WHERE st.patient_name_norm LIKE $1');
    expect(params[0]).toBe('DO_\\_\\%%');
  });

  it('PatientName "*" is universal matching', () => {
    expect(buildQidoQuery(q({ keys: [{ tag: '00100010', value: '*' }] })).sql).not.toContain('\nWHERE');
  });

  it('empty values are universal matching', () => {
    const { sql, params } = buildQidoQuery(
      q({
        keys: [
          { tag: '00100020', value: '' },
          { tag: '00080020', value: ' ' },
        ],
      }),
    );
    expect(sql).not.toContain('\nWHERE');
    expect(params).toEqual([10, 0]);
  });

  it('fuzzy PN matching: each word is a word prefix anywhere in the name', () => {
    const { sql, params } = buildQidoQuery(q({ fuzzy: true, keys: [{ tag: '00080090', value: 'smi joh' }] }));
    expect(where(sql)).toBe('WHERE st.referring_physician_name_norm ~ $1 AND st.referring_physician_name_norm ~ $2');
    expect(params.slice(0, 2)).toEqual(['(^|[\\s^=])SMI', '(^|[\\s^=])JOH']);
    expect(new RegExp((params[1] as string).replace('\\s', ' ')).test('SMITH^JOHN')).toBe(true);
  });

  it('PatientID: exact and wildcard; LIKE metacharacters in the value are literal', () => {
    expect(where(buildQidoQuery(q({ keys: [{ tag: '00100020', value: 'ID_1%' }] })).sql)).toBe('WHERE st.patient_id = $1');
    const w = buildQidoQuery(q({ keys: [{ tag: '00100020', value: 'ID_1*' }] }));
    expect(where(w.sql)).toBe('WHERE st.patient_id LIKE $1');
    expect(w.params[0]).toBe('ID\\_1%');
  });

  it('StudyDate single, closed, open-ended and open-started ranges', () => {
    const single = buildQidoQuery(q({ keys: [{ tag: '00080020', value: '20040826' }] }));
    expect(where(single.sql)).toBe('WHERE st.study_date = $1');
    const closed = buildQidoQuery(q({ keys: [{ tag: '00080020', value: '20040101-20041231' }] }));
    expect(where(closed.sql)).toBe('WHERE (st.study_date >= $1 AND st.study_date <= $2)');
    expect(closed.params.slice(0, 2)).toEqual(['20040101', '20041231']);
    const from = buildQidoQuery(q({ keys: [{ tag: '00080020', value: '20040101-' }] }));
    expect(where(from.sql)).toBe('WHERE st.study_date >= $1');
    const until = buildQidoQuery(q({ keys: [{ tag: '00080020', value: '-20041231' }] }));
    expect(where(until.sql)).toBe("WHERE (st.study_date <> '' AND st.study_date <= $1)");
  });

  it('StudyDate rejects malformed values', () => {
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080020', value: '2004-01' }] })), 'StudyDate');
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080020', value: '-' }] })), 'StudyDate');
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080020', value: "20040101' OR 1=1" }] })), 'StudyDate');
  });

  it('StudyTime: an upper bound covers every time it prefixes', () => {
    const r = buildQidoQuery(q({ keys: [{ tag: '00080030', value: '0800-1015' }] }));
    expect(where(r.sql)).toBe('WHERE (st.study_time >= $1 AND st.study_time < $2)');
    expect(r.params.slice(0, 2)).toEqual(['0800', '1015~']);
    expect('101559.999' < (r.params[1] as string)).toBe(true);
    expect('101600' < (r.params[1] as string)).toBe(false);
    const single = buildQidoQuery(q({ keys: [{ tag: '00080030', value: '10:15' }] }));
    expect(single.params.slice(0, 2)).toEqual(['1015', '1015~']);
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080030', value: '25x' }] })), 'StudyTime');
  });

  it('UID list matching with "," or "\\"; invalid UIDs are refused', () => {
    const one = buildQidoQuery(q({ keys: [{ tag: '0020000D', value: '1.2.3' }] }));
    expect(where(one.sql)).toBe('WHERE st.study_instance_uid = $1');
    const many = buildQidoQuery(q({ keys: [{ tag: '0020000D', value: '1.2.3,1.2.4\\1.2.5' }] }));
    expect(where(many.sql)).toBe('WHERE st.study_instance_uid = ANY($1::text[])');
    expect(many.params[0]).toEqual(['1.2.3', '1.2.4', '1.2.5']);
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '0020000D', value: '1.2.*' }] })), 'StudyInstanceUID');
  });

  it('AccessionNumber, StudyID, StudyDescription', () => {
    const r = buildQidoQuery(
      q({
        keys: [
          { tag: '00080050', value: 'A1' },
          { tag: '00200010', value: 'S?' },
          { tag: '00081030', value: '*brain*' },
        ],
      }),
    );
    expect(where(r.sql)).toBe('WHERE st.accession_number = $1\n  AND st.study_id LIKE $2\n  AND st.study_description LIKE $3');
    expect(r.params.slice(0, 3)).toEqual(['A1', 'S_', '%brain%']);
  });

  it('ModalitiesInStudy: exists in a series of the study; single, list, wildcard', () => {
    const one = buildQidoQuery(q({ keys: [{ tag: '00080061', value: 'MR' }] }));
    expect(where(one.sql)).toBe('WHERE EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.study_pk AND x.modality = $1)');
    const list = buildQidoQuery(q({ keys: [{ tag: '00080061', value: 'CT,MR' }] }));
    expect(where(list.sql)).toContain('x.modality = ANY($1::text[])');
    expect(list.params[0]).toEqual(['CT', 'MR']);
    const wild = buildQidoQuery(q({ keys: [{ tag: '00080061', value: 'R*' }] }));
    expect(where(wild.sql)).toContain('x.modality LIKE $1');
  });

  it('series level: Modality, SeriesNumber, SeriesDescription, SeriesInstanceUID with the study scope', () => {
    const r = buildQidoQuery({
      level: 'series',
      scope: { studyInstanceUid: '1.2.3' },
      keys: [
        { tag: '00080060', value: 'CT' },
        { tag: '00200011', value: '+07' },
        { tag: '0008103E', value: 'AX*' },
        { tag: '0020000E', value: '1.2.3.4' },
      ],
      limit: 3,
      offset: 0,
    });
    expect(r.sql).toContain('FROM series se JOIN study st ON st.study_pk = se.study_pk');
    expect(where(r.sql)).toBe(
      'WHERE st.study_instance_uid = $1\n  AND se.modality = $2\n  AND btrim(se.series_number) = $3\n  AND se.series_description LIKE $4\n  AND se.series_instance_uid = $5',
    );
    expect(r.params).toEqual(['1.2.3', 'CT', '7', 'AX%', '1.2.3.4', 3, 0]);
    expect(r.sql).toMatch(/ORDER BY se.series_pk\nLIMIT \$6 OFFSET \$7$/);
  });

  it('instance level: SOPInstanceUID list, SOPClassUID, InstanceNumber, study-level keys, json subset first', () => {
    const r = buildQidoQuery({
      level: 'instance',
      scope: { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3' },
      keys: [
        { tag: '00080018', value: '1.2.3.4,1.2.3.5' },
        { tag: '00080016', value: '1.2.840.10008.5.1.4.1.1.4' },
        { tag: '00200013', value: '3' },
        { tag: '00100020', value: 'P1' },
      ],
      instanceTags: ['00080016', '00280010'],
      limit: 100,
      offset: 0,
    });
    expect(r.params[0]).toEqual(['00080016', '00280010']);
    expect(r.sql).toContain('jsonb_each(i.json) e WHERE e.key = ANY($1::text[])');
    expect(where(r.sql)).toBe(
      'WHERE st.study_instance_uid = $2\n  AND se.series_instance_uid = $3\n  AND i.sop_instance_uid = ANY($4::text[])\n  AND i.sop_class_uid = $5\n  AND btrim(i.instance_number) = $6\n  AND st.patient_id = $7',
    );
    expect(r.sql).toMatch(/ORDER BY i.instance_pk\nLIMIT \$8 OFFSET \$9$/);
    expect(r.params.length).toBe(9);
  });

  it('instance level with includefield=all selects the whole json', () => {
    const r = buildQidoQuery({ level: 'instance', keys: [], instanceTags: 'all', limit: 1, offset: 0 });
    expect(r.sql).toContain('i.json AS json');
    expect(r.params).toEqual([1, 0]);
  });

  it('refuses keys below the query level, unknown keys, and bad integers', () => {
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080060', value: 'CT' }] })), 'use ModalitiesInStudy');
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00080018', value: '1.2' }] })), 'instance-level');
    badRequest(() => buildQidoQuery(q({ keys: [{ tag: '00101010', value: '040Y' }] })), '00101010');
    badRequest(() => buildQidoQuery({ level: 'instance', keys: [{ tag: '00200013', value: 'x' }], limit: 1, offset: 0 }), 'InstanceNumber');
    badRequest(() => buildQidoQuery(q({ limit: -1 })), 'limit');
  });

  it('never splices a value into the SQL text', () => {
    const evil = "x'; DROP TABLE study; --";
    const r = buildQidoQuery(
      q({
        keys: [
          { tag: '00100010', value: evil },
          { tag: '00100020', value: evil },
          { tag: '00081030', value: `${evil}*` },
        ],
      }),
    );
    expect(r.sql).not.toContain('DROP');
  });
});

describe('wildcardToLike', () => {
  it('escapes LIKE metacharacters before mapping * and ?', () => {
    expect(wildcardToLike('a\\b%c_d*e?')).toBe('a\\\\b\\%c\\_d%e_');
  });
});
