/**
 * transformInstance on the real corpus: every lossless target decodes to the source's pixels (through our
 * decoders and, where installed, through dcmtk/GDCM, which are independent of dcmjs-codecs), lossy targets
 * are flagged, every corpus category is covered by a table test, mutations reach sequences, character sets
 * survive.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { createCharsetDecoder, readFileMetaInformation, TRANSFER_SYNTAX } from '@portico/dicom';
import { PorticoError } from '@portico/errors';
import { afterAll, describe, expect, it } from 'vitest';
import { decodedPhotometric, decodeFrame, NATIVE_TRANSFER_SYNTAXES } from './codecs.ts';
import type { PixelModule } from './pixel-module.ts';
import { find, readDataset, text, us, type RawElement } from './raw-dataset.ts';
import { canTransform, encapsulatedFrames, transformInstance } from './transform.ts';

const CORPUS = fileURLToPath(new URL('../../../../shared/dicom-corpus/', import.meta.url));
if (!existsSync(join(CORPUS, 'MANIFEST.tsv'))) {
  throw new Error(
    `DICOM test corpus not found at ${CORPUS} (expected ../shared/dicom-corpus beside the repository, with MANIFEST.tsv). These tests do not skip.`,
  );
}
const manifest = readFileSync(join(CORPUS, 'MANIFEST.tsv'), 'utf8')
  .split('\n')
  .slice(1)
  .filter(Boolean)
  .map((line) => {
    const f = line.split('\t');
    return { file: f[0]!, ts: f[4]!, sopInstanceUid: f[12]! };
  });
const corpus = (file: string): Buffer => readFileSync(join(CORPUS, file));

const tmp = mkdtempSync(join(tmpdir(), 'portico-transform-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let tmpN = 0;

function which(tool: string): boolean {
  try {
    execFileSync('which', [tool], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const HAVE = Object.fromEntries(['dcmdump', 'dcmdjpeg', 'dcmdrle', 'dcmdjpls', 'gdcmconv'].map((t) => [t, which(t)]));

const TS = {
  implicit: TRANSFER_SYNTAX.ImplicitVRLittleEndian,
  explicit: TRANSFER_SYNTAX.ExplicitVRLittleEndian,
  deflated: TRANSFER_SYNTAX.DeflatedExplicitVRLittleEndian,
  rle: '1.2.840.10008.1.2.5',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
  jpegLossless: '1.2.840.10008.1.2.4.70',
  jlsLossless: '1.2.840.10008.1.2.4.80',
  jlsNear: '1.2.840.10008.1.2.4.81',
  j2kLossless: '1.2.840.10008.1.2.4.90',
  j2k: '1.2.840.10008.1.2.4.91',
  htj2kLossless: '1.2.840.10008.1.2.4.201',
  htj2kRpcl: '1.2.840.10008.1.2.4.202',
  htj2k: '1.2.840.10008.1.2.4.203',
} as const;

interface Decoded {
  ts: string;
  ds: RawElement[];
  module: PixelModule;
  photometric: string;
  /** decoded frames, interleaved, samples masked to Bits Stored */
  frames: Uint8Array[];
}

