/**
 * Decoding of DICOM text values to JavaScript (UTF-16) strings according to Specific Character Set (0008,0005).
 *
 * Two families exist (PS3.3 §C.12.1.1.2):
 * - single-byte or self-synchronising encodings named by one term (ISO_IR 100, ISO_IR 192, GB18030 …): the
 *   whole value goes through one `TextDecoder`;
 * - ISO 2022 code extensions (any term starting "ISO 2022"): escape sequences inside a value switch the G0
 *   (bytes 0x21–0x7E) or G1 (0xA1–0xFE) character set, and the set falls back to the one named by value 1 at
 *   each delimiter (PS3.5 §6.1.2.5.3). `TextDecoder` cannot follow DICOM's rules here (it knows neither
 *   KS X 1001 nor GB 2312 as ISO 2022, nor the resets), so the value is split into runs of one character set
 *   and each run is decoded with the EUC form of that set: a JIS X 0208 byte pair in G0 plus 0x80 per byte is
 *   its EUC-JP encoding, a KS X 1001 pair in G1 is already EUC-KR, and so on.
 *
 * Decoding never throws: unknown terms and unknown escape sequences degrade to ISO 8859-1 so that a
 * mislabelled value still reaches the index, readable or not. Node must be built with full ICU (the default)
 * for the non-Latin decoders.
 */
import { TextDecoder } from 'node:util';

/** Text VRs whose bytes are subject to Specific Character Set; every other string VR is ISO-IR 6. @see PS3.5 §6.1.2.3 */
export const CHARSET_VRS: ReadonlySet<string> = new Set(['SH', 'LO', 'ST', 'LT', 'UT', 'PN', 'UC']);

/** Decodes text values of one data set (one Specific Character Set). */
export interface CharsetDecoder {
  /** the (0008,0005) values this decoder was built for */
  readonly terms: readonly string[];
  /**
   * Decode one element value (all of its `\`-separated values) to a string. `vr` selects the delimiters at
   * which ISO 2022 state resets (`^` and `=` for PN, CR/LF/TAB/FF for text).
   */
  decode(bytes: Uint8Array, vr: string): string;
}

type SingleByteDecode = (bytes: Uint8Array) => string;

const decoderCache = new Map<string, TextDecoder>();
function textDecoder(label: string): TextDecoder {
  let d = decoderCache.get(label);
  if (!d) {
    // fatal: false — a broken byte becomes U+FFFD instead of failing the whole instance.
    d = new TextDecoder(label, { fatal: false });
    decoderCache.set(label, d);
  }
  return d;
}

/** Exact ISO 8859-1 (WHATWG "latin1" is windows-1252, which remaps 0x80–0x9F). */
function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function viaLabel(label: string): SingleByteDecode {
  return (bytes) => textDecoder(label).decode(bytes);
}

/**
 * Defined terms without code extensions and their WHATWG encoding labels.
 * @see PS3.3 Table C.12-2, Table C.12-5
 */
const SIMPLE_TERMS: Readonly<Record<string, SingleByteDecode>> = {
  '': latin1,
  'ISO_IR 6': latin1,
  'ISO_IR 100': latin1,
  'ISO_IR 101': viaLabel('iso-8859-2'),
  'ISO_IR 109': viaLabel('iso-8859-3'),
  'ISO_IR 110': viaLabel('iso-8859-4'),
  'ISO_IR 144': viaLabel('iso-8859-5'),
  'ISO_IR 127': viaLabel('iso-8859-6'),
  'ISO_IR 126': viaLabel('iso-8859-7'),
  'ISO_IR 138': viaLabel('iso-8859-8'),
  'ISO_IR 148': viaLabel('iso-8859-9'),
  'ISO_IR 203': viaLabel('iso-8859-15'),
  // JIS X 0201: Romaji in 0x00–0x7F, half-width katakana in 0xA1–0xDF, exactly the single-byte part of Shift_JIS.
  'ISO_IR 13': viaLabel('shift_jis'),
  'ISO_IR 166': viaLabel('tis-620'),
  'ISO_IR 192': viaLabel('utf-8'),
  GB18030: viaLabel('gb18030'),
  GBK: viaLabel('gbk'),
};

// ---- ISO 2022 ---------------------------------------------------------------------------------------

/** A character set that can be designated to G0 or G1, and how to decode a run of its bytes. */
interface CodeElement {
  name: string;
  /** bytes per character */
  width: 1 | 2;
  decode(bytes: number[]): string;
}

