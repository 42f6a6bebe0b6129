import { describe, expect, it } from 'vitest';
import { createCharsetDecoder, decodeText, normalizeSpecificCharacterSet } from './charset.ts';
import { elementToJson } from './dicom-json.ts';

const bytes = (...parts: (string | number[])[]): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
const ESC = '\x1b';

// Expected strings are from pydicom's charset tests (David Clunie's character set samples), checked against
// the code tables of PS3.3 Annex C.12.1.1.2 and the ISO/IEC 8859 parts.
describe('single-byte and self-synchronising character sets', () => {
  it.each([
    ['ISO_IR 100', bytes('Buc^J', [0xe9], 'r', [0xf4], 'me'), 'Buc^Jérôme'],
    ['ISO_IR 144', bytes([0xbb, 0xee, 0xda, 0x63, 0x65, 0xdc, 0xd1, 0x79, 0x70, 0xd3]), 'Люкceмбypг'],
    ['ISO_IR 127', bytes([0xe2, 0xc8, 0xc7, 0xe6, 0xea], '^', [0xe4, 0xe6, 0xd2, 0xc7, 0xd1]), 'قباني^لنزار'],
    ['ISO_IR 126', bytes([0xc4, 0xe9, 0xef, 0xed, 0xf5, 0xf3, 0xe9, 0xef, 0xf2]), 'Διονυσιος'],
    ['ISO_IR 138', bytes([0xf9, 0xf8, 0xe5, 0xef], '^', [0xe3, 0xe1, 0xe5, 0xf8, 0xe4]), 'שרון^דבורה'],
    ['ISO_IR 101', bytes([0xa9, 0xe8]), 'Šč'],
    ['ISO_IR 148', bytes([0xdd, 0xfe]), 'İş'],
    ['ISO_IR 166', bytes([0xa1, 0xa2]), 'กข'],
    ['ISO_IR 13', bytes([0xd4, 0xcf, 0xc0, 0xde]), 'ﾔﾏﾀﾞ'],
    ['ISO_IR 192', bytes('Wang^XiaoDong=', [0xe7, 0x8e, 0x8b], '^', [0xe5, 0xb0, 0x8f, 0xe6, 0x9d, 0xb1], '='), 'Wang^XiaoDong=王^小東='],
    ['GB18030', bytes('Wang^XiaoDong=', [0xcd, 0xf5], '^', [0xd0, 0xa1, 0xb6, 0xab], '='), 'Wang^XiaoDong=王^小东='],
    ['GBK', bytes([0xcd, 0xf5]), '王'],
  ])('%s', (term, input, expected) => {
    expect(createCharsetDecoder([term]).decode(input, 'PN')).toBe(expected);
  });

  it('reads the default repertoire (missing or empty (0008,0005)) as ISO 8859-1 rather than failing', () => {
    expect(createCharsetDecoder([]).decode(bytes('Caf', [0xe9]), 'LO')).toBe('Café');
    expect(createCharsetDecoder(['']).decode(bytes('Caf', [0xe9]), 'LO')).toBe('Café');
  });

  it('falls back to ISO 8859-1 for unknown terms and never throws on invalid bytes', () => {
    expect(createCharsetDecoder(['ISO_IR 999']).decode(bytes([0xe9]), 'LO')).toBe('é');
    expect(createCharsetDecoder(['ISO_IR 192']).decode(bytes('a', [0xff], 'b'), 'LO')).toBe('a\ufffdb');
  });

  it('accepts common misspellings of the defined terms', () => {
    expect(normalizeSpecificCharacterSet(['ISO-IR 100', 'iso_ir_192 ', 'UTF-8', 'ISO 2022 IR_87', null])).toEqual([
      'ISO_IR 100',
      'ISO_IR 192',
      'ISO_IR 192',
      'ISO 2022 IR 87',
      '',
    ]);
  });

  it('splits values after decoding, so a GBK trail byte 0x5C is not taken for a value delimiter', () => {
    const decoder = createCharsetDecoder(['GBK']);
    const withTrail5c = bytes([0x81, 0x5c], '\\B');
    const json = elementToJson('LO', Buffer.from(withTrail5c), true, decoder);
    expect(json.Value).toHaveLength(2);
    expect(json.Value?.[1]).toBe('B');
    expect(json.Value?.[0]).not.toContain('\\');
  });

  it('decodes only the text VRs with the character set', () => {
    expect(decodeText(bytes([0xbb]), ['ISO_IR 144'], 'LO')).toBe('Л');
    expect(decodeText(bytes([0xbb]), ['ISO_IR 144'], 'CS')).toBe('»');
  });
});