/** Decodes a Part-10 file's frames independently of transformInstance's own plumbing (but with the same decoders). */
async function decodeInstance(bytes: Buffer): Promise<Decoded> {
  const meta = readFileMetaInformation(bytes);
  const ts = meta.transferSyntaxUid;
  let body = bytes.subarray(meta.datasetOffset);
  if (ts === TS.deflated) body = inflateRawSync(body);
  const ds = readDataset(body, { explicitVr: ts !== TS.implicit, littleEndian: ts !== TRANSFER_SYNTAX.ExplicitVRBigEndian });
  const m: PixelModule = {
    rows: us(find(ds, 0x00280010))!,
    columns: us(find(ds, 0x00280011))!,
    bitsAllocated: us(find(ds, 0x00280100))!,
    bitsStored: us(find(ds, 0x00280101))!,
    highBit: us(find(ds, 0x00280102))!,
    samplesPerPixel: us(find(ds, 0x00280002)) ?? 1,
    pixelRepresentation: us(find(ds, 0x00280103)) ?? 0,
    photometricInterpretation: text(find(ds, 0x00280004))!.trim(),
    planarConfiguration: us(find(ds, 0x00280006)) ?? 0,
    numberOfFrames: Number(text(find(ds, 0x00280008)) ?? '1') || 1,
  };
  const px = find(ds, 0x7fe00010)!;
  const size = m.rows * m.columns * m.samplesPerPixel * (m.bitsAllocated / 8);
  const native = NATIVE_TRANSFER_SYNTAXES.has(ts);
  const raw = native
    ? Array.from({ length: Math.min(m.numberOfFrames, Math.floor(px.value!.length / size)) }, (_, i) => px.value!.subarray(i * size, (i + 1) * size))
    : encapsulatedFrames(px.fragments!, m.numberOfFrames, ts);
  const frames: Uint8Array[] = [];
  for (const f of raw) {
    let data: Uint8Array = f;
    let planar = m.planarConfiguration;
    if (!native) {
      const d = await decodeFrame(ts, m, f);
      data = d.data.subarray(0, size);
      planar = d.planarConfiguration;
    }
    if (m.samplesPerPixel === 3 && planar === 1) data = interleave(data, m);
    frames.push(mask(data, m));
  }
  return {
    ts,
    ds,
    module: m,
    photometric: native ? m.photometricInterpretation : decodedPhotometric(ts, m.photometricInterpretation, m.samplesPerPixel),
    frames,
  };
}

function interleave(data: Uint8Array, m: PixelModule): Uint8Array {
  const b = m.bitsAllocated / 8;
  const n = m.rows * m.columns;
  const out = new Uint8Array(data.length);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) for (let k = 0; k < b; k++) out[(p * 3 + c) * b + k] = data[(c * n + p) * b + k]!;
  return out;
}

function mask(data: Uint8Array, m: PixelModule): Uint8Array {
  if (m.bitsStored >= m.bitsAllocated) return data;
  const out = new Uint8Array(data);
  const bits = (1 << m.bitsStored) - 1;
  if (m.bitsAllocated === 8) for (let i = 0; i < out.length; i++) out[i]! &= bits;
  else if (m.bitsAllocated === 16) {
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    for (let i = 0; i + 1 < out.length; i += 2) view.setUint16(i, view.getUint16(i, true) & bits, true);
  }
  return out;
}

function samePixels(a: Decoded, b: Decoded): void {
  expect(b.frames.length).toBe(a.frames.length);
  a.frames.forEach((f, i) => {
    const g = b.frames[i]!;
    expect(g.length).toBe(f.length);
    // Buffer.equals: a failure message of a few bytes, not a 1 MB array diff
    expect(Buffer.from(g).equals(Buffer.from(f)), `frame ${i + 1} differs`).toBe(true);
  });
}

function writeTmp(bytes: Buffer): string {
  const p = join(tmp, `f${tmpN++}.dcm`);
  writeFileSync(p, bytes);
  return p;
}

function dcmdump(path: string): string {
  return execFileSync('dcmdump', ['-q', '+L', path], { encoding: 'latin1', maxBuffer: 64 << 20 });
}

/** The tool that decodes a syntax to native independently of dcmjs-codecs. */
function externalDecoder(ts: string): [string, (i: string, o: string) => string[]] | undefined {
  if (ts === TS.rle) return HAVE.dcmdrle ? ['dcmdrle', (i, o) => [i, o]] : undefined;
  if (ts === TS.jpegBaseline || ts === TS.jpegLossless) return HAVE.dcmdjpeg ? ['dcmdjpeg', (i, o) => [i, o]] : undefined;
  if (ts === TS.jlsLossless || ts === TS.jlsNear) return HAVE.dcmdjpls ? ['dcmdjpls', (i, o) => [i, o]] : undefined;
  if (ts === TS.j2kLossless || ts === TS.j2k) return HAVE.gdcmconv ? ['gdcmconv', (i, o) => ['--raw', i, o]] : undefined;
  return undefined;
}

async function externallyDecoded(bytes: Buffer, ts: string): Promise<Decoded | undefined> {
  const tool = externalDecoder(ts);
  if (!tool) return undefined;
  const input = writeTmp(bytes);
  const output = `${input}.raw.dcm`;
  execFileSync(tool[0], tool[1](input, output), { stdio: 'pipe' });
  return decodeInstance(readFileSync(output));
}

