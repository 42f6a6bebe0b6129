import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluateRoutes, parseRoutes } from './index.ts';

/** docs/routing.md is the reference administrators follow: every YAML example in it must be accepted. */
const DOC = readFileSync(fileURLToPath(new URL('../../../docs/routing.md', import.meta.url)), 'utf8');
const blocks = [...DOC.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

/** Fragments (a `when:` map, one action) are checked inside a minimal rule. */
function asFile(block: string): string {
  if (/^(default|rules):/m.test(block)) return block;
  const indent = (text: string, n: number): string => text.replace(/^(?=.)/gm, ' '.repeat(n));
  if (block.startsWith('when:')) return `rules:\n  - name: r\n${indent(block, 4)}    then: [{add: X}]\n`;
  if (block.startsWith('- ')) return `rules:\n  - name: r\n    then:\n${indent(block, 6)}`;
  throw new Error(`a YAML block of docs/routing.md this test does not know how to check:\n${block}`);
}

describe('docs/routing.md', () => {
  it('has YAML examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
  });

  it.each(blocks.map((b, i) => [i, b] as const))('example %i is a valid routes file', (_i, block) => {
    expect(() => parseRoutes(asFile(block), 'docs/routing.md')).not.toThrow();
  });

  it('the explain example is what evaluateRoutes gives for a CT received on IMAGEPACS', () => {
    const json = /```json\n([\s\S]*?)```/.exec(DOC)![1]!;
    const explanation = evaluateRoutes(
      parseRoutes(blocks[0]!),
      { '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] } },
      {
        source: 'dimse',
        calledAeTitle: 'IMAGEPACS',
      },
    );
    expect(explanation).toEqual(JSON.parse(json));
  });
});
