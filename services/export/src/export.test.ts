/** Pure logic of the export role: what is proposed to a destination, how its statuses read, the backoff. */
import { describe, expect, it } from 'vitest';
import { parseNodesFile } from '@portico/config';
import { exportJobId, exportQueueName } from '@portico/jobs';
import { proposalsFor } from './dimse-sender.ts';
import { classifyStoreStatus } from './outcome.ts';
import { backoffDelay } from './deliver.ts';

const ELE = '1.2.840.10008.1.2.1';
const ILE = '1.2.840.10008.1.2';
const J2K = '1.2.840.10008.1.2.4.90';
const RLE = '1.2.840.10008.1.2.5';

describe('proposalsFor', () => {
  const image = { storedTransferSyntaxUid: RLE, hasPixelData: true };
  it.each([
    ['as stored, then uncompressed', { ...image }, {}, [RLE, ELE, ILE]],
    ['the route syntax replaces the stored one', { ...image, transferSyntaxUid: J2K }, {}, [J2K, ELE, ILE]],
    ['a non-image ignores the route syntax', { storedTransferSyntaxUid: ELE, hasPixelData: false, transferSyntaxUid: J2K }, {}, [ELE, ILE]],
    ['the preferred syntax comes before the uncompressed ones', { ...image }, { preferredTransferSyntax: J2K }, [RLE, J2K, ELE, ILE]],
    ['limited to what the destination accepts', { ...image, transferSyntaxUid: J2K }, { transferSyntaxes: [ELE] }, [ELE]],
    ['nothing in common: whatever the destination accepts', { ...image }, { transferSyntaxes: ['1.2.840.10008.1.2.4.80'] }, ['1.2.840.10008.1.2.4.80']],
  ])('%s', (_name, item, node, expected) => {
    expect(proposalsFor(item, node)).toEqual(expected);
  });
});

describe('classifyStoreStatus', () => {
  it.each([
    [0x0000, 'delivered'],
    [0xb000, 'delivered'],
    [0xb007, 'delivered'],
    [0xa700, 'failed'],
    [0xa7ff, 'failed'],
    [0x0110, 'failed'],
    [0x0122, 'refused'],
    [0xa900, 'refused'],
    [0xc123, 'refused'],
  ])('status 0x%s is %s', (status, outcome) => {
    expect(classifyStoreStatus(status).outcome).toBe(outcome);
  });
  it('keeps the comment and the warning', () => {
    expect(classifyStoreStatus(0xb000, 'coerced').detail).toBe('warning 0xB000: coerced');
    expect(classifyStoreStatus(0xa700).detail).toBe('failed with status 0xA700');
  });
});

describe('backoffDelay', () => {
  it('doubles per attempt, with up to half taken off as jitter', () => {
    for (let n = 1; n <= 6; n++) {
      const full = 1000 * 2 ** (n - 1);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(n, 1000);
        expect(d).toBeGreaterThanOrEqual(full / 2);
        expect(d).toBeLessThanOrEqual(full);
      }
    }
  });
});

describe('queue names and job ids', () => {
  it('never contain ":" (BullMQ key separator), whatever the destination name', () => {
    for (const name of ['PACS', 'MY PACS', 'a:b', 'x/y']) expect(exportQueueName(name)).not.toContain(':');
    expect(exportJobId({ exportPk: '12', generation: 3 })).toBe('export-12-3');
  });
});

describe('nodes file: export destinations', () => {
  it('reads DIMSE export settings and DICOMweb destinations with their defaults', () => {
    const f = parseNodesFile(
      [
        'nodes:',
        '  - { aeTitle: PACS, host: h, port: 104, transferSyntaxes: [1.2.840.10008.1.2.4.90], maxAssociations: 2, impersonate: true }',
        'dicomweb:',
        '  - { name: CLOUD, url: "https://example.org/dicom-web/studies", bearerToken: t }',
      ].join('\n'),
    );
    expect(f.nodes[0]).toMatchObject({ aeTitle: 'PACS', maxAssociations: 2, impersonate: true, batchSize: 100 });
    expect(f.dicomweb[0]).toMatchObject({ name: 'CLOUD', batchSize: 20, maxAssociations: 1, timeoutMs: 60000 });
  });
  it.each([
    ['a name used twice', 'nodes:\n  - { aeTitle: X, host: h, port: 1 }\ndicomweb:\n  - { name: X, url: "http://h/s" }', /X is listed twice/],
    ['both kinds of credentials', 'dicomweb:\n  - { name: C, url: "http://h/s", bearerToken: a, authorization: b }', /not both/],
    ['a URL that is not http', 'dicomweb:\n  - { name: C, url: "ftp://h/s" }', /url/],
    ['an unknown field', 'nodes:\n  - { aeTitle: X, host: h, port: 1, speed: 3 }', /speed|Unrecognized/],
    ['a bad transfer syntax', 'nodes:\n  - { aeTitle: X, host: h, port: 1, transferSyntaxes: [jpeg] }', /transfer syntax UID/],
  ])('refuses %s', (_name, text, message) => {
    expect(() => parseNodesFile(text, 'nodes.yml')).toThrow(message);
  });
});
