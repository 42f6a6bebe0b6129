/**
 * QIDO-RS query plans and latency on a synthetic index: N studies × 3 series × 10 instances, built with
 * generate_series in a scratch database, then EXPLAIN (ANALYZE) of the SQL that buildQidoQuery emits for
 * the common queries. Run: node services/dicomweb/src/bench/qido-plans.ts [studies]
 * Needs the test PostgreSQL (PORTICO_TEST_DATABASE_URL or postgres@127.0.0.1:5432).
 */
import { migrate, openDb } from '@portico/db';
import { createTestDatabase } from '@portico/testing';
import { buildQidoQuery, DEFAULT_TAGS, type QidoQuery } from '@portico/db';

const out = (line: string): void => void process.stdout.write(`${line}\n`);

const studies = Number(process.argv[2] ?? 100_000);
const tdb = await createTestDatabase();
const db = openDb(tdb.url);
try {
  await migrate(db);
  const t0 = performance.now();
  await db.query(
    `INSERT INTO study (study_instance_uid, patient_name, patient_name_norm, patient_id, study_date, study_time, accession_number, json)
    SELECT '1.2.9.' || g, 'Name' || (g % 5000) || '^Given' || (g % 7), 'NAME' || (g % 5000) || '^GIVEN' || (g % 7), 'PID' || (g % 20000),
           to_char(date '2000-01-01' + (g % 9000), 'YYYYMMDD'), lpad(((g * 37) % 240000)::text, 6, '0'), 'ACC' || g,
           jsonb_build_object('0020000D', jsonb_build_object('vr', 'UI', 'Value', jsonb_build_array('1.2.9.' || g)))
      FROM generate_series(1, $1) g`,
    [studies],
  );
  await db.query(`INSERT INTO series (series_instance_uid, study_pk, modality, series_number, json)
    SELECT '1.2.9.' || s.study_pk || '.' || k, s.study_pk, (ARRAY['CT','MR','SR','SEG','US'])[1 + (s.study_pk + k) % 5], k::text, '{}'::jsonb
      FROM study s, generate_series(1, 3) k`);
  await db.query(`INSERT INTO instance (sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number, transfer_syntax_uid, object_key, object_size, json, source, received_at)
    SELECT se.series_instance_uid || '.' || n, se.series_pk, se.study_pk, '1.2.840.10008.5.1.4.1.1.2', n::text, '1.2.840.10008.1.2.1', 'k', 1,
           jsonb_build_object('00080018', jsonb_build_object('vr', 'UI', 'Value', jsonb_build_array(se.series_instance_uid || '.' || n)), '00280010', '{"vr":"US","Value":[512]}'::jsonb),
           'stow-rs', now()
      FROM series se, generate_series(1, 10) n`);
  await db.query('ANALYZE');
  out(`built ${studies} studies, ${studies * 3} series, ${studies * 30} instances in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const mid = Math.floor(studies / 2);
  const cases: Array<[string, QidoQuery]> = [
    ['/studies?limit=100', { level: 'study', keys: [], limit: 101, offset: 0 }],
    ['/studies?PatientName=name123^given4', { level: 'study', keys: [{ tag: '00100010', value: 'name123^given4' }], limit: 101, offset: 0 }],
    ['/studies?PatientName=NAME12*', { level: 'study', keys: [{ tag: '00100010', value: 'NAME12*' }], limit: 101, offset: 0 }],
    ['/studies?PatientID=PID77', { level: 'study', keys: [{ tag: '00100020', value: 'PID77' }], limit: 101, offset: 0 }],
    ['/studies?StudyDate=20100101-20100131', { level: 'study', keys: [{ tag: '00080020', value: '20100101-20100131' }], limit: 101, offset: 0 }],
    ['/studies?AccessionNumber=ACC<mid>', { level: 'study', keys: [{ tag: '00080050', value: `ACC${mid}` }], limit: 101, offset: 0 }],
    ['/studies?StudyInstanceUID=<a>,<b>', { level: 'study', keys: [{ tag: '0020000D', value: `1.2.9.${mid},1.2.9.${mid + 1}` }], limit: 101, offset: 0 }],
    [
      '/studies?ModalitiesInStudy=SEG&StudyDate=2010*..',
      {
        level: 'study',
        keys: [
          { tag: '00080061', value: 'SEG' },
          { tag: '00080020', value: '20100101-20100131' },
        ],
        limit: 101,
        offset: 0,
      },
    ],
    ['/studies/<uid>/series', { level: 'series', keys: [], scope: { studyInstanceUid: `1.2.9.${mid}` }, limit: 1001, offset: 0 }],
    [
      '/studies/<uid>/series/<uid>/instances',
      {
        level: 'instance',
        keys: [],
        scope: { studyInstanceUid: `1.2.9.${mid}`, seriesInstanceUid: `1.2.9.${mid}.2` },
        instanceTags: [...DEFAULT_TAGS.instance],
        limit: 1001,
        offset: 0,
      },
    ],
    [
      '/studies/<uid>/instances',
      { level: 'instance', keys: [], scope: { studyInstanceUid: `1.2.9.${mid}` }, instanceTags: [...DEFAULT_TAGS.instance], limit: 1001, offset: 0 },
    ],
    [
      '/instances?SOPInstanceUID=<uid>',
      { level: 'instance', keys: [{ tag: '00080018', value: `1.2.9.${mid}.2.5` }], instanceTags: [...DEFAULT_TAGS.instance], limit: 101, offset: 0 },
    ],
    ['/series?Modality=SEG&limit=100', { level: 'series', keys: [{ tag: '00080060', value: 'SEG' }], limit: 101, offset: 0 }],
  ];
  for (const [label, q] of cases) {
    const { sql, params } = buildQidoQuery(q);
    const plan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) ${sql}`, params)).rows.map(
      (r) => r['QUERY PLAN'],
    );
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const s = performance.now();
      await db.query(sql, params);
      times.push(performance.now() - s);
    }
    times.sort((a, b) => a - b);
    const seq = plan.filter((l) => /Seq Scan on (study|series|instance)\b/.test(l));
    out(
      `${label.padEnd(52)} p50 ${times[10]!.toFixed(2)} ms  p95 ${times[18]!.toFixed(2)} ms  ${seq.length ? 'SEQ SCAN: ' + seq.join(' | ').trim() : 'index-backed'}`,
    );
    if (process.env['PLANS']) out(plan.map((l) => '    ' + l).join('\n'));
  }
} finally {
  await db.close();
  await tdb.drop();
}
