/**
 * Render latency per frame through the pixel pipeline (decode + LUTs + sharp encode), without HTTP and
 * database: one line per image file of the corpus, median of `runs` renderings of frame 1 to JPEG q90 at
 * native size. `node services/dicomweb/src/bench/render.ts [runs]`
 */
import { readFile } from 'node:fs/promises';
import { parseInstance } from '@portico/dicom';
import { pixelModuleFromJson, renderFrame } from '@portico/imaging';
import { corpusFiles } from '../test-support.ts';

const runs = Number(process.argv[2] ?? 9);
for (const f of await corpusFiles('ts', 'objects', 'series')) {
  const bytes = await readFile(f.path);
  const p = await parseInstance([bytes]).catch(() => undefined);
  const px = p?.pixelData;
  if (!p || !px || px.tag !== '7FE00010' || px.frames.length === 0 || !p.json['00280010']) continue;
  const frame = Buffer.concat(px.frames[0]!.map((r) => bytes.subarray(r.offset, r.offset + r.length)));
  const module = pixelModuleFromJson(p.json);
  const resolveBinary = async (path: string): Promise<Buffer> => {
    const r = p.bulkData[path];
    if (!r) throw new Error(`no bulk data ${path}`);
    return bytes.subarray(r.offset, r.offset + r.length);
  };
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await renderFrame(
      { transferSyntaxUid: p.transferSyntaxUid, module, json: p.json, frameNumber: 1, frame, resolveBinary },
      { mediaType: 'image/jpeg', quality: 90 },
    );
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  process.stdout.write(
    `${f.name.padEnd(52)} ${p.transferSyntaxUid.padEnd(24)} ${`${module.columns}x${module.rows}`.padEnd(10)} ${times[times.length >> 1]!.toFixed(1)} ms\n`,
  );
}
