/**
 * The settings table: every setting Portico reads, once. The environment variable, the YAML path, the
 * type, the default and the documentation all come from here, so `--print-config`, the generated
 * docs/configuration.md and the loader cannot disagree.
 *
 * Environment variables carry the `PORTICO_` prefix because Kubernetes injects `<SERVICE>_PORT`
 * variables that would collide with bare names.
 */
import { z } from 'zod';

export interface Setting {
  /** Dotted path in the config object and in the YAML file. */
  readonly path: string;
  readonly env: string;
  readonly schema: z.ZodType;
  /** Default as the user would write it (undefined: no default). */
  readonly default?: string | number | boolean;
  readonly doc: string;
  /** Masked by --print-config and never logged. */
  readonly secret?: boolean;
}

const port = z.coerce.number().int().min(0).max(65535);
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
const aeTitle = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'AE title: 1-16 characters of the default repertoire, no backslash (PS3.5 §6.2 AE)')
  .refine((s) => s.trim().length > 0, 'AE title must not be all spaces');
const positiveInt = z.coerce.number().int().positive();
const optionalString = z.string().optional();

/**
 * Variables read by the launcher (bin/portico) before Node starts, not by Portico: allowed in the
 * environment, documented with the settings, never part of the configuration.
 */
export const LAUNCHER_ENV: ReadonlyArray<{ readonly env: string; readonly default?: string; readonly doc: string }> = [
  { env: 'PORTICO_NODE', doc: 'The Node.js binary to run (default: `.node/bin/node` when `make deps` fetched one, else `node` on PATH).' },
  {
    env: 'PORTICO_NODE_SEMI_SPACE_MB',
    default: '4',
    doc: "V8 young generation semi-space (MiB): small, so the ingest path's short-lived buffers die in cheap scavenges.",
  },
  {
    env: 'PORTICO_NODE_OLD_SPACE_MB',
    default: '1024',
    doc: 'V8 old generation limit (MiB). It also bounds how much dead external memory (socket buffers) piles up before a full collection: peak RSS during STOW-RS ingest 260 -> ~215 MB against the 4 GiB default.',
  },
  {
    env: 'MALLOC_MMAP_THRESHOLD_',
    default: '131072',
    doc: "glibc's malloc: blocks above this many bytes are mmap'd and returned to the system when freed. Fixed, so that glibc does not raise it after large frees and keep socket and instance buffers in its heaps: peak RSS during ingest 230-265 -> 198-240 MiB.",
  },
];