function lossyFlags(ds: RawElement[]): { flag?: string | undefined; method?: string | undefined; ratio?: string | undefined } {
  return { flag: text(find(ds, 0x00282110)), method: text(find(ds, 0x00282114)), ratio: text(find(ds, 0x00282112)) };
}

async function rejection(p: Promise<unknown>): Promise<PorticoError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PorticoError);
  return err as PorticoError;
}

const LOSSLESS_TARGETS = [TS.implicit, TS.explicit, TS.deflated, TS.rle, TS.jpegLossless, TS.jlsLossless, TS.j2kLossless, TS.htj2kLossless, TS.htj2kRpcl];

/** Sources spanning the stored syntaxes and pixel formats (category: what it exercises). */
const SOURCES = [
  'objects/CT_small.dcm', // native 16-bit signed grey
  'ts/explicit-be_MR_small_bigendian.dcm', // big endian
  'ts/deflate_image_dfl.dcm', // deflated
  'ts/jpeg-ls-lossless_signed15bit.dcm', // signed 15-bit in JPEG-LS
  'ts/j2k-lossless_US1_J2KR_YBR_RCT.dcm', // colour JPEG 2000 (YBR_RCT)
  'ts/j2k-lossless_emri_small_10frames.dcm', // encapsulated multi-frame
  'objects/US_multiframe_palette_rle_10frames.dcm', // RLE, palette, multi-frame
  'objects/US_rgb_planar_esopecho.dcm', // native RGB
  'objects/US_YBR_FULL_native.dcm', // native YBR_FULL
  'ts/jpeg-lossless-sv1_MR_dcm4che.dcm', // Bits Allocated 16, Bits Stored 8
  'ts/htj2k-lossless_RGB.dcm', // HTJ2K colour
  'objects/MR_enhanced_bruker_4frames.dcm', // native multi-frame
  'ts/jpeg-baseline_US_YBR422_philips.dcm', // lossy JPEG YBR_FULL_422 source
  'ts/rle_NM1_RLE.dcm', // RLE 16-bit
];

describe('canTransform', () => {
  it('knows what is decoded and what is encoded', () => {
    expect(canTransform(TS.explicit, TS.j2kLossless)).toBe(true);
    expect(canTransform('1.2.840.10008.1.2.4.57', TS.htj2k)).toBe(true);
    expect(canTransform(TS.explicit, '1.2.840.10008.1.2.4.51')).toBe(false);
    expect(canTransform(TS.explicit, '1.2.840.10008.1.2.4.57')).toBe(false);
    expect(canTransform(TS.explicit, TRANSFER_SYNTAX.ExplicitVRBigEndian)).toBe(false);
    expect(canTransform('1.2.840.10008.1.2.4.100', TS.explicit)).toBe(false);
    expect(canTransform('1.2.840.10008.1.2.4.100', '1.2.840.10008.1.2.4.100')).toBe(true);
  });
});

describe('lossless targets decode to the source pixels', () => {
  const cases = SOURCES.flatMap((file) => LOSSLESS_TARGETS.map((target) => [file, target] as const));
  it.each(cases)('%s → %s', async (file, target) => {
    const src = corpus(file);
    const source = await decodeInstance(src);
    const refused = source.photometric === 'YBR_FULL' && ([TS.htj2kLossless, TS.htj2kRpcl, TS.jpegLossless] as string[]).includes(target);
    if (refused) {
      const err = await rejection(transformInstance(src, { transferSyntaxUid: target }));
      expect(err.code).toBe('NOT_ACCEPTABLE');
      expect(err.message).toMatch(/YBR_FULL cannot be (HTJ2K|JPEG) lossless/);
      return;
    }
    const out = await transformInstance(src, { transferSyntaxUid: target });
    expect(out.transferSyntaxUid).toBe(target);
    expect(readFileMetaInformation(out.bytes).transferSyntaxUid).toBe(target);
    expect(out.sopInstanceUid).toBe(text(find(source.ds, 0x00080018)));
    const result = await decodeInstance(out.bytes);
    expect(result.photometric).toBe(source.photometric);
    samePixels(source, result);
    // a lossy source stays flagged
    if (source.ts === TS.jpegBaseline) expect(lossyFlags(result.ds).flag).toBe('01');
    else expect(lossyFlags(result.ds).method).toBe(lossyFlags(source.ds).method);
    if (NATIVE_TRANSFER_SYNTAXES.has(target)) expect(find(result.ds, 0x7fe00010)!.fragments).toBeUndefined();
    else if (target !== source.ts) {
      // one fragment per frame, and a Basic Offset Table when there is more than one frame
      const px = find(result.ds, 0x7fe00010)!;
      expect(px.fragments!.length).toBe(result.frames.length + 1);
      expect(px.fragments![0]!.length).toBe(result.frames.length > 1 ? 4 * result.frames.length : 0);
    }
    if (target === TS.rle && source.module.samplesPerPixel === 3) expect(us(find(result.ds, 0x00280006))).toBe(1);
    if (HAVE.dcmdump) expect(() => dcmdump(writeTmp(out.bytes))).not.toThrow();
    const ext = await externallyDecoded(out.bytes, target);
    if (ext) samePixels(source, ext);
  });
});

