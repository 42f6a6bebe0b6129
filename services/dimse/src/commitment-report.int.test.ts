/**
 * The DIMSE SCP receiving storage commitment reports (N-EVENT-REPORT, PS3.4 J.3.3) for requests the
 * export role made, on the wire with dcmjs-dimse as the reporting destination: recorded by Transaction
 * UID only from the destination's AE, and malformed reports answered with the PS3.7 status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dimse from 'dcmjs-dimse';
import { loadConfig } from '@portico/config';
import { createLogger } from '@portico/logging';
import { openObjectStore } from '@portico/storage';
import { openJobQueues, type JobQueues } from '@portico/jobs';
import { listExports, markCommitmentRequested, migrate, openDb, planExports, type Db } from '@portico/db';
import { createTestDatabase, testUid } from '@portico/testing';
import { startDimseServer, type DimseServer } from './scp.ts';
import { STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH } from './commitment.ts';

const log = createLogger({ service: 'commitment-report-test', level: process.env['PORTICO_TEST_LOG_LEVEL'] ?? 'silent' });
const CT = '1.2.840.10008.5.1.4.1.1.2';
const { Client, Dataset } = dimse;
const { NEventReportRequest } = dimse.requests;

describe('storage commitment reports received by the DIMSE SCP', () => {
  let db: Db;
  let queues: JobQueues;
  let server: DimseServer;
  let drop: () => Promise<void>;
  const work = mkdtempSync(path.join(tmpdir(), 'commitment-report-'));

  /** Sends N-EVENT-REPORTs on one association as `callingAe`; resolves with each response status. */
  async function report(callingAe: string, reports: Array<{ eventType: number; dataset: Record<string, unknown> }>): Promise<number[]> {
    const client = new Client();
    const statuses = reports.map((r) => {
      const request = new NEventReportRequest(STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE, r.eventType);
      request.setDataset(new Dataset(r.dataset, '1.2.840.10008.1.2'));
      client.addRequest(request);
      return new Promise<number>((resolve) => request.on('response', (rsp: { getStatus(): number }) => resolve(rsp.getStatus())));
    });
    const closed = new Promise<void>((resolve, reject) => {
      client.on('closed', () => resolve());
      client.on('associationRejected', () => reject(new Error('association rejected')));
      client.on('networkError', (err: Error) => reject(err));
    });
    client.send('127.0.0.1', server.port, callingAe, 'PORTICO');
    const out = await Promise.all(statuses);
    await closed;
    return out;
  }

  /** A delivered export row to PACS with commitment requested under a new transaction. */
  async function requested(name: string): Promise<{ transactionUid: string; sop: string }> {
    const sop = testUid('report-sop', name);
    const [ref] = await planExports(db, { sopInstanceUid: sop, studyInstanceUid: testUid('report-study', name), receivedAt: new Date() }, [
      { destination: 'PACS', rule: 'test', mutations: [] },
    ]);
    await db.query(`UPDATE export_request SET status = 'delivered', delivered_at = now() WHERE export_pk = $1`, [ref!.exportPk]);
    const transactionUid = testUid('report-tx', name);
    expect(await markCommitmentRequested(db, transactionUid, [ref!])).toEqual([sop]);
    return { transactionUid, sop };
  }
  const commitment = async (sop: string): Promise<{ status: string; commitmentStatus: string | null; commitmentError: string | null; generation: number }> =>
    (await listExports(db, { sopInstanceUid: sop }, { limit: 1 }))[0]!;

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    db = openDb(t.url, { poolSize: 4 });
    await migrate(db);
    const store = await openObjectStore({ kind: 'fs', root: path.join(work, 'objects') });
    queues = await openJobQueues({ kind: 'postgres', url: t.url, schema: 'bullmq' }, log);
    const nodesFile = path.join(work, 'nodes.yml');
    writeFileSync(nodesFile, 'nodes:\n  - { aeTitle: PACS, host: 127.0.0.1, port: 104 }\n  - { aeTitle: OTHER, host: 127.0.0.1, port: 105 }\n');
    const config = loadConfig({
      env: {},
      overrides: { 'dimse.port': 0, 'dimse.host': '127.0.0.1', 'dimse.nodesFile': nodesFile, 'export.commitmentMaxResends': 1 },
    });
    server = await startDimseServer({ config, log, store, queues, db, allowUnknownAe: false });
  });

  afterAll(async () => {
    await server?.close(1000);
    await queues?.close();
    await db?.close();
    await drop?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('records committed from the destination, ignores the same report from another AE', async () => {
    const a = await requested('a');
    const body = { TransactionUID: a.transactionUid, ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: a.sop }] };
    expect(await report('OTHER', [{ eventType: 1, dataset: body }])).toEqual([0x0000]);
    expect((await commitment(a.sop)).commitmentStatus).toBe('requested');
    expect(await report('PACS', [{ eventType: 1, dataset: body }])).toEqual([0x0000]);
    expect(await commitment(a.sop)).toMatchObject({ status: 'delivered', commitmentStatus: 'committed', commitmentError: null });
  });

  it('records a failure with its reason and queues the delivery again (a new generation)', async () => {
    const b = await requested('b');
    const body = {
      TransactionUID: b.transactionUid,
      FailedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: b.sop, FailureReason: 0x0112 }],
    };
    expect(await report('PACS', [{ eventType: 2, dataset: body }])).toEqual([0x0000]);
    expect(await commitment(b.sop)).toMatchObject({
      status: 'queued',
      generation: 2,
      commitmentStatus: 'failed',
      commitmentError: 'storage commitment failed: Failure Reason 0x0112',
    });
  });

  it('answers malformed reports with the PS3.7 status and records nothing', async () => {
    const c = await requested('c');
    const statuses = await report('PACS', [
      // Event types of the Push Model are 1 and 2 only (PS3.4 Table J.3-2): no such event type.
      { eventType: 7, dataset: { TransactionUID: c.transactionUid } },
      // No Transaction UID: invalid argument value.
      { eventType: 1, dataset: { ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: c.sop }] } },
      // A transaction nobody asked for: answered success, nothing to record.
      {
        eventType: 1,
        dataset: { TransactionUID: testUid('report-tx', 'unknown'), ReferencedSOPSequence: [{ ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: c.sop }] },
      },
    ]);
    expect(statuses).toEqual([0x0113, 0x0115, 0x0000]);
    expect((await commitment(c.sop)).commitmentStatus).toBe('requested');
  });
});
