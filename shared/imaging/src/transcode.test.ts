/**
 * decompressInstance keeps every value's bytes: text stays in its Specific Character Set (dcmjs, used
 * before, rewrote it as UTF-8 under an ISO_IR 100/144 declaration).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileMetaInformation } from '@portico/dicom';
import { describe, expect, it } from 'vitest';
import { find, readDataset } from './raw-dataset.ts';
import { decompressInstance, EXPLICIT_VR_LITTLE_ENDIAN } from './transcode.ts';

const CORPUS = fileURLToPath(new URL('../../../../shared/dicom-corpus/', import.meta.url));
if (!existsSync(join(CORPUS, 'MANIFEST.tsv'))) throw new Error(`DICOM test corpus not found at ${CORPUS}; these tests do not skip.`);

function dataset(bytes: Buffer) {
  const meta = readFileMetaInformation(bytes);
  return readDataset(bytes.subarray(meta.datasetOffset), { explicitVr: meta.transferSyntaxUid !== '1.2.840.10008.1.2', littleEndian: true });
}

describe('decompressInstance header', () => {
  it.each(['charset/ISO_IR_100_french.dcm', 'charset/ISO_IR_144_cyrillic.dcm', 'charset/ISO_2022_IR_87_japanese.dcm', 'objects/PR_gsps_for_CR.dcm'])(
    '%s: names keep their bytes',
    async (file) => {
      const src = readFileSync(join(CORPUS, file));
      const ts = readFileMetaInformation(src).transferSyntaxUid;
      const out = decompressInstance({ transferSyntaxUid: ts, header: src, frameCount: 0, readFrame: () => Promise.resolve(new Uint8Array()) });
      const chunks: Uint8Array[] = [];
      for await (const c of out.body) chunks.push(c);
      const bytes = Buffer.concat(chunks);
      expect(bytes.length).toBe(out.length);
      expect(readFileMetaInformation(bytes).transferSyntaxUid).toBe(EXPLICIT_VR_LITTLE_ENDIAN);
      for (const tag of [0x00080005, 0x00100010]) expect(find(dataset(bytes), tag)?.value).toEqual(find(dataset(src), tag)?.value);
    },
  );
});