describe('lossy targets', () => {
  const cases: Array<[string, string, string]> = [
    ['objects/CT_small.dcm', TS.j2k, 'ISO_15444_1'],
    ['objects/CT_small.dcm', TS.htj2k, 'ISO_15444_15'],
    ['objects/CT_small.dcm', TS.jlsNear, 'ISO_14495_1'],
    ['objects/SC_rgb.dcm', TS.jpegBaseline, 'ISO_10918_1'],
    ['objects/SC_rgb.dcm', TS.j2k, 'ISO_15444_1'],
    ['objects/SC_rgb.dcm', TS.htj2k, 'ISO_15444_15'],
    ['objects/SC_rgb.dcm', TS.jlsNear, 'ISO_14495_1'],
    ['objects/US_YBR_FULL_native.dcm', TS.jpegBaseline, 'ISO_10918_1'],
    ['objects/US_multiframe_jpeg_30frames.dcm', TS.j2k, 'ISO_15444_1'],
    ['ts/j2k-lossy_CT1_J2KI.dcm', TS.jpegLossless, ''],
  ];
  it.each(cases)('%s → %s is flagged lossy', async (file, target, method) => {
    const source = await decodeInstance(corpus(file));
    const out = await transformInstance(corpus(file), { transferSyntaxUid: target });
    const result = await decodeInstance(out.bytes);
    expect(result.module.rows).toBe(source.module.rows);
    expect(result.module.columns).toBe(source.module.columns);
    expect(result.frames.length).toBe(source.frames.length);
    expect(result.frames[0]!.length).toBe(source.frames[0]!.length);
    const flags = lossyFlags(result.ds);
    expect(flags.flag).toBe('01');
    if (method) {
      expect(flags.method?.split('\\').at(-1)).toBe(method);
      expect(Number(flags.ratio?.split('\\').at(-1))).toBeGreaterThan(1);
    }
    if (source.module.samplesPerPixel === 3) {
      const expected = target === TS.jpegBaseline ? 'YBR_FULL_422' : target === TS.jlsNear ? source.photometric : 'YBR_ICT';
      expect(text(find(result.ds, 0x00280004))).toBe(expected);
    }
    if (HAVE.dcmdump) expect(() => dcmdump(writeTmp(out.bytes))).not.toThrow();
    const ext = await externallyDecoded(out.bytes, target);
    if (ext) expect(ext.frames[0]!.length).toBe(source.frames[0]!.length);
  });

  it('refuses what cannot be encoded, with the reason', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['objects/CT_small.dcm', TS.jpegBaseline, /JPEG baseline takes 8-bit samples/],
      ['objects/US_palette_color.dcm', TS.j2k, /PALETTE COLOR indices cannot be compressed lossily/],
      ['objects/SEG_liver_3frames.dcm', TS.rle, /1-bit pixel data/],
      ['objects/RTDOSE_15frames.dcm', TS.j2kLossless, /Bits Allocated 32/],
      ['objects/CT_small.dcm', '1.2.840.10008.1.2.4.51', /not produced here/],
      ['objects/CT_small.dcm', TRANSFER_SYNTAX.ExplicitVRBigEndian, /Big Endian/],
    ];
    for (const [file, target, reason] of cases) {
      const err = await rejection(transformInstance(corpus(file), { transferSyntaxUid: target }));
      expect(err.code, file).toBe('NOT_ACCEPTABLE');
      expect(err.message).toMatch(reason);
    }
  });
});

