import { describe, expect, it } from 'vitest';
import { findNode, parseNodes } from './nodes.ts';

describe('nodes file', () => {
  it('parses nodes with default services and finds them by AE title', () => {
    const nodes = parseNodes(
      'nodes:\n  - aeTitle: PACS1\n    host: 10.0.0.1\n    port: 104\n  - { aeTitle: WS, host: ws, port: 11112, services: [find, move] }\n',
    );
    expect(nodes).toHaveLength(2);
    expect(nodes[0]!.services).toContain('store');
    expect(findNode(nodes, 'WS  ')?.services).toEqual(['find', 'move']);
    expect(findNode(nodes, 'OTHER')).toBeUndefined();
    expect(parseNodes('')).toEqual([]);
  });

  it('reads storageCommitment (off unless asked for), and refuses a value that is not a boolean', () => {
    const [plain, asked] = parseNodes('nodes:\n  - { aeTitle: A, host: a, port: 104 }\n  - { aeTitle: B, host: b, port: 104, storageCommitment: true }\n');
    expect(plain!.storageCommitment).toBe(false);
    expect(asked!.storageCommitment).toBe(true);
    expect(() => parseNodes('nodes:\n  - { aeTitle: A, host: a, port: 104, storageCommitment: yes please }\n', 'n.yml')).toThrow(
      /\.nodes\[0\]\.storageCommitment/,
    );
  });

  it('names the entry and the reason of a bad file', () => {
    expect(() => parseNodes('nodes:\n  - { aeTitle: PACS1, host: h, port: 0 }\n', 'n.yml')).toThrow(/n\.yml: \.nodes\[0\]\.port/);
    expect(() => parseNodes('nodes:\n  - { aeTitle: "A\\\\B", host: h, port: 104 }\n')).toThrow(/aeTitle/);
    expect(() => parseNodes('nodes:\n  - { aeTitle: X, host: h, port: 104, colour: red }\n')).toThrow(/colour/);
    expect(() => parseNodes('nodes:\n  - { aeTitle: X, host: h, port: 104 }\n  - { aeTitle: X, host: i, port: 105 }\n')).toThrow(/listed twice/);
    expect(() => parseNodes('nodes: [\n')).toThrow(/not YAML/);
  });
});

describe('nodes from the admin API', () => {
  it('validates one node and lets the file win on a shared AE title', async () => {
    const { parseNode, mergeNodes } = await import('./nodes.ts');
    const api = parseNode({ aeTitle: 'WS9', host: 'ws9', port: 11112 });
    expect(api.services).toContain('find');
    expect(() => parseNode({ aeTitle: 'WS9', host: 'ws9', port: 'x' })).toThrow(/port/);
    const file = parseNode({ aeTitle: 'PACS', host: 'pacs', port: 104 });
    const merged = mergeNodes([file], [api, parseNode({ aeTitle: 'PACS', host: 'evil', port: 1 })]);
    expect(merged.map((n) => `${n.aeTitle}@${n.host}`)).toEqual(['PACS@pacs', 'WS9@ws9']);
  });
});