const ASCII: CodeElement = { name: 'ISO-IR 6', width: 1, decode: (b) => latin1(Uint8Array.from(b)) };
// ISO-IR 14 (JIS X 0201 Romaji) differs from ASCII only at 0x5C (yen) and 0x7E (overline); DICOM still uses
// 0x5C as its value delimiter, so it is read as ASCII, like DCMTK and pydicom do.
const ROMAJI: CodeElement = { name: 'ISO-IR 14', width: 1, decode: ASCII.decode };
const KATAKANA: CodeElement = {
  name: 'ISO-IR 13',
  width: 1,
  decode: (b) => textDecoder('shift_jis').decode(Uint8Array.from(b)),
};
const JIS_X_0208: CodeElement = {
  name: 'ISO-IR 87',
  width: 2,
  decode: (b) => textDecoder('euc-jp').decode(Uint8Array.from(b, (x) => x | 0x80)),
};
const JIS_X_0212: CodeElement = {
  name: 'ISO-IR 159',
  width: 2,
  decode: (b) => {
    // EUC-JP reaches JIS X 0212 through the single shift SS3 (0x8F) before each pair.
    const out: number[] = [];
    for (let i = 0; i + 1 < b.length; i += 2) out.push(0x8f, b[i]! | 0x80, b[i + 1]! | 0x80);
    return textDecoder('euc-jp').decode(Uint8Array.from(out));
  },
};
const KS_X_1001: CodeElement = {
  name: 'ISO-IR 149',
  width: 2,
  decode: (b) => textDecoder('euc-kr').decode(Uint8Array.from(b)),
};
const GB_2312: CodeElement = {
  name: 'ISO-IR 58',
  width: 2,
  decode: (b) => textDecoder('gb18030').decode(Uint8Array.from(b)),
};

function g1SingleByte(name: string, decode: SingleByteDecode): CodeElement {
  return { name, width: 1, decode: (b) => decode(Uint8Array.from(b)) };
}
const LATIN1_G1 = g1SingleByte('ISO-IR 100', latin1);

/** G1 sets reached with ESC 2/13 F (96-character sets), keyed by the final byte F. @see PS3.3 Table C.12-3 */
const G1_96: Readonly<Record<string, CodeElement>> = {
  A: LATIN1_G1,
  B: g1SingleByte('ISO-IR 101', viaLabel('iso-8859-2')),
  C: g1SingleByte('ISO-IR 109', viaLabel('iso-8859-3')),
  D: g1SingleByte('ISO-IR 110', viaLabel('iso-8859-4')),
  L: g1SingleByte('ISO-IR 144', viaLabel('iso-8859-5')),
  G: g1SingleByte('ISO-IR 127', viaLabel('iso-8859-6')),
  F: g1SingleByte('ISO-IR 126', viaLabel('iso-8859-7')),
  H: g1SingleByte('ISO-IR 138', viaLabel('iso-8859-8')),
  M: g1SingleByte('ISO-IR 148', viaLabel('iso-8859-9')),
  T: g1SingleByte('ISO-IR 166', viaLabel('tis-620')),
  b: g1SingleByte('ISO-IR 203', viaLabel('iso-8859-15')),
};

/** Escape sequences (bytes after ESC) and what they designate. @see PS3.3 Table C.12-3, C.12-4 */
const ESCAPES: readonly (readonly [seq: string, target: 'G0' | 'G1', set: CodeElement])[] = [
  ['(B', 'G0', ASCII],
  ['(J', 'G0', ROMAJI],
  [')I', 'G1', KATAKANA],
  ['$B', 'G0', JIS_X_0208],
  ['$(D', 'G0', JIS_X_0212],
  ['$)C', 'G1', KS_X_1001],
  ['$)A', 'G1', GB_2312],
  ...Object.entries(G1_96).map(([f, set]) => [`-${f}`, 'G1', set] as const),
];

/** The designations a defined term makes when it is value 1, i.e. the state every delimiter returns to. */
interface Designation {
  g0: CodeElement;
  g1: CodeElement | undefined;
}

/** Initial G0/G1 designation for each ISO 2022 defined term. @see PS3.3 Table C.12-3, C.12-4 */
function designationOf(term: string): Designation {
  switch (term) {
    case 'ISO 2022 IR 13':
      return { g0: ROMAJI, g1: KATAKANA };
    case 'ISO 2022 IR 149':
      return { g0: ASCII, g1: KS_X_1001 };
    case 'ISO 2022 IR 58':
      return { g0: ASCII, g1: GB_2312 };
    default: {
      const ir = /^ISO(?: 2022 IR |_IR )(\d+)$/.exec(term)?.[1];
      const byIr = ir === undefined ? undefined : Object.values(G1_96).find((s) => s.name === `ISO-IR ${ir}`);
      return { g0: ASCII, g1: byIr };
    }
  }
}

const PN_DELIMITERS = new Set([0x5c, 0x5e, 0x3d, 0x0d, 0x0a, 0x09, 0x0c]);
const TEXT_DELIMITERS = new Set([0x5c, 0x0d, 0x0a, 0x09, 0x0c]);