describe('JPEG 2000 output read by GDCM', () => {
  it.skipIf(!HAVE.gdcmconv)('gdcmconv --raw of a .90 multi-frame result equals the source pixels', async () => {
    const file = 'objects/MR_enhanced_bruker_4frames.dcm';
    const out = await transformInstance(corpus(file), { transferSyntaxUid: TS.j2kLossless });
    samePixels(await decodeInstance(corpus(file)), (await externallyDecoded(out.bytes, TS.j2kLossless))!);
  });
});

describe('instances without pixels', () => {
  it.each(['objects/SR_basic_text.dcm', 'objects/PDF_encapsulated.dcm', 'objects/RTSTRUCT_lung.dcm'])(
    '%s asked for JPEG 2000 goes out as Explicit VR Little Endian and says so',
    async (file) => {
      const out = await transformInstance(corpus(file), { transferSyntaxUid: TS.j2k });
      expect(out.transferSyntaxUid).toBe(TS.explicit);
      expect(out.fallback).toMatch(/without image pixel data/);
      expect(readFileMetaInformation(out.bytes).transferSyntaxUid).toBe(TS.explicit);
      if (HAVE.dcmdump) expect(dcmdump(writeTmp(out.bytes))).toContain('=LittleEndianExplicit');
    },
  );
  it('go out in Implicit VR Little Endian when asked', async () => {
    const out = await transformInstance(corpus('objects/SR_basic_text.dcm'), { transferSyntaxUid: TS.implicit });
    expect(out.fallback).toBeUndefined();
    expect(readFileMetaInformation(out.bytes).transferSyntaxUid).toBe(TS.implicit);
    if (HAVE.dcmdump) expect(dcmdump(writeTmp(out.bytes))).toContain('Enter text');
  });
});

describe('no transform asked', () => {
  it('returns the same bytes', async () => {
    const src = corpus('ts/j2k-lossless_NM1_J2KR.dcm');
    const out = await transformInstance(src, {});
    expect(out.bytes.equals(src)).toBe(true);
    expect(out.bytes.buffer).toBe(src.buffer);
    const same = await transformInstance(src, { transferSyntaxUid: TS.j2kLossless, mutations: [] });
    expect(same.bytes.equals(src)).toBe(true);
  });
  it('a same-syntax transform with mutations keeps the encapsulated frames byte for byte', async () => {
    const src = corpus('ts/j2k-lossless_emri_small_10frames.dcm');
    const out = await transformInstance(src, { mutations: [{ op: 'set', path: ['00100020'], vr: 'LO', value: ['X'] }] });
    expect(out.transferSyntaxUid).toBe(TS.j2kLossless);
    const before = (await decodeInstance(src)).ds;
    const after = (await decodeInstance(out.bytes)).ds;
    expect(find(after, 0x7fe00010)!.fragments!.slice(1)).toEqual(find(before, 0x7fe00010)!.fragments!.slice(1));
  });
});

describe('sources that cannot be written back as they are', () => {
  it('a big endian instance with mutations only goes out as Explicit VR Little Endian, with the same pixels', async () => {
    const src = corpus('ts/explicit-be_MR_small_bigendian.dcm');
    const out = await transformInstance(src, { mutations: [{ op: 'set', path: ['00081030'], vr: 'LO', value: ['BE'] }] });
    expect(out.transferSyntaxUid).toBe(TS.explicit);
    expect(out.fallback).toMatch(/Big Endian/);
    samePixels(await decodeInstance(src), await decodeInstance(out.bytes));
  });
  it('a bare data set without File Meta becomes a Part-10 file even when nothing is asked', async () => {
    const src = corpus('odd/no_meta_implicit_le_MR.dcm');
    const out = await transformInstance(src, {});
    expect(out.transferSyntaxUid).toBe(TS.implicit);
    expect(readFileMetaInformation(out.bytes).sopInstanceUid).toBe(out.sopInstanceUid);
    if (HAVE.dcmdump) expect(() => dcmdump(writeTmp(out.bytes))).not.toThrow();
  });
});

