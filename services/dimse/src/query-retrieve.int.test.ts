/**
 * C-FIND and C-MOVE SCP against dcmtk: instances go in over DIMSE (dcmsend), the real worker indexes
 * them in PostgreSQL; findscu queries the Patient Root and Study Root models (responses extracted to
 * files with `findscu -X` and read back with dcmdump, so what is checked is what went over the wire);
 * movescu retrieves to a dcmtk storescp named in a nodes file, whose files are compared byte for byte
 * with what was sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues, type JobWorkers } from '@portico/jobs';
import { migrate, openDb, type Db } from '@portico/db';
import { startWorker } from '@portico/worker';
import { corpusDir, corpusManifest, createTestDatabase, freePort, run, syntheticInstance, testUid } from '@portico/testing';
import { parseInstance } from '@portico/dicom';
import dimse from 'dcmjs-dimse';
import { startDimseServer, type DimseServer } from './scp.ts';
import { waitForRows } from './test-support.ts';

const log = createLogger({ service: 'c-find-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const env = { TCP_NODELAY: '1' };

const STUDIES = [
  { name: 'Doe^John', id: 'P2', date: '20210310', modality: 'MR' },
  { name: 'Doe^Jane', id: 'P3', date: '20221231', modality: 'CT' },
  { name: 'Roe^Richard', id: 'P4', date: '20190101', modality: 'CT' },
];
const SERIES_PER_STUDY = 2;
const INSTANCES_PER_SERIES = 3;
/** A fourth study with many instances, for paging and C-CANCEL. */
const BIG_STUDY_INSTANCES = 260;

const studyUid = (s: number): string => testUid('cfind-study', s);
const seriesUid = (s: number, se: number): string => testUid('cfind-series', `${s}.${se}`);

/** One response data set per file of `findscu -X`, as `tag → value` (dcmdump text values). */
type Answer = Record<string, string>;

/** Losslessly compressed corpus files (RLE, JPEG Lossless SV1) of the transfer-syntax folder, by category. */
const LOSSLESS = corpusManifest().filter(
  (r) => r['file']!.startsWith('ts/') && ['1.2.840.10008.1.2.5', '1.2.840.10008.1.2.4.70'].includes(r['transfer syntax UID']!),
);

/** The data set bytes of a Part-10 file (after the File Meta group). */
function datasetBytes(file: string): Buffer {
  const b = readFileSync(file);
  return b.subarray(144 + b.readUInt32LE(140));
}