describe('ISO 2022 code extensions', () => {
  it('Japanese: JIS X 0208 in G0 via ESC $ B, back to ASCII via ESC ( B (chrH31)', () => {
    const input = bytes('Yamada^Tarou=', `${ESC}$B;3ED${ESC}(B^${ESC}$BB@O:${ESC}(B=`, `${ESC}$B$d$^$@${ESC}(B^${ESC}$B$?$m$&${ESC}(B`);
    expect(createCharsetDecoder(['', 'ISO 2022 IR 87']).decode(input, 'PN')).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('Japanese: half-width katakana in G1 with ISO 2022 IR 13 as value 1 (chrH32)', () => {
    const input = bytes([0xd4, 0xcf, 0xc0, 0xde], '^', [0xc0, 0xdb, 0xb3], `=${ESC}$B;3ED${ESC}(J^${ESC}$BB@O:${ESC}(J`);
    expect(createCharsetDecoder(['ISO 2022 IR 13', 'ISO 2022 IR 87']).decode(input, 'PN')).toBe('ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎');
  });

  it('Japanese: JIS X 0212 via ESC $ ( D', () => {
    expect(createCharsetDecoder(['', 'ISO 2022 IR 159']).decode(bytes(`${ESC}$(D0!${ESC}(B`), 'LO')).toBe('丂');
  });

  it('Korean: KS X 1001 in G1 via ESC $ ) C (chrI2)', () => {
    const input = bytes(
      'Hong^Gildong=',
      `${ESC}$)C`,
      [0xfb, 0xf3],
      `^${ESC}$)C`,
      [0xd1, 0xce, 0xd4, 0xd7],
      `=${ESC}$)C`,
      [0xc8, 0xab],
      `^${ESC}$)C`,
      [0xb1, 0xe6, 0xb5, 0xbf],
    );
    expect(createCharsetDecoder(['', 'ISO 2022 IR 149']).decode(input, 'PN')).toBe('Hong^Gildong=洪^吉洞=홍^길동');
  });

  it('Korean without the escape sequence (common in practice) still decodes as KS X 1001', () => {
    expect(createCharsetDecoder(['', 'ISO 2022 IR 149']).decode(bytes([0xc8, 0xab]), 'PN')).toBe('홍');
  });

  it('Simplified Chinese: GB 2312 in G1 via ESC $ ) A (chrSQEncoding)', () => {
    const input = bytes('Zhang^XiaoDong=', `${ESC}$)A`, [0xd5, 0xc5], `^${ESC}$)A`, [0xd0, 0xa1, 0xb6, 0xab], '=');
    expect(createCharsetDecoder(['', 'ISO 2022 IR 58']).decode(input, 'PN')).toBe('Zhang^XiaoDong=张^小东=');
  });

  it('Latin G1 sets via ESC - F and value-1 G1 designation', () => {
    expect(createCharsetDecoder(['ISO 2022 IR 100']).decode(bytes([0xe9]), 'LO')).toBe('é');
    expect(createCharsetDecoder(['ISO 2022 IR 100', 'ISO 2022 IR 144']).decode(bytes([0xe9], `${ESC}-L`, [0xbb]), 'LO')).toBe('éЛ');
  });

  it('returns to the value-1 character set at PN delimiters ^ and = (PS3.5 §6.1.2.5.3)', () => {
    const decoder = createCharsetDecoder(['ISO 2022 IR 100', 'ISO 2022 IR 144']);
    expect(decoder.decode(bytes(`${ESC}-L`, [0xb0], '^', [0xb0], '=', [0xb0]), 'PN')).toBe('А^°=°');
    // '^' is an ordinary character in LO: no reset there.
    expect(decoder.decode(bytes(`${ESC}-L`, [0xb0], '^', [0xb0]), 'LO')).toBe('А^А');
  });

  it('returns to the value-1 character set at CR, LF, TAB, FF in text and at \\ between values', () => {
    const decoder = createCharsetDecoder(['ISO 2022 IR 100', 'ISO 2022 IR 144']);
    expect(decoder.decode(bytes(`${ESC}-L`, [0xb0], '\r\n', [0xb0], `${ESC}-L`, [0xb0], '\t', [0xb0]), 'LT')).toBe('А\r\n°А\t°');
    expect(decoder.decode(bytes(`${ESC}-L`, [0xb0], '\\', [0xb0]), 'LO')).toBe('А\\°');
  });

  it('drops unknown escape sequences instead of failing', () => {
    expect(createCharsetDecoder(['', 'ISO 2022 IR 87']).decode(bytes(`A${ESC}%GB`), 'LO')).toBe('A%GB');
  });
});