/** Every corpus file, by category: an uncompressed and a compressed target, outcome by category. */
describe('corpus table', () => {
  const rows = manifest.flatMap((r) => [TS.explicit, TS.j2kLossless].map((target) => [r.file, target, r] as const));
  it.each(rows)('%s → %s', async (file, target, row) => {
    const category = file.split('/')[0]!;
    const src = corpus(file);
    if (category === 'broken') {
      const err = await rejection(transformInstance(src, { transferSyntaxUid: target }));
      expect(err.code).toBe('CANNOT_UNDERSTAND');
      return;
    }
    let out;
    try {
      out = await transformInstance(src, { transferSyntaxUid: target });
    } catch (err) {
      // Refusals are deliberate and say why: pixel formats a syntax cannot carry, fragments without SOP UIDs.
      expect(err).toBeInstanceOf(PorticoError);
      const code = (err as PorticoError).code;
      if (code === 'MISSING_ATTRIBUTE') expect(row.sopInstanceUid).toBe('');
      else {
        expect(code).toBe('NOT_ACCEPTABLE');
        expect(target).not.toBe(TS.explicit);
      }
      return;
    }
    if (row.sopInstanceUid) expect(out.sopInstanceUid).toBe(row.sopInstanceUid);
    expect([target, TS.explicit]).toContain(out.transferSyntaxUid);
    if (out.transferSyntaxUid !== target) expect(out.fallback).toBeTruthy();
    if (HAVE.dcmdump) expect(() => dcmdump(writeTmp(out.bytes))).not.toThrow();
    const { ds } = await decodeDataset(out.bytes);
    if (find(ds, 0x7fe00010) && find(ds, 0x00280010) && (us(find(ds, 0x00280100)) ?? 0) >= 8 && row.ts) {
      samePixels(await decodeInstance(src), await decodeInstance(out.bytes));
    }
  });
});