describe('C-FIND and C-MOVE SCP with findscu and movescu', () => {
  let server: DimseServer;
  let db: Db;
  let queues: JobQueues;
  let workers: JobWorkers;
  let drop: () => Promise<void>;
  let storescp: ChildProcess;
  const work = mkdtempSync(path.join(tmpdir(), 'cfind-'));
  const received = path.join(work, 'received');
  const sentFiles = new Map<string, string>();

  async function find(model: '-P' | '-S', keys: string[], extra: string[] = []): Promise<{ answers: Answer[]; output: string }> {
    const out = mkdtempSync(path.join(work, 'rsp-'));
    const args = ['-v', model, '-aec', 'PORTICO', '-X', '-od', out, ...extra, '127.0.0.1', String(server.port)];
    for (const k of keys) args.push('-k', k);
    const r = await run('findscu', args, { env, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const answers: Answer[] = [];
    const files = readdirSync(out).sort();
    if (files.length > 0) {
      // One dcmdump for all files: each starts with a "# Dicom-File-Format" line.
      const dump = await run('dcmdump', ['+U8', '-q', ...files.map((f) => path.join(out, f))], { env });
      for (const line of dump.stdout.split('\n')) {
        if (line.startsWith('# Dicom-File-Format')) answers.push({});
        const m = /^\((\w{4}),(\w{4})\) \w\w (?:\(no value available\)|\[(.*?)\]|=?(\S+))/.exec(line);
        if (m && answers.length > 0) answers[answers.length - 1]![`${m[1]}${m[2]}`.toUpperCase()] = (m[3] ?? m[4] ?? '').trim();
      }
      expect(answers).toHaveLength(files.length);
    }
    rmSync(out, { recursive: true, force: true });
    return { answers, output: `${r.stdout}${r.stderr}` };
  }

  beforeAll(async () => {
    const testDb = await createTestDatabase();
    drop = testDb.drop;
    db = openDb(testDb.url, { poolSize: 6 });
    await migrate(db);
    const store = await openObjectStore({ kind: 'fs', root: mkdtempSync(path.join(tmpdir(), 'cfind-objects-')) });
    queues = await openJobQueues({ kind: 'postgres', url: testDb.url, schema: 'bullmq' }, log);
    workers = await startWorker({ db, store, queues, log, concurrency: 4 });
    const storescpPort = await freePort();
    const deadPort = await freePort();
    await import('node:fs/promises').then((fs) => fs.mkdir(received));
    storescp = spawn('storescp', ['-aet', 'STORESCP', '-od', received, '+B', String(storescpPort)], { env: { ...process.env, ...env }, stdio: 'ignore' });
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(
      nodesFile,
      `nodes:\n  - { aeTitle: STORESCP, host: 127.0.0.1, port: ${storescpPort} }\n  - { aeTitle: DOWN, host: 127.0.0.1, port: ${deadPort} }\n`,
    );
    const config = loadConfig({
      env: {},
      overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'dimse.nodesFile': nodesFile, 'dimse.scuTimeoutMs': 10_000, 'dimse.commitmentWaitMs': 500 },
    });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: true });

    const files = path.join(work, 'send');
    let n = 0;
    const write = (opts: Parameters<typeof syntheticInstance>[0]): void => {
      const file = path.join(files, `${String(n++).padStart(4, '0')}.dcm`);
      writeFileSync(file, syntheticInstance({ rows: 16, columns: 16, ...opts }));
      sentFiles.set(opts.sopInstanceUid, file);
    };
    await import('node:fs/promises').then((fs) => fs.mkdir(files));
    STUDIES.forEach((st, s) => {
      for (let se = 0; se < SERIES_PER_STUDY; se++)
        for (let i = 0; i < INSTANCES_PER_SERIES; i++)
          write({
            studyInstanceUid: studyUid(s),
            seriesInstanceUid: seriesUid(s, se),
            sopInstanceUid: testUid('cfind-sop', `${s}.${se}.${i}`),
            instanceNumber: i + 1,
            patientName: st.name,
            patientId: st.id,
            studyDate: st.date,
            modality: se === 1 ? 'SR' : st.modality,
          });
    });
    for (let i = 0; i < BIG_STUDY_INSTANCES; i++)
      write({
        studyInstanceUid: studyUid(99),
        seriesInstanceUid: seriesUid(99, 0),
        sopInstanceUid: testUid('cfind-sop', `99.${i}`),
        instanceNumber: i + 1,
        patientName: 'Big^Study',
        patientId: 'P99',
        studyDate: '20200101',
        modality: 'CT',
      });
    // Larger than a 16 KiB PDU: C-GET must cut what it sends to the requester's maximum.
    for (let i = 0; i < 2; i++)
      write({
        studyInstanceUid: studyUid(7),
        seriesInstanceUid: seriesUid(7, 0),
        sopInstanceUid: testUid('cfind-sop', `7.${i}`),
        patientName: 'Big^Pixels',
        patientId: 'BIG7',
        rows: 128,
        columns: 128,
      });
    const charset = path.join(corpusDir(), 'charset');
    const sent = await run(
      'dcmsend',
      ['-nh', '+sd', '+r', '127.0.0.1', String(server.port), files, charset, ...LOSSLESS.map((r) => path.join(corpusDir(), r['file']!)), '-aec', 'PORTICO'],
      {
        env,
        timeoutMs: 120_000,
      },
    );
    expect(sent.code, sent.stderr).toBe(0);
    // A file without a SOP Instance UID cannot be sent; the others are indexed once per UID.
    const charsetUids = new Set(
      corpusManifest()
        .filter((r) => r['file']!.startsWith('charset/') && r['SOP instance UID'])
        .map((r) => r['SOP instance UID']),
    );
    for (const r of LOSSLESS) charsetUids.add(r['SOP instance UID']);
    const expected = n + charsetUids.size;
    await waitForRows(db, 'instance', expected);
  });

  afterAll(async () => {
    storescp?.kill();
    await server?.close(1000);
    await workers?.close();
    await queues?.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('STUDY level (Study Root): case-insensitive wildcard name, return keys, computed attributes', async () => {
    const { answers } = await find('-S', [
      'QueryRetrieveLevel=STUDY',
      'PatientName=doe*',
      'PatientID',
      'StudyInstanceUID',
      'StudyDate',
      'AccessionNumber',
      'ModalitiesInStudy',
      'NumberOfStudyRelatedSeries',
      'NumberOfStudyRelatedInstances',
    ]);
    expect(answers.map((a) => a['00100020']).sort()).toEqual(['P2', 'P3']);
    const john = answers.find((a) => a['00100020'] === 'P2')!;
    expect(john).toMatchObject({
      '00080052': 'STUDY',
      '00080054': 'PORTICO',
      '00100010': 'Doe^John',
      '0020000D': studyUid(0),
      '00080020': '20210310',
      '00080050': '',
      '00080061': 'MR\\SR',
      '00201206': String(SERIES_PER_STUDY),
      '00201208': String(SERIES_PER_STUDY * INSTANCES_PER_SERIES),
    });
    // Only what was asked for (plus level and retrieve AE) comes back.
    expect(Object.keys(john).filter((t) => !t.startsWith('0002'))).not.toContain('00100040');
  });

  it('date ranges and UID lists', async () => {
    const range = await find('-S', ['QueryRetrieveLevel=STUDY', 'StudyDate=20200101-20211231', 'PatientID']);
    expect(range.answers.map((a) => a['00100020']).sort()).toEqual(['P2', 'P99']);
    // Corpus studies (compressed files sent for the conversion test) are older: an open range finds them too.
    const open = await find('-S', ['QueryRetrieveLevel=STUDY', 'StudyDate=20190101-20191231', 'PatientID']);
    expect(open.answers.map((a) => a['00100020'])).toEqual(['P4']);
    const before = await find('-S', ['QueryRetrieveLevel=STUDY', 'StudyDate=-20191231', 'PatientID']);
    expect(before.answers.map((a) => a['00100020'])).toContain('P4');
    expect(before.answers.map((a) => a['00100020'])).not.toContain('P2');
    const list = await find('-S', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid(0)}\\${studyUid(2)}`, 'PatientID']);
    expect(list.answers.map((a) => a['00100020']).sort()).toEqual(['P2', 'P4']);
  });

  it('SERIES and IMAGE levels under a study, with a key the index has no column for', async () => {
    const series = await find('-S', [
      'QueryRetrieveLevel=SERIES',
      `StudyInstanceUID=${studyUid(1)}`,
      'SeriesInstanceUID',
      'Modality',
      'NumberOfSeriesRelatedInstances',
    ]);
    expect(series.answers.map((a) => a['00080060']).sort()).toEqual(['CT', 'SR']);
    expect(series.answers.every((a) => a['00201209'] === String(INSTANCES_PER_SERIES))).toBe(true);
    const images = await find('-S', [
      'QueryRetrieveLevel=IMAGE',
      `StudyInstanceUID=${studyUid(1)}`,
      `SeriesInstanceUID=${seriesUid(1, 0)}`,
      'SOPInstanceUID',
      'InstanceNumber',
      'Rows=16',
    ]);
    expect(images.answers.map((a) => a['00200013']).sort()).toEqual(['1', '2', '3']);
    const none = await find('-S', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${studyUid(1)}`, 'Rows=512']);
    expect(none.answers).toEqual([]);
  });

  it('PATIENT level (Patient Root) with the patient counts', async () => {
    const { answers } = await find('-P', [
      'QueryRetrieveLevel=PATIENT',
      'PatientID=P?',
      'PatientName',
      'NumberOfPatientRelatedStudies',
      'NumberOfPatientRelatedInstances',
    ]);
    expect(answers.map((a) => a['00100020']).sort()).toEqual(['P2', 'P3', 'P4']);
    expect(answers.find((a) => a['00100020'] === 'P4')).toMatchObject({ '00100010': 'Roe^Richard', '00201200': '1', '00201204': '6' });
  });

  it('answers in UTF-8 with Specific Character Set ISO_IR 192, matching names without accents', async () => {
    const { answers } = await find('-S', ['QueryRetrieveLevel=STUDY', 'PatientName=BUC^JEROME', 'SpecificCharacterSet']);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ '00080005': 'ISO_IR 192', '00100010': 'Buc^Jérôme' });
  });

  it('streams a large result in pages and stops on C-CANCEL', async () => {
    const all = await find('-S', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${studyUid(99)}`, 'SOPInstanceUID']);
    expect(all.answers).toHaveLength(BIG_STUDY_INSTANCES);
    expect(new Set(all.answers.map((a) => a['00080018'])).size).toBe(BIG_STUDY_INSTANCES);
    const cancelled = await find('-S', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${studyUid(99)}`, 'SOPInstanceUID'], ['--cancel', '1']);
    expect(cancelled.output).toMatch(/Final Find Response \(Cancel/);
    expect(cancelled.answers.length).toBeLessThan(BIG_STUDY_INSTANCES);
  });

  it('refuses identifiers that do not fit the model with 0xA900', async () => {
    const patientInStudyRoot = await find('-S', ['QueryRetrieveLevel=PATIENT', 'PatientID']);
    expect(patientInStudyRoot.output).toMatch(/DataSetDoesNotMatchSOPClass|a900/i);
    const keyBelowLevel = await find('-S', ['QueryRetrieveLevel=STUDY', 'Modality=CT']);
    expect(keyBelowLevel.output).toMatch(/DataSetDoesNotMatchSOPClass|a900/i);
    expect(keyBelowLevel.answers).toEqual([]);
    const badDate = await find('-S', ['QueryRetrieveLevel=STUDY', 'StudyDate=2021-13-45x']);
    expect(badDate.output).toMatch(/DataSetDoesNotMatchSOPClass|a900/i);
  });

  /** movescu's output; its exit code is 0 only for a successful move (it exits 69 on a failure status). */
  async function move(keys: string[], destination = 'STORESCP', expectSuccess = true): Promise<string> {
    const args = ['-v', '-S', '-aec', 'PORTICO', '-aem', destination, '127.0.0.1', String(server.port)];
    for (const k of keys) args.push('-k', k);
    const r = await run('movescu', args, { env, timeoutMs: 120_000 });
    if (expectSuccess) expect(r.code, r.stderr).toBe(0);
    return `${r.stdout}${r.stderr}`;
  }
  const receivedNow = (): string[] => readdirSync(received).filter((f) => !f.startsWith('.'));

  it('C-MOVE of a study to storescp: every instance arrives with the data set bytes as sent', async () => {
    const before = new Set(receivedNow());
    const out = await move(['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid(2)}`]);
    expect(out).toMatch(/Final Move Response \(Success\)/);
    expect(out.match(/Move Response \d+ \(Pending\)/g)?.length).toBe(SERIES_PER_STUDY * INSTANCES_PER_SERIES - 1);
    const arrived = receivedNow().filter((f) => !before.has(f));
    expect(arrived).toHaveLength(SERIES_PER_STUDY * INSTANCES_PER_SERIES);
    for (const f of arrived) {
      const sop = f.replace(/^[A-Z]{2}\./, '');
      expect(datasetBytes(path.join(received, f)).equals(datasetBytes(sentFiles.get(sop)!)), f).toBe(true);
    }
  });

  it('C-MOVE at SERIES and IMAGE level (UID lists)', async () => {
    const before = receivedNow().length;
    await move(['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${studyUid(0)}`, `SeriesInstanceUID=${seriesUid(0, 1)}`]);
    expect(receivedNow().length - before).toBe(INSTANCES_PER_SERIES);
    const sops = [testUid('cfind-sop', '1.0.0'), testUid('cfind-sop', '1.1.2')];
    const out = await move(['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${studyUid(1)}`, `SOPInstanceUID=${sops.join('\\')}`]);
    expect(out).toMatch(/Final Move Response \(Success\)/);
    expect(receivedNow().filter((f) => sops.some((s) => f.endsWith(s)))).toHaveLength(2);
  });

  it('C-MOVE failures: unknown destination 0xA801, unreachable destination 0xA702, missing unique key 0xA900', async () => {
    expect(await move(['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid(0)}`], 'NOWHERE', false)).toMatch(/MoveDestinationUnknown|a801/i);
    const down = await move(['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${studyUid(0)}`], 'DOWN', false);
    expect(down).toMatch(/OutOfResourcesSubOperations|a702/i);
    expect(await move(['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${studyUid(0)}`], 'STORESCP', false)).toMatch(/DataSetDoesNotMatchSOPClass|a900/i);
  });

  it('C-GET of a series: the instances come back on the same association, data set bytes as sent', async () => {
    const out = mkdtempSync(path.join(work, 'get-'));
    const r = await run(
      'getscu',
      [
        '-v',
        '-S',
        '-aec',
        'PORTICO',
        '-od',
        out,
        '127.0.0.1',
        String(server.port),
        '-k',
        'QueryRetrieveLevel=SERIES',
        '-k',
        `StudyInstanceUID=${studyUid(2)}`,
        '-k',
        `SeriesInstanceUID=${seriesUid(2, 0)}`,
      ],
      { env, timeoutMs: 120_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/Received C-GET Response \(Success\)/);
    const got = readdirSync(out);
    expect(got).toHaveLength(INSTANCES_PER_SERIES);
    for (const f of got) expect(datasetBytes(path.join(out, f)).equals(datasetBytes(sentFiles.get(f.replace(/^[A-Z]{2}\./, ''))!)), f).toBe(true);
    const big = mkdtempSync(path.join(work, 'get-big-'));
    const r2 = await run(
      'getscu',
      ['-S', '-aec', 'PORTICO', '-od', big, '127.0.0.1', String(server.port), '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${studyUid(7)}`],
      { env },
    );
    expect(r2.code, r2.stderr).toBe(0);
    expect(readdirSync(big)).toHaveLength(2);
    for (const f of readdirSync(big)) expect(datasetBytes(path.join(big, f)).equals(datasetBytes(sentFiles.get(f.replace(/^[A-Z]{2}\./, ''))!)), f).toBe(true);
    const bad = await run(
      'getscu',
      ['-S', '-aec', 'PORTICO', '-od', out, '127.0.0.1', String(server.port), '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${studyUid(2)}`],
      { env },
    );
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/DataSetDoesNotMatchSOPClass|a900/i);
  });

  it('Storage Commitment: N-ACTION, then N-EVENT-REPORT on the same association, failures named', async () => {
    const { Client, Dataset } = dimse;
    const { NActionRequest } = dimse.requests;
    const { NEventReportResponse } = dimse.responses;
    const client = new Client();
    const stored = { cls: '1.2.840.10008.5.1.4.1.1.2', sop: testUid('cfind-sop', '0.0.0') };
    const missing = { cls: '1.2.840.10008.5.1.4.1.1.2', sop: testUid('never', 1) };
    const wrongClass = { cls: '1.2.840.10008.5.1.4.1.1.4', sop: testUid('cfind-sop', '0.0.1') };
    const request = new NActionRequest('1.2.840.10008.1.20.1', '1.2.840.10008.1.20.1.1', 1);
    request.setDataset(
      new Dataset(
        {
          TransactionUID: testUid('commit-tx', 1),
          ReferencedSOPSequence: [stored, missing, wrongClass].map((r) => ({ ReferencedSOPClassUID: r.cls, ReferencedSOPInstanceUID: r.sop })),
        },
        '1.2.840.10008.1.2',
      ),
    );
    let actionStatus: number | undefined;
    request.on('response', (r: { getStatus(): number }) => (actionStatus = r.getStatus()));
    client.addRequest(request);
    const report = new Promise<{ eventType: number; ds: Record<string, unknown> }>((resolve) => {
      client.on('nEventReportRequest', (req: InstanceType<typeof dimse.requests.NEventReportRequest>, callback: (r: unknown) => void) => {
        const response = NEventReportResponse.fromRequest(req);
        response.setStatus(0);
        callback(response);
        resolve({ eventType: req.getEventTypeId(), ds: req.getDataset()!.getElements() });
      });
    });
    client.send('127.0.0.1', server.port, 'COMMITSCU', 'PORTICO', { associationLingerTimeout: 5000 });
    const { eventType, ds } = await report;
    expect(actionStatus).toBe(0);
    expect(eventType).toBe(2);
    expect(ds['TransactionUID']).toBe(testUid('commit-tx', 1));
    const ok = ds['ReferencedSOPSequence'] as Array<Record<string, unknown>>;
    expect(ok.map((i) => i['ReferencedSOPInstanceUID'])).toEqual([stored.sop]);
    const failed = ds['FailedSOPSequence'] as Array<Record<string, unknown>>;
    expect(failed.map((i) => [i['ReferencedSOPInstanceUID'], i['FailureReason']])).toEqual([
      [missing.sop, 0x0112],
      [wrongClass.sop, 0x0119],
    ]);
  });

  it('C-MOVE converts to Explicit VR Little Endian only for a destination that accepts nothing else', async () => {
    expect(LOSSLESS.length).toBeGreaterThanOrEqual(2);
    const before = new Set(receivedNow());
    const uids = LOSSLESS.map((r) => r['SOP instance UID']!);
    const out = await move([
      'QueryRetrieveLevel=IMAGE',
      `StudyInstanceUID=${LOSSLESS.map((r) => r['study instance UID']).join('\\')}`,
      `SOPInstanceUID=${uids.join('\\')}`,
    ]);
    expect(out).toMatch(/Final Move Response \(Success\)/);
    const arrived = receivedNow().filter((f) => !before.has(f));
    expect(arrived).toHaveLength(LOSSLESS.length);
    for (const r of LOSSLESS) {
      const file = arrived.find((f) => f.endsWith(r['SOP instance UID']!))!;
      const got = await parseInstance([readFileSync(path.join(received, file))]);
      expect(got.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
      // dcmtk's own decompression of the original is the reference for the pixel bytes.
      const ref = path.join(work, `ref-${r['SOP instance UID']}.dcm`);
      const tool = r['transfer syntax UID'] === '1.2.840.10008.1.2.5' ? 'dcmdrle' : 'dcmdjpeg';
      expect((await run(tool, ['+te', path.join(corpusDir(), r['file']!), ref], { env })).code).toBe(0);
      const pixels = (f: string, parsed: Awaited<ReturnType<typeof parseInstance>>): Buffer => {
        const b = readFileSync(f);
        return Buffer.concat(parsed.pixelData!.frames.flatMap((fr) => fr.map((x) => b.subarray(x.offset, x.offset + x.length))));
      };
      const refParsed = await parseInstance([readFileSync(ref)]);
      expect(pixels(path.join(received, file), got).equals(pixels(ref, refParsed)), r['file']).toBe(true);
    }
  });

  it('C-GET converts for a requester that proposes uncompressed syntaxes only', async () => {
    const out = mkdtempSync(path.join(work, 'get-conv-'));
    const args = ['-S', '-aec', 'PORTICO', '-od', out, '127.0.0.1', String(server.port), '-k', 'QueryRetrieveLevel=IMAGE'];
    args.push(
      '-k',
      `StudyInstanceUID=${LOSSLESS.map((r) => r['study instance UID']).join('\\')}`,
      '-k',
      `SOPInstanceUID=${LOSSLESS.map((r) => r['SOP instance UID']).join('\\')}`,
    );
    const r = await run('getscu', args, { env, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const got = readdirSync(out);
    expect(got).toHaveLength(LOSSLESS.length);
    for (const f of got) expect((await parseInstance([readFileSync(path.join(out, f))])).transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
  });
});