function createIso2022Decoder(terms: readonly string[]): (bytes: Uint8Array, vr: string) => string {
  const initial = designationOf(terms[0] ?? '');
  // Real files often carry G1 bytes without the escape that should designate them; the set named by the
  // other terms is the best guess (it is what those bytes are in every sample seen), ISO 8859-1 the last resort.
  const fallbackG1 = initial.g1 ?? terms.map((t) => designationOf(t).g1).find((s) => s !== undefined) ?? LATIN1_G1;

  return (bytes, vr) => {
    const delimiters = vr === 'PN' ? PN_DELIMITERS : TEXT_DELIMITERS;
    let g0 = initial.g0;
    let g1 = initial.g1;
    let out = '';
    let runSet: CodeElement | undefined;
    let run: number[] = [];
    const emit = (set: CodeElement, ...b: number[]): void => {
      if (set !== runSet) {
        if (runSet && run.length > 0) out += runSet.decode(run);
        runSet = set;
        run = [];
      }
      run.push(...b);
    };

    let i = 0;
    const n = bytes.length;
    while (i < n) {
      const b = bytes[i]!;
      if (b === 0x1b) {
        const match = ESCAPES.find(([seq]) => matchesAt(bytes, i + 1, seq));
        if (match) {
          const [seq, target, set] = match;
          if (target === 'G0') g0 = set;
          else g1 = set;
          i += 1 + seq.length;
        } else {
          i += 1; // unknown escape: drop ESC, keep the bytes visible
        }
        continue;
      }
      if (b < 0x80) {
        const next = bytes[i + 1];
        if (g0.width === 2 && b >= 0x21 && b <= 0x7e && next !== undefined && next >= 0x21 && next <= 0x7e) {
          emit(g0, b, next);
          i += 2;
          continue;
        }
        emit(g0.width === 2 ? ASCII : g0, b);
        if (delimiters.has(b)) {
          g0 = initial.g0;
          g1 = initial.g1;
        }
        i += 1;
        continue;
      }
      const set = g1 ?? fallbackG1;
      const next = bytes[i + 1];
      if (set.width === 2 && next !== undefined && next >= 0x80) {
        emit(set, b, next);
        i += 2;
      } else {
        emit(set.width === 2 ? LATIN1_G1 : set, b);
        i += 1;
      }
    }
    if (runSet && run.length > 0) out += runSet.decode(run);
    return out;
  };
}

function matchesAt(bytes: Uint8Array, at: number, seq: string): boolean {
  if (at + seq.length > bytes.length) return false;
  for (let k = 0; k < seq.length; k++) if (bytes[at + k] !== seq.charCodeAt(k)) return false;
  return true;
}

/**
 * Normalises the raw (0008,0005) values: trims padding and treats a missing value 1 as the default
 * repertoire (the empty string), which is how PS3.3 §C.12.1.1.2 writes "ISO-IR 6 in G0".
 */
export function normalizeSpecificCharacterSet(values: readonly (string | null | undefined)[]): string[] {
  return values.map((v) => {
    const t = (v ?? '').trim().toUpperCase();
    // Spelling variants seen in the wild ("ISO-IR 100", "ISO_IR_100", "UTF-8") mean the defined term.
    if (t === 'UTF-8' || t === 'UTF8') return 'ISO_IR 192';
    return t.replace(/^ISO[-_ ]IR[-_ ]?(\d+)$/, 'ISO_IR $1').replace(/^ISO[-_ ]2022[-_ ]IR[-_ ]?(\d+)$/, 'ISO 2022 IR $1');
  });
}

/**
 * A decoder for the text of a data set whose Specific Character Set (0008,0005) is `terms`.
 * Empty or missing terms mean the default repertoire (decoded as ISO 8859-1 to be tolerant of undeclared
 * Latin-1, which is common). Unknown terms decode as ISO 8859-1.
 * @see PS3.5 §6.1
 * @see PS3.3 §C.12.1.1.2
 */
export function createCharsetDecoder(terms: readonly string[]): CharsetDecoder {
  const normalized = normalizeSpecificCharacterSet(terms);
  const first = normalized[0] ?? '';
  const simple = SIMPLE_TERMS[first];
  // ISO_IR 192, GB18030 and GBK may not be combined with code extensions (PS3.3 §C.12.1.1.2): extra terms
  // after them are ignored rather than allowed to switch decoding into ISO 2022 mode.
  const selfContained = first === 'ISO_IR 192' || first === 'GB18030' || first === 'GBK';
  const useIso2022 = !selfContained && normalized.some((t) => t.startsWith('ISO 2022'));
  if (useIso2022) {
    const decode = createIso2022Decoder(normalized);
    return { terms: normalized, decode };
  }
  const decode = simple ?? latin1;
  return { terms: normalized, decode: (bytes) => decode(bytes) };
}

/** Default-repertoire decoder, for data sets without (0008,0005). @see PS3.5 §6.1.2.2 */
export const DEFAULT_CHARSET_DECODER: CharsetDecoder = createCharsetDecoder([]);

/**
 * One-shot helper: decode `bytes` of a `vr` element under Specific Character Set `terms`. Non-text VRs are
 * always the default repertoire.
 * @see PS3.5 §6.1.2.3
 */
export function decodeText(bytes: Uint8Array, terms: readonly string[], vr: string): string {
  if (!CHARSET_VRS.has(vr)) return latin1(bytes);
  return createCharsetDecoder(terms).decode(bytes, vr);
}