describe('mutations', () => {
  const dcmjs = createRequire(import.meta.url)('dcmjs') as {
    data: { DicomMessage: { readFile(b: ArrayBuffer, o?: object): { dict: Record<string, { Value?: unknown[] }> } } };
    log: { setLevel(l: string): void };
  };
  dcmjs.log.setLevel('error');
  const read = (b: Buffer): Record<string, { Value?: unknown[] }> =>
    dcmjs.data.DicomMessage.readFile(b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer).dict;
  const name = (d: Record<string, { Value?: unknown[] }>): unknown => (d['00100010']?.Value?.[0] as { Alphabetic?: string } | undefined)?.Alphabetic;

  it('set, remove and modify at the top level, with a transcode', async () => {
    const out = await transformInstance(corpus('objects/CT_small.dcm'), {
      transferSyntaxUid: TS.jlsLossless,
      mutations: [
        { op: 'set', path: ['00100010'], vr: 'PN', value: ['Doe^Jane'] },
        { op: 'set', path: ['00081030'], vr: 'LO', value: ['Routed'] },
        { op: 'set', path: ['00280030'], vr: 'DS', value: [0.5, 0.1 + 0.2] },
        { op: 'remove', path: ['00100030'] },
        { op: 'modify', path: ['00100020'], pattern: '^(.*)$', replacement: 'EXT-$1' },
      ],
    });
    const before = read(corpus('objects/CT_small.dcm'));
    const d = read(out.bytes);
    expect(name(d)).toBe('Doe^Jane');
    expect(d['00081030']?.Value).toEqual(['Routed']);
    expect(d['00280030']?.Value).toEqual([0.5, 0.3]);
    expect(d['00100030']).toBeUndefined();
    expect(d['00100020']?.Value).toEqual([`EXT-${String(before['00100020']?.Value?.[0])}`]);
    if (HAVE.dcmdump) expect(dcmdump(writeTmp(out.bytes))).toContain('EXT-');
  });

  it('a path into a sequence changes every item that has the element; a missing sequence changes nothing', async () => {
    const src = corpus('objects/SR_basic_text.dcm');
    const out = await transformInstance(src, {
      mutations: [
        { op: 'modify', path: ['0040A730', '0040A160'], pattern: 'text', replacement: 'TEXT' },
        { op: 'set', path: ['00400275', '00321060'], vr: 'LO', value: ['never written'] },
      ],
    });
    const texts = (ds: RawElement[]): string[] =>
      (find(ds, 0x0040a730)?.items ?? []).flatMap((item) => {
        const t = find(item, 0x0040a160);
        return t ? [t.value!.toString('latin1').trim()] : [];
      });
    const before = texts((await decodeDataset(src)).ds);
    const after = texts((await decodeDataset(out.bytes)).ds);
    expect(before.length).toBeGreaterThan(0);
    expect(after).toEqual(before.map((t) => t.replace('text', 'TEXT')));
    expect(find((await decodeDataset(out.bytes)).ds, 0x00400275)).toBeUndefined();
  });

  it('remove reaches nested sequences of a multi-frame functional group', async () => {
    const src = corpus('objects/MR_enhanced_bruker_4frames.dcm');
    const out = await transformInstance(src, { transferSyntaxUid: TS.rle, mutations: [{ op: 'remove', path: ['52009230', '00289110', '00280030'] }] });
    const ds = (await decodeDataset(out.bytes)).ds;
    const perFrame = find(ds, 0x52009230)!.items!;
    expect(perFrame.length).toBe(4);
    for (const item of perFrame) for (const measures of find(item, 0x00289110)?.items ?? []) expect(find(measures, 0x00280030)).toBeUndefined();
  });

  it('rejects malformed mutations', async () => {
    const src = corpus('objects/CT_small.dcm');
    expect((await rejection(transformInstance(src, { mutations: [{ op: 'remove', path: ['0010'] }] }))).message).toMatch(/8 hex digits/);
    expect((await rejection(transformInstance(src, { mutations: [{ op: 'modify', path: ['00100010'], pattern: '(', replacement: '' }] }))).message).toMatch(
      /regular expression/,
    );
    expect((await rejection(transformInstance(src, { mutations: [{ op: 'set', path: ['00020010'], vr: 'UI', value: ['1.2'] }] }))).message).toMatch(
      /group 0002/,
    );
  });

  it('text the character set can carry stays in it; untouched text keeps its bytes', async () => {
    const src = corpus('charset/ISO_IR_100_french.dcm');
    const out = await transformInstance(src, {
      transferSyntaxUid: TS.implicit,
      mutations: [{ op: 'set', path: ['00081030'], vr: 'LO', value: ['Échographie'] }],
    });
    const ds = (await decodeDataset(out.bytes)).ds;
    expect(text(find(ds, 0x00080005))).toBe('ISO_IR 100');
    expect(find(ds, 0x00081030)!.value!.toString('latin1').trim()).toBe('Échographie');
    expect(find(ds, 0x00100010)!.value!.equals(find((await decodeDataset(src)).ds, 0x00100010)!.value!)).toBe(true);
    expect(name(read(out.bytes))).toBe('Buc^Jérôme');
  });

  it.each(['charset/ISO_IR_144_cyrillic.dcm', 'charset/ISO_2022_IR_87_japanese.dcm', 'charset/ISO_IR_100_french.dcm'])(
    '%s: text its character set cannot carry switches the instance to ISO_IR 192 and re-encodes the rest',
    async (file) => {
      const src = corpus(file);
      const out = await transformInstance(src, { mutations: [{ op: 'set', path: ['00081030'], vr: 'LO', value: ['山田 Zoë Люк'] }] });
      const ds = (await decodeDataset(out.bytes)).ds;
      expect(text(find(ds, 0x00080005))).toBe('ISO_IR 192');
      expect(find(ds, 0x00081030)!.value!.toString('utf8')).toBe('山田 Zoë Люк');
      // each decoded with its own declared character set, the names read the same
      const before = await personName(src);
      expect(before).toMatch(/[^\x00-\x7f]/);
      expect(await personName(out.bytes)).toBe(before);
      if (HAVE.dcmdump) expect(dcmdump(writeTmp(out.bytes))).toContain('ISO_IR 192');
    },
  );
});

async function personName(bytes: Buffer): Promise<string> {
  const { ds } = await decodeDataset(bytes);
  const terms = (text(find(ds, 0x00080005)) ?? '').split('\\');
  return createCharsetDecoder(terms).decode(find(ds, 0x00100010)!.value!, 'PN').trim();
}

async function decodeDataset(bytes: Buffer): Promise<{ ds: RawElement[] }> {
  const meta = readFileMetaInformation(bytes);
  let body = bytes.subarray(meta.datasetOffset);
  if (meta.transferSyntaxUid === TS.deflated) body = inflateRawSync(body);
  return Promise.resolve({ ds: readDataset(body, { explicitVr: meta.transferSyntaxUid !== TS.implicit, littleEndian: true }) });
}
