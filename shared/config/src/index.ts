/**
 * Configuration: one typed schema, validated at start, every error reported at once, result frozen.
 *
 * Sources, later wins: defaults < YAML file (`--config` or PORTICO_CONFIG) < environment.
 * See docs/configuration.md (generated from {@link SETTINGS}).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { LAUNCHER_ENV, SETTINGS, type Setting } from './settings.ts';

export { LAUNCHER_ENV, SETTINGS, type Setting } from './settings.ts';
export {
  loadNodes,
  loadNodesFile,
  parseNodes,
  parseNodesFile,
  parseNode,
  parseDicomwebDestination,
  nodeFromDbRow,
  nodeOptions,
  mergeNodes,
  findNode,
  type DicomNode,
  type DicomwebDestination,
  type NodesFile,
  type NodeService,
} from './nodes.ts';

export interface PorticoConfig {
  readonly dataDir: string;
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  readonly shutdownGraceMs: number;
  readonly dimse: {
    readonly host: string;
    readonly port: number;
    readonly aeTitle: string;
    readonly checkCalledAeTitle: boolean;
    readonly maxPduLength: number;
    readonly maxAssociations: number;
    readonly associationTimeoutMs: number;
    readonly idleTimeoutMs: number;
    readonly nodesFile?: string;
    readonly nodesReloadMs: number;
    readonly scuTimeoutMs: number;
    /** Unset: the role decides (see {@link allowUnknownAe}). */
    readonly allowUnknownAe?: boolean;
    readonly maxAssociationsPerAe: number;
    readonly commitmentWaitMs: number;
    readonly tlsPort?: number;
    readonly tlsCertFile?: string;
    readonly tlsKeyFile?: string;
    readonly tlsCaFile?: string;
    readonly tlsRequireClientCert: boolean;
  };
  readonly http: {
    readonly host: string;
    readonly port: number;
    readonly dicomwebRoot: string;
    readonly stowMaxBytes: number;
    readonly qidoDefaultLimit: number;
    readonly qidoMaxLimit: number;
    readonly wadoUriPath: string;
    readonly corsOrigins?: string;
    readonly adminToken?: string;
    readonly compress: boolean;
    readonly compressMinBytes: number;
    readonly deleteEnabled: boolean;
    readonly thumbnailSize: number;
  };
  readonly worklist: { readonly upstream?: string; readonly refreshIntervalMs: number; readonly cacheTtlMs: number };
  /** `enabled` unset: the role decides (see {@link viewerEnabled}). */
  readonly viewer: { readonly enabled?: boolean; readonly path: string };
  readonly database: { readonly url?: string; readonly embeddedPort: number; readonly poolSize: number };
  readonly queue: {
    readonly redisUrl?: string;
    readonly prefix: string;
    readonly workerConcurrency: number;
    readonly reconcileIntervalMs: number;
    readonly reconcileAfterMs: number;
  };
  readonly export: {
    readonly routesFile?: string;
    readonly routesReloadMs: number;
    readonly maxAttempts: number;
    readonly backoffMs: number;
    readonly associationIdleMs: number;
    readonly reconcileIntervalMs: number;
    readonly reconcileAfterMs: number;
    readonly leaseMs: number;
    readonly commitmentTimeoutMs: number;
    readonly commitmentAssociationWaitMs: number;
    readonly commitmentMaxResends: number;
  };
  readonly objects: {
    readonly dir?: string;
    readonly s3Endpoint?: string;
    readonly s3AccessKey?: string;
    readonly s3SecretKey?: string;
    readonly s3Bucket: string;
    readonly s3Region: string;
  };
}

/** Thrown with every problem found, one per line, each naming the setting and the reason. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  /** Defaults to process.env. */
  readonly env?: Record<string, string | undefined>;
  /** YAML file; defaults to env PORTICO_CONFIG. */
  readonly file?: string;
  /** Highest-precedence overrides by dotted path (tests, CLI flags). */
  readonly overrides?: Record<string, unknown>;
}

