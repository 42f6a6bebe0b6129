/**
 * Known DICOM nodes (`nodes.yml`, setting `dimse.nodesFile`): the application entities Portico talks
 * to — C-MOVE destinations now; access control and export destinations build on the same list.
 *
 * ```yaml
 * nodes:
 *   - aeTitle: WORKSTATION1   # 1-16 characters, no backslash
 *     host: 10.0.0.12
 *     port: 104
 *     tls: false               # associations we open to it use TLS
 *     services: [echo, store, find, move, get]   # what this AE may ask of us (default: all)
 * ```
 *
 * A file that does not parse or fit the schema stops the start with the file, the entry and the reason.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export const NODE_SERVICES = ['echo', 'store', 'find', 'move', 'get', 'commitment', 'worklist'] as const;
export type NodeService = (typeof NODE_SERVICES)[number];

const nodeSchema = z
  .object({
    aeTitle: z
      .string()
      .min(1)
      .max(16)
      .regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'AE title: 1-16 characters of the default repertoire, no backslash')
      .transform((s) => s.trim()),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** Associations we open to this node use TLS (its port is then its TLS port). */
    tls: z.boolean().default(false),
    services: z.array(z.enum(NODE_SERVICES)).default([...NODE_SERVICES]),
  })
  .strict();

const fileSchema = z.object({ nodes: z.array(nodeSchema).default([]) }).strict();

export type DicomNode = z.infer<typeof nodeSchema>;

/** Parses the text of a nodes file. @throws Error naming the entry and field */
export function parseNodes(text: string, source = 'nodes file'): DicomNode[] {
  let data: unknown;
  try {
    data = parseYaml(text) ?? {};
  } catch (err) {
    throw new Error(`${source}: not YAML: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (i) => `${source}: ${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('') || '(top)'}: ${i.message}`,
    );
    throw new Error(lines.join('\n'));
  }
  const seen = new Set<string>();
  for (const n of parsed.data.nodes) {
    if (seen.has(n.aeTitle)) throw new Error(`${source}: AE title ${n.aeTitle} is listed twice`);
    seen.add(n.aeTitle);
  }
  return parsed.data.nodes;
}

/** Validates one node given through the admin API. @throws Error naming the field and the reason */
export function parseNode(value: unknown): DicomNode {
  const r = nodeSchema.safeParse(value);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || '(node)'}: ${i.message}`).join('; '));
  return r.data;
}

/** File nodes first: an AE title in the file cannot be redefined through the admin API. */
export function mergeNodes(fileNodes: readonly DicomNode[], dbNodes: readonly DicomNode[]): DicomNode[] {
  const inFile = new Set(fileNodes.map((n) => n.aeTitle));
  return [...fileNodes, ...dbNodes.filter((n) => !inFile.has(n.aeTitle))];
}

/** Reads the nodes file; no file configured means no known nodes. */
export function loadNodes(file: string | undefined): DicomNode[] {
  if (!file) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`nodes file ${file}: ${(err as Error).message}`);
  }
  return parseNodes(text, file);
}

export function findNode(nodes: readonly DicomNode[], aeTitle: string): DicomNode | undefined {
  const ae = aeTitle.trim();
  return nodes.find((n) => n.aeTitle === ae);
}