export const SETTINGS: readonly Setting[] = [
  {
    path: 'dataDir',
    env: 'PORTICO_DATA_DIR',
    schema: z.string().min(1),
    default: './data',
    doc: 'Folder for standalone data: embedded PostgreSQL (`pg/`) and objects (`objects/`).',
  },
  {
    path: 'log.level',
    env: 'PORTICO_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    doc: 'pino log level.',
  },
  {
    path: 'shutdownGraceMs',
    env: 'PORTICO_SHUTDOWN_GRACE_MS',
    schema: positiveInt,
    default: 10000,
    doc: 'How long shutdown waits for in-flight associations, requests and jobs before aborting them.',
  },

  { path: 'dimse.host', env: 'PORTICO_DIMSE_HOST', schema: z.string().min(1), default: '0.0.0.0', doc: 'Address the DIMSE SCP listens on.' },
  { path: 'dimse.port', env: 'PORTICO_DIMSE_PORT', schema: port, default: 11112, doc: 'DIMSE SCP port (0 picks a free port).' },
  { path: 'dimse.aeTitle', env: 'PORTICO_AE_TITLE', schema: aeTitle, default: 'PORTICO', doc: 'Our AE title.' },
  {
    path: 'dimse.checkCalledAeTitle',
    env: 'PORTICO_DIMSE_CHECK_CALLED_AE',
    schema: bool,
    default: false,
    doc: 'Reject associations whose Called AE Title is not ours (A-ASSOCIATE-RJ reason 7).',
  },
  {
    path: 'dimse.maxPduLength',
    env: 'PORTICO_DIMSE_MAX_PDU',
    schema: z.coerce.number().int().min(4096).max(1048576),
    default: 262144,
    doc: 'Maximum PDU length we receive (bytes).',
  },
  {
    path: 'dimse.maxAssociations',
    env: 'PORTICO_DIMSE_MAX_ASSOCIATIONS',
    schema: positiveInt,
    default: 64,
    doc: 'Concurrent associations; more are rejected with reason 2 (local limit exceeded, PS3.8 §9.3.4).',
  },
  {
    path: 'dimse.associationTimeoutMs',
    env: 'PORTICO_DIMSE_ARTIM_MS',
    schema: positiveInt,
    default: 30000,
    doc: 'ARTIM: time allowed from TCP connect to A-ASSOCIATE-RQ.',
  },
  { path: 'dimse.idleTimeoutMs', env: 'PORTICO_DIMSE_IDLE_TIMEOUT_MS', schema: positiveInt, default: 120000, doc: 'Abort an association idle for this long.' },
  {
    path: 'dimse.allowUnknownAe',
    env: 'PORTICO_DIMSE_ALLOW_UNKNOWN_AE',
    schema: bool.optional(),
    doc: 'Accept associations from calling AE titles not in the nodes file. Unset: yes in standalone (development default), no in the `dimse` role (A-ASSOCIATE-RJ reason 3, calling AE title not recognised).',
  },
  {
    path: 'dimse.maxAssociationsPerAe',
    env: 'PORTICO_DIMSE_MAX_ASSOCIATIONS_PER_AE',
    schema: positiveInt,
    default: 16,
    doc: 'Concurrent associations from one calling AE title; more are rejected with reason 2 (local limit exceeded).',
  },
  {
    path: 'dimse.commitmentWaitMs',
    env: 'PORTICO_DIMSE_COMMITMENT_WAIT_MS',
    schema: z.coerce.number().int().min(0),
    default: 10000,
    doc: 'Storage commitment: how long instances not yet indexed (acknowledged moments ago, still in the ingest queue) are looked for before they are reported failed (0x0112).',
  },
  {
    path: 'worklist.upstream',
    env: 'PORTICO_WORKLIST_UPSTREAM',
    schema: z
      .string()
      .regex(/^[^@\\]{1,16}@[^:]+:\d{1,5}$/, 'AE@host:port')
      .optional(),
    doc: 'Upstream modality worklist (RIS or MWL SCP) as `AE@host:port`. Set: Portico answers Modality Worklist C-FIND from it, through a cache. Unset: no worklist service.',
  },
  {
    path: 'worklist.refreshIntervalMs',
    env: 'PORTICO_WORKLIST_REFRESH_MS',
    schema: positiveInt,
    default: 60000,
    doc: 'How often the whole upstream worklist is pulled into the cache.',
  },
  {
    path: 'worklist.cacheTtlMs',
    env: 'PORTICO_WORKLIST_CACHE_TTL_MS',
    schema: positiveInt,
    default: 604800000,
    doc: 'Cached worklist items not seen upstream for this long are dropped (default 7 days).',
  },
  {
    path: 'dimse.tlsPort',
    env: 'PORTICO_DIMSE_TLS_PORT',
    schema: port.optional(),
    doc: 'DIMSE over TLS (PS3.15 Annex B): a second listener on this port (2762 is the registered one). Needs the certificate and key files.',
  },
  {
    path: 'dimse.tlsCertFile',
    env: 'PORTICO_DIMSE_TLS_CERT',
    schema: optionalString,
    doc: 'PEM certificate (chain) of our AE, for the TLS listener and for outgoing TLS associations.',
  },
  { path: 'dimse.tlsKeyFile', env: 'PORTICO_DIMSE_TLS_KEY', schema: optionalString, doc: 'PEM private key of that certificate.' },
  {
    path: 'dimse.tlsCaFile',
    env: 'PORTICO_DIMSE_TLS_CA',
    schema: optionalString,
    doc: 'PEM certificates we trust: peers we connect to over TLS, and client certificates when they are required. Unset: the system trust store.',
  },
  {
    path: 'dimse.tlsRequireClientCert',
    env: 'PORTICO_DIMSE_TLS_REQUIRE_CLIENT_CERT',
    schema: bool,
    default: false,
    doc: 'TLS listener: refuse peers without a certificate signed by a trusted CA (mutual TLS).',
  },
  {
    path: 'dimse.nodesReloadMs',
    env: 'PORTICO_NODES_RELOAD_MS',
    schema: positiveInt,
    default: 5000,
    doc: 'How often the dimse role reloads the nodes added through the admin API.',
  },
  {
    path: 'dimse.nodesFile',
    env: 'PORTICO_NODES_FILE',
    schema: optionalString,
    doc: 'YAML file of known DICOM nodes (AE title, host, port): the C-MOVE destinations. See docs/nodes.md.',
  },
  {
    path: 'dimse.scuTimeoutMs',
    env: 'PORTICO_DIMSE_SCU_TIMEOUT_MS',
    schema: positiveInt,
    default: 30000,
    doc: 'Time allowed for an outgoing association (C-MOVE sub-operations) to connect, negotiate and answer each C-STORE.',
  },

  { path: 'http.host', env: 'PORTICO_HTTP_HOST', schema: z.string().min(1), default: '0.0.0.0', doc: 'Address the HTTP server listens on.' },
  { path: 'http.port', env: 'PORTICO_HTTP_PORT', schema: port, default: 8080, doc: 'HTTP port for DICOMweb, /livez, /readyz.' },
  {
    path: 'http.dicomwebRoot',
    env: 'PORTICO_DICOMWEB_ROOT',
    schema: z.string().regex(/^\/[A-Za-z0-9/_-]*[^/]$/, 'a path like /dicom-web (leading slash, no trailing slash)'),
    default: '/dicom-web',
    doc: 'Base path of the DICOMweb services.',
  },
  {
    path: 'http.stowMaxBytes',
    env: 'PORTICO_STOW_MAX_BYTES',
    schema: positiveInt,
    default: 4 * 1024 * 1024 * 1024,
    doc: 'Largest STOW-RS request body accepted (413 above).',
  },
  {
    path: 'http.qidoDefaultLimit',
    env: 'PORTICO_QIDO_DEFAULT_LIMIT',
    schema: positiveInt,
    default: 1000,
    doc: 'QIDO-RS results when the request has no limit.',
  },
  { path: 'http.qidoMaxLimit', env: 'PORTICO_QIDO_MAX_LIMIT', schema: positiveInt, default: 10000, doc: 'Largest limit a QIDO-RS request may ask for.' },
  {
    path: 'viewer.enabled',
    env: 'PORTICO_VIEWER_ENABLED',
    schema: bool.optional(),
    doc: 'Serve the OHIF viewer at /viewer, configured for our own DICOMweb root. Unset: on in standalone, off in the `dicomweb` role.',
  },
  {
    path: 'viewer.path',
    env: 'PORTICO_VIEWER_PATH',
    schema: z.string().min(1),
    default: './.viewer/dist',
    doc: 'Folder of the prebuilt OHIF bundle (`dist/` of the npm package @ohif/app; `make viewer` fetches it there).',
  },
  {
    path: 'http.adminToken',
    env: 'PORTICO_ADMIN_TOKEN',
    schema: z.string().min(16, 'at least 16 characters').optional(),
    secret: true,
    doc: 'Bearer token of the admin API (`/admin/…`: DICOM nodes). Unset: the admin API answers 404.',
  },
  {
    path: 'http.corsOrigins',
    env: 'PORTICO_HTTP_CORS_ORIGINS',
    schema: optionalString,
    doc: 'Origins allowed to call DICOMweb from a browser (a viewer served elsewhere): comma-separated, e.g. `https://viewer.example.org`, or `*`. Unset: no CORS headers (same-origin only; the built-in viewer needs none).',
  },
  {
    path: 'http.compress',
    env: 'PORTICO_HTTP_COMPRESS',
    schema: bool,
    default: true,
    doc: "gzip/deflate JSON answers (QIDO-RS, metadata, STOW-RS responses) and the viewer's scripts and styles when the client accepts it; DICOM bodies, frames and images are sent as they are.",
  },
  {
    path: 'http.compressMinBytes',
    env: 'PORTICO_HTTP_COMPRESS_MIN_BYTES',
    schema: positiveInt,
    default: 32768,
    doc: 'Smallest answer that is compressed. Below it compressing costs more than it saves on a LAN (a 25-study QIDO page, 18 KiB: ~0.35 ms of server CPU and ~0.5 ms of latency with gzip, measured on loopback); set 1024 when clients reach Portico over a slow link without a compressing proxy in front.',
  },
  {
    path: 'http.deleteEnabled',
    env: 'PORTICO_HTTP_DELETE_ENABLED',
    schema: bool,
    default: true,
    doc: 'Allow DELETE of studies, series and instances (index rows and stored objects). false: DELETE answers 405.',
  },
  {
    path: 'http.wadoUriPath',
    env: 'PORTICO_WADO_URI_PATH',
    schema: z.string().regex(/^\/[A-Za-z0-9/_-]*[^/]$/, 'a path like /wado (leading slash, no trailing slash)'),
    default: '/wado',
    doc: 'Path of the WADO-URI service (`?requestType=WADO&studyUID=…`), outside the DICOMweb root as PS3.18 §9 clients expect.',
  },
  {
    path: 'http.thumbnailSize',
    env: 'PORTICO_THUMBNAIL_SIZE',
    schema: z.coerce.number().int().min(16).max(1024),
    default: 128,
    doc: 'Largest side in pixels of a WADO-RS thumbnail when the request has no viewport.',
  },

  {
    path: 'database.url',
    env: 'PORTICO_DATABASE_URL',
    schema: optionalString,
    doc: 'PostgreSQL URL. Required for the cluster roles; empty in standalone starts an embedded PostgreSQL under dataDir/pg.',
    secret: true,
  },
  {
    path: 'database.embeddedPort',
    env: 'PORTICO_EMBEDDED_PG_PORT',
    schema: port,
    default: 54329,
    doc: 'Port of the embedded PostgreSQL (standalone; loopback only).',
  },
  { path: 'database.poolSize', env: 'PORTICO_DATABASE_POOL_SIZE', schema: positiveInt, default: 10, doc: 'Connections per process.' },

  {
    path: 'queue.redisUrl',
    env: 'PORTICO_REDIS_URL',
    schema: optionalString,
    doc: "Redis URL for BullMQ. Empty: queues in the index database (the ingest queue in a table of its own, export queues on BullMQ's PostgreSQL backend).",
    secret: true,
  },
  {
    path: 'queue.prefix',
    env: 'PORTICO_QUEUE_PREFIX',
    schema: z.string().regex(/^[a-z][a-z0-9_]*$/, 'lower-case letters, digits, underscore; no ":"'),
    default: 'portico',
    doc: 'Redis key prefix, or PostgreSQL schema of the queue tables.',
  },
  {
    path: 'queue.workerConcurrency',
    env: 'PORTICO_WORKER_CONCURRENCY',
    schema: positiveInt,
    default: 8,
    doc: 'Ingest jobs processed at once per worker process.',
  },

  {
    path: 'queue.reconcileIntervalMs',
    env: 'PORTICO_RECONCILE_INTERVAL_MS',
    schema: positiveInt,
    default: 300000,
    doc: 'How often the worker looks for staged objects whose ingest job was lost (a queue backend that lost data) and re-enqueues them.',
  },
  {
    path: 'queue.reconcileAfterMs',
    env: 'PORTICO_RECONCILE_AFTER_MS',
    schema: positiveInt,
    default: 600000,
    doc: 'Age of a staged object before the reconciler considers its job lost (a re-added job that still exists is ignored).',
  },
  {
    path: 'export.routesFile',
    env: 'PORTICO_ROUTES_FILE',
    schema: optionalString,
    doc: 'routes.yml: where each received instance is forwarded (docs/routing.md). Unset: nothing is forwarded.',
  },
  {
    path: 'export.routesReloadMs',
    env: 'PORTICO_ROUTES_RELOAD_MS',
    schema: positiveInt,
    default: 2000,
    doc: 'How often the routes file is checked for changes; an invalid new file is logged and the last valid rules stay in force.',
  },
  {
    path: 'export.maxAttempts',
    env: 'PORTICO_EXPORT_MAX_ATTEMPTS',
    schema: positiveInt,
    default: 10,
    doc: 'Delivery attempts of an instance to a destination before it is dead (an operator can retry it).',
  },
  {
    path: 'export.backoffMs',
    env: 'PORTICO_EXPORT_BACKOFF_MS',
    schema: positiveInt,
    default: 2000,
    doc: 'First retry delay; each further attempt waits twice as long, with up to 50% jitter.',
  },
  {
    path: 'export.associationIdleMs',
    env: 'PORTICO_EXPORT_ASSOCIATION_IDLE_MS',
    schema: z.coerce.number().int().min(0),
    default: 2000,
    doc: 'How long an export association stays open after its last instance, for the next one of the same study.',
  },
  {
    path: 'export.reconcileIntervalMs',
    env: 'PORTICO_EXPORT_RECONCILE_INTERVAL_MS',
    schema: positiveInt,
    default: 30000,
    doc: 'How often the export role re-enqueues deliveries whose queue job was lost (queue backend restarted without its data).',
  },
  {
    path: 'export.reconcileAfterMs',
    env: 'PORTICO_EXPORT_RECONCILE_AFTER_MS',
    schema: positiveInt,
    default: 60000,
    doc: 'Age of an unfinished delivery (queued, failed, or sending past its lease) before the reconciler re-enqueues it.',
  },
  {
    path: 'export.leaseMs',
    env: 'PORTICO_EXPORT_LEASE_MS',
    schema: positiveInt,
    default: 120000,
    doc: "How long an export process holds a delivery it is sending; a crashed sender's deliveries are taken over after this.",
  },
  {
    path: 'export.commitmentTimeoutMs',
    env: 'PORTICO_EXPORT_COMMITMENT_TIMEOUT_MS',
    schema: positiveInt,
    default: 3600000,
    doc: 'Storage commitment asked of a destination (nodes.yml `storageCommitment: true`): how long its N-EVENT-REPORT is waited for before the outcome is recorded as timeout.',
  },
  {
    path: 'export.commitmentAssociationWaitMs',
    env: 'PORTICO_EXPORT_COMMITMENT_ASSOCIATION_WAIT_MS',
    schema: z.coerce.number().int().min(0),
    default: 2000,
    doc: 'How long the association of an N-ACTION (storage commitment request) stays open for the N-EVENT-REPORT on it; a later report comes on a new association to the DIMSE SCP.',
  },
  {
    path: 'export.commitmentMaxResends',
    env: 'PORTICO_EXPORT_COMMITMENT_MAX_RESENDS',
    schema: z.coerce.number().int().min(0),
    default: 2,
    doc: 'Times an instance whose storage commitment failed is delivered again; after that the delivery is dead (an operator can retry it).',
  },
  { path: 'objects.dir', env: 'PORTICO_OBJECTS_DIR', schema: optionalString, doc: 'Folder object store. Default dataDir/objects when no S3 endpoint is set.' },
  {
    path: 'objects.s3Endpoint',
    env: 'PORTICO_S3_ENDPOINT',
    schema: z.url().optional(),
    doc: 'S3/MinIO endpoint URL (http://host:9000). Set to use S3 instead of a folder.',
  },
  { path: 'objects.s3AccessKey', env: 'PORTICO_S3_ACCESS_KEY', schema: optionalString, doc: 'S3 access key.', secret: true },
  { path: 'objects.s3SecretKey', env: 'PORTICO_S3_SECRET_KEY', schema: optionalString, doc: 'S3 secret key.', secret: true },
  { path: 'objects.s3Bucket', env: 'PORTICO_S3_BUCKET', schema: z.string().min(3).max(63), default: 'portico', doc: 'Bucket (created when missing).' },
  { path: 'objects.s3Region', env: 'PORTICO_S3_REGION', schema: z.string(), default: 'us-east-1', doc: 'S3 region.' },
];
