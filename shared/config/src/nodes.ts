/**
 * Known DICOM nodes (`nodes.yml`, setting `dimse.nodesFile`): the application entities Portico talks
 * to — access control, C-MOVE destinations and export destinations — and the DICOMweb (STOW-RS)
 * export destinations.
 *
 * ```yaml
 * nodes:
 *   - aeTitle: WORKSTATION1   # 1-16 characters, no backslash
 *     host: 10.0.0.12
 *     port: 104
 *     tls: false               # associations we open to it use TLS
 *     services: [echo, store, find, move, get]   # what this AE may ask of us (default: all)
 *     # as an export destination (all optional):
 *     transferSyntaxes: [1.2.840.10008.1.2.4.90, 1.2.840.10008.1.2.1]  # what it accepts (default: anything)
 *     preferredTransferSyntax: 1.2.840.10008.1.2.1   # converted to this when the stored one is not accepted
 *     maxAssociations: 2       # concurrent associations we open to it
 *     callingAeTitle: ROUTER   # our calling AE towards it (default: our AE title)
 *     impersonate: false       # true: call it with the calling AE of whoever sent us the instance
 *     maxPerSecond: 50         # instances per second at most
 *     batchSize: 100           # instances of one study sent on one association
 *     storageCommitment: false # true: ask it for storage commitment after each batch
 * dicomweb:
 *   - name: CLOUD
 *     url: https://pacs.example.org/dicom-web/studies   # the STOW-RS endpoint
 *     bearerToken: ...         # or authorization: "Basic …" (a whole Authorization header)
 *     batchSize: 20            # instances per POST
 * ```
 *
 * A file that does not parse or fit the schema stops the start with the file, the entry and the reason.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export const NODE_SERVICES = ['echo', 'store', 'find', 'move', 'get', 'commitment', 'worklist'] as const;
export type NodeService = (typeof NODE_SERVICES)[number];

const aeTitle = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'AE title: 1-16 characters of the default repertoire, no backslash')
  .transform((s) => s.trim());
const uid = z
  .string()
  .regex(/^[0-9]+(\.[0-9]+)*$/, 'a transfer syntax UID (digits and dots)')
  .max(64);
const destinationName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'name: 1-64 letters, digits, ".", "_" or "-"');
/** What every export destination has: how hard we may push it. */
const exportFields = {
  /** Concurrent associations (DIMSE) or requests (DICOMweb) we open to it. */
  maxAssociations: z.number().int().min(1).max(64).default(1),
  /** Instances per second at most (unset: no limit). */
  maxPerSecond: z.number().positive().optional(),
  /** Instances of one study sent together: on one association (DIMSE), in one POST (DICOMweb). */
  batchSize: z.number().int().min(1).max(1000).default(100),
};

const nodeSchema = z
  .object({
    aeTitle,
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** Associations we open to this node use TLS (its port is then its TLS port). */
    tls: z.boolean().default(false),
    services: z.array(z.enum(NODE_SERVICES)).default([...NODE_SERVICES]),
    ...exportFields,
    callingAeTitle: aeTitle.optional(),
    impersonate: z.boolean().default(false),
    transferSyntaxes: z.array(uid).min(1).optional(),
    preferredTransferSyntax: uid.optional(),
    /**
     * After each batch delivered, ask it for storage commitment (N-ACTION, PS3.4 Annex J) and record
     * its answer per delivery.
     */
    storageCommitment: z.boolean().default(false),
  })
  .strict();

const dicomwebSchema = z
  .object({
    name: destinationName,
    url: z.url({ protocol: /^https?$/, error: 'url: an http(s) URL of a STOW-RS endpoint' }),
    /** A whole Authorization header value ("Basic …"); secret. */
    authorization: z.string().min(1).optional(),
    /** Sent as "Authorization: Bearer <token>"; secret. */
    bearerToken: z.string().min(1).optional(),
    ...exportFields,
    batchSize: z.number().int().min(1).max(1000).default(20),
    timeoutMs: z.number().int().min(1000).default(60000),
  })
  .strict()
  .refine((d) => !(d.authorization && d.bearerToken), { message: 'give authorization or bearerToken, not both' });

const fileSchema = z.object({ nodes: z.array(nodeSchema).default([]), dicomweb: z.array(dicomwebSchema).default([]) }).strict();

export type DicomNode = z.infer<typeof nodeSchema>;
export type DicomwebDestination = z.infer<typeof dicomwebSchema>;
export interface NodesFile {
  readonly nodes: DicomNode[];
  readonly dicomweb: DicomwebDestination[];
}

function issuesText(source: string, error: z.ZodError): string {
  return error.issues
    .map((i) => `${source}: ${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('') || '(top)'}: ${i.message}`)
    .join('\n');
}

/** Parses the text of a nodes file. @throws Error naming the entry and field */
export function parseNodesFile(text: string, source = 'nodes file'): NodesFile {
  let data: unknown;
  try {
    data = parseYaml(text) ?? {};
  } catch (err) {
    throw new Error(`${source}: not YAML: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) throw new Error(issuesText(source, parsed.error));
  const seen = new Set<string>();
  for (const name of [...parsed.data.nodes.map((n) => n.aeTitle), ...parsed.data.dicomweb.map((d) => d.name)]) {
    // One name space: routes name destinations by AE title or DICOMweb name.
    if (seen.has(name)) throw new Error(`${source}: ${name} is listed twice (AE titles and DICOMweb names share one name space)`);
    seen.add(name);
  }
  return parsed.data;
}

/** The DIMSE nodes of a nodes file. @throws Error naming the entry and field */
export function parseNodes(text: string, source = 'nodes file'): DicomNode[] {
  return parseNodesFile(text, source).nodes;
}

/** Validates one DICOMweb destination given through the admin API. @throws Error naming the field and the reason */
export function parseDicomwebDestination(value: unknown): DicomwebDestination {
  const r = dicomwebSchema.safeParse(value);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || '(destination)'}: ${i.message}`).join('; '));
  return r.data;
}

/** A node kept in the database: its columns plus the export settings kept as JSON. */
export function nodeFromDbRow(row: {
  aeTitle: string;
  host: string;
  port: number;
  tls: boolean;
  services: string[];
  options?: Record<string, unknown>;
}): DicomNode {
  return parseNode({ ...(row.options ?? {}), aeTitle: row.aeTitle, host: row.host, port: row.port, tls: row.tls, services: row.services });
}

/** The export settings of a node (what goes into the database's options column). */
export function nodeOptions(node: DicomNode): Record<string, unknown> {
  const { aeTitle: _a, host: _h, port: _p, tls: _t, services: _s, ...options } = node;
  return options;
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
export function loadNodesFile(file: string | undefined): NodesFile {
  if (!file) return { nodes: [], dicomweb: [] };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`nodes file ${file}: ${(err as Error).message}`);
  }
  return parseNodesFile(text, file);
}

/** The DIMSE nodes of the nodes file; no file configured means no known nodes. */
export function loadNodes(file: string | undefined): DicomNode[] {
  return loadNodesFile(file).nodes;
}

export function findNode(nodes: readonly DicomNode[], aeTitle: string): DicomNode | undefined {
  const ae = aeTitle.trim();
  return nodes.find((n) => n.aeTitle === ae);
}
