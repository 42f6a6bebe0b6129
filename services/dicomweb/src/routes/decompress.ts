/**
 * WADO-RS retrieval with decompression to Explicit VR Little Endian (`transfer-syntax=1.2.840.10008.1.2.1`),
 * for instances (study, series, instance level) and for frames (`application/octet-stream`).
 *
 * One instance at a time: its header is read with one ranged read (up to Pixel Data), its frames one by one
 * as the socket drains, each decoded and written before the next is read. Each part carries an exact
 * Content-Length computed before its first byte (header length + Pixel Data length from the pixel module).
 * Instances already stored as Explicit VR Little Endian go out as stored.
 * @see PS3.18 §8.7.3.5.2, §10.4.1.1.2–3
 */
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { PorticoError } from '@portico/errors';
import { canDecompress, decodeFrame, decompressStored, EXPLICIT_VR_LITTLE_ENDIAN, pixelModuleFromJson, type DecompressedInstance } from '@portico/imaging';
import type { RouteDeps } from '../deps.ts';
import { multipartContentType } from '../media-types.ts';
import { closeDelimiter, newBoundary, partHead } from '../multipart.ts';
import { findPixelInstance, openObject, readFrame, type PixelInstance, type PixelScope } from '../pixels.ts';

export { canDecompress };

/** Largest stored object whose header is read whole (deflated data sets, objects without a pixel module). */
export async function decompressed(deps: RouteDeps, inst: PixelInstance): Promise<DecompressedInstance> {
  return decompressStored(deps.store, inst);
}

interface Row {
  sop_instance_uid: string;
  transfer_syntax_uid: string;
  object_key: string;
  object_size: string;
}

/** Instances of a retrieve, each as stored when already Explicit VR Little Endian, else decompressed. */
export async function sendDecompressedInstances(deps: RouteDeps, reply: FastifyReply, scope: PixelScope, rows: readonly Row[]): Promise<FastifyReply> {
  const boundary = newBoundary();
  const plan = async (row: Row): Promise<{ length: number; body: AsyncIterable<Uint8Array> }> => {
    if (row.transfer_syntax_uid === EXPLICIT_VR_LITTLE_ENDIAN)
      return { length: Number(row.object_size), body: (await openObject(deps.store, row.object_key)) as AsyncIterable<Buffer> };
    const inst = await findPixelInstance(deps, { study: scope.study, sop: row.sop_instance_uid, series: undefined });
    return decompressed(deps, inst);
  };
  // The first part is planned before answering, so that a failure is a proper status rather than a cut body.
  const first = await plan(rows[0]!);
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < rows.length; i++) {
      const part = i === 0 ? first : await plan(rows[i]!);
      yield partHead(boundary, i, { 'Content-Type': `application/dicom; transfer-syntax=${EXPLICIT_VR_LITTLE_ENDIAN}`, 'Content-Length': part.length });
      yield* part.body;
    }
    yield closeDelimiter(boundary, rows.length);
  }
  return reply
    .code(200)
    .type(multipartContentType('application/dicom', boundary))
    .send(Readable.from(body(), { objectMode: false }));
}

/** Frames decoded to native little-endian samples (interleaved), one part per frame. */
export async function sendDecodedFrames(
  deps: RouteDeps,
  reply: FastifyReply,
  scope: PixelScope,
  frames: readonly number[],
  type: string,
  partContentType: string,
): Promise<FastifyReply> {
  const inst = await findPixelInstance(deps, scope);
  const m = pixelModuleFromJson(inst.json);
  const frameSize = m.rows * m.columns * m.samplesPerPixel * Math.ceil(m.bitsAllocated / 8);
  if (m.bitsAllocated === 1) throw new PorticoError('NOT_ACCEPTABLE', '1-bit frames are served only from native little endian storage');
  const boundary = newBoundary();
  // Decode the first frame before answering: an undecodable codestream is a 406, not a cut body.
  const firstFrame = await decodeFrame(inst.transferSyntaxUid, m, await readFrame(deps.store, inst, frames[0]!));
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < frames.length; i++) {
      const d = i === 0 ? firstFrame : await decodeFrame(inst.transferSyntaxUid, m, await readFrame(deps.store, inst, frames[i]!));
      yield partHead(boundary, i, { 'Content-Type': partContentType, 'Content-Length': frameSize });
      yield d.data.subarray(0, frameSize);
    }
    yield closeDelimiter(boundary, frames.length);
  }
  return reply
    .code(200)
    .type(multipartContentType(type, boundary))
    .send(Readable.from(body(), { objectMode: false }));
}