function getPath(obj: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    cur[part] ??= {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts.at(-1)!] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function listPaths(obj: unknown, prefix = ''): string[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return [prefix];
  return Object.entries(obj).flatMap(([k, v]) => listPaths(v, prefix ? `${prefix}.${k}` : k));
}

/** Loads, validates and freezes the configuration. Throws {@link ConfigError} listing every problem. */
export function loadConfig(opts: LoadConfigOptions = {}): PorticoConfig {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  let fileValues: Record<string, unknown> = {};
  const file = opts.file ?? env['PORTICO_CONFIG'];
  if (file) {
    try {
      const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
      if (parsed !== null && parsed !== undefined && typeof parsed !== 'object') problems.push(`${file}: the top level must be a mapping`);
      else fileValues = (parsed ?? {}) as Record<string, unknown>;
    } catch (err) {
      problems.push(`${file}: ${(err as Error).message}`);
    }
    const known = new Set(SETTINGS.map((s) => s.path));
    for (const p of listPaths(fileValues)) if (p && !known.has(p)) problems.push(`${file}: unknown setting "${p}"`);
  }
  for (const name of Object.keys(env)) {
    if (
      name.startsWith('PORTICO_') &&
      name !== 'PORTICO_CONFIG' &&
      !name.startsWith('PORTICO_TEST_') &&
      !SETTINGS.some((s) => s.env === name) &&
      !LAUNCHER_ENV.some((v) => v.env === name)
    ) {
      problems.push(`${name}: unknown environment variable (see docs/configuration.md)`);
    }
  }

  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const fromEnv = env[s.env];
    const override = opts.overrides?.[s.path];
    let raw: unknown = override !== undefined ? override : fromEnv !== undefined && fromEnv !== '' ? fromEnv : getPath(fileValues, s.path);
    const source =
      override !== undefined ? 'override' : fromEnv !== undefined && fromEnv !== '' ? s.env : file && raw !== undefined ? `${file}: ${s.path}` : 'default';
    raw ??= s.default;
    const result = s.schema.safeParse(raw);
    if (!result.success) {
      const reason = result.error.issues.map((i) => i.message).join('; ');
      problems.push(`${s.env} (${s.path}, from ${source}): ${reason}${s.secret ? '' : ` (got ${JSON.stringify(raw)})`}`);
      continue;
    }
    if (result.data !== undefined) setPath(out, s.path, result.data);
  }
  const config = out as unknown as PorticoConfig;
  if (problems.length === 0) {
    const q = config.http;
    if (q.qidoDefaultLimit > q.qidoMaxLimit) problems.push('PORTICO_QIDO_DEFAULT_LIMIT must not exceed PORTICO_QIDO_MAX_LIMIT');
    if (config.http.dicomwebRoot === VIEWER_MOUNT || config.http.dicomwebRoot.startsWith(`${VIEWER_MOUNT}/`))
      problems.push(`PORTICO_DICOMWEB_ROOT must not lie under ${VIEWER_MOUNT}, where the viewer is served`);
    const o = config.objects;
    if (o.s3Endpoint && (!o.s3AccessKey || !o.s3SecretKey))
      problems.push('PORTICO_S3_ENDPOINT is set: PORTICO_S3_ACCESS_KEY and PORTICO_S3_SECRET_KEY are required');
    const d = config.dimse;
    if (d.tlsPort !== undefined && (!d.tlsCertFile || !d.tlsKeyFile))
      problems.push('PORTICO_DIMSE_TLS_PORT is set: PORTICO_DIMSE_TLS_CERT and PORTICO_DIMSE_TLS_KEY are required');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

/** Requirements of the cluster roles, checked by each role at start (they have no embedded backends). */
export function requireClusterBackends(config: PorticoConfig, role: string, needs: { database?: boolean; queue?: boolean; objects?: boolean }): void {
  const problems: string[] = [];
  if (needs.database && !config.database.url) problems.push(`PORTICO_DATABASE_URL: required by role "${role}" (only standalone embeds PostgreSQL)`);
  if (needs.queue && !config.queue.redisUrl && !config.database.url)
    problems.push(`PORTICO_REDIS_URL or PORTICO_DATABASE_URL: role "${role}" needs a queue backend`);
  if (needs.objects && !config.objects.s3Endpoint && !config.objects.dir)
    problems.push(`PORTICO_S3_ENDPOINT or PORTICO_OBJECTS_DIR: role "${role}" needs an object store shared with the other roles`);
  if (problems.length > 0) throw new ConfigError(problems);
}

/** The effective configuration with secrets masked, as YAML-ready plain data (for --print-config). */
export function maskedConfig(config: PorticoConfig): Record<string, unknown> {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const s of SETTINGS) {
    if (!s.secret) continue;
    const v = getPath(copy, s.path);
    if (typeof v === 'string' && v) setPath(copy, s.path, s.env.endsWith('_URL') ? maskUrl(v) : '********');
  }
  return copy;
}

function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '********';
    return u.toString();
  } catch {
    return '********';
  }
}

/** Where the OHIF viewer is served (fixed: its bundle's public path is rewritten to it). */
export const VIEWER_MOUNT = '/viewer';

/** Whether this role serves the viewer: PORTICO_VIEWER_ENABLED when set, else on in standalone only. */
export function viewerEnabled(config: PorticoConfig, role: string): boolean {
  return config.viewer.enabled ?? role === 'standalone';
}

/** Whether unknown calling AE titles are accepted: PORTICO_DIMSE_ALLOW_UNKNOWN_AE when set, else in standalone only. */
export function allowUnknownAe(config: PorticoConfig, role: string): boolean {
  return config.dimse.allowUnknownAe ?? role === 'standalone';
}

/** Object store folder in effect (standalone default: dataDir/objects). */
export function objectsDir(config: PorticoConfig): string {
  return path.resolve(config.objects.dir ?? path.join(config.dataDir, 'objects'));
}

/** Markdown table of every setting (docs/configuration.md is generated from this). */
export function settingsMarkdown(settings: readonly Setting[] = SETTINGS): string {
  const rows = settings.map(
    (s) =>
      `| \`${s.env}\` | \`${s.path}\` | ${s.default === undefined ? '' : `\`${String(s.default)}\``} | ${s.doc}${s.secret ? ' *(secret: masked in --print-config)*' : ''} |`,
  );
  return ['| environment variable | YAML path | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** Markdown table of the launcher's variables (bin/portico). */
export function launcherMarkdown(): string {
  const rows = LAUNCHER_ENV.map((v) => `| \`${v.env}\` | ${v.default === undefined ? '' : `\`${v.default}\``} | ${v.doc} |`);
  return ['| environment variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}
