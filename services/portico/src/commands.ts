/**
 * Operator commands of `portico` (not roles): `route --explain`, `status`, `export retry|cancel|replay`.
 *
 * `route --explain` runs here, on the routes file of the configuration, without a server. `status` and
 * `export` talk to a running Portico's admin API (`--url`, default http://127.0.0.1:<http.port>, with
 * the admin token of the configuration), so they work the same against standalone and cluster.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { PorticoConfig } from '@portico/config';

export const COMMANDS = ['route', 'status', 'export'] as const;
export type Command = (typeof COMMANDS)[number];

export const COMMANDS_HELP = `Operator commands:
  route --explain <file.dcm> [--calling-ae AE] [--called-ae AE] [--source dimse|stow-rs]
               which destinations the routes file (PORTICO_ROUTES_FILE) sends that instance to, and
               which rule decided each; no server needed
  status <StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID>
               the journey of each instance: received, stored, routed, delivered/failed per destination
  export retry|cancel [--destination D] [--study UID] [--sop UID] [--status s1,s2]
               retry failed/dead/cancelled deliveries, or cancel unfinished ones
  export replay --destination D (--study UID | --sop UID)
               send stored instances to a destination again
  (status and export use the admin API of a running Portico: --url <base> (default
   http://127.0.0.1:<http.port>) and the token PORTICO_ADMIN_TOKEN)
`;

const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string): void => void process.stderr.write(`portico: ${s}\n`);

function time(v: unknown): string {
  return typeof v === 'string' ? v.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

async function admin(config: PorticoConfig, url: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const base = (url ?? `http://127.0.0.1:${config.http.port}`).replace(/\/$/, '');
  const token = config.http.adminToken;
  if (!token) throw new Error('PORTICO_ADMIN_TOKEN is not set: the admin API needs it (the server must have the same one)');
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  }).catch((e: unknown) => {
    throw new Error(`cannot reach the admin API at ${base}: ${(e as Error).message}`);
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const detail = (json as { detail?: string })?.detail ?? text.slice(0, 300);
    throw new Error(`${method} ${path}: HTTP ${res.status}: ${detail}`);
  }
  return { status: res.status, json };
}

export async function runCommand(command: Command, args: string[], config: PorticoConfig): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      explain: { type: 'string' },
      'calling-ae': { type: 'string' },
      'called-ae': { type: 'string' },
      source: { type: 'string' },
      url: { type: 'string' },
      destination: { type: 'string' },
      study: { type: 'string' },
      sop: { type: 'string' },
      status: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (command === 'route') {
    if (!values.explain) {
      err('route: --explain <file.dcm> is required');
      return 2;
    }
    if (!config.export.routesFile) {
      err('no routes file is configured (PORTICO_ROUTES_FILE or export.routesFile)');
      return 78;
    }
    const { loadRoutes, evaluateRoutes, SOURCES } = await import('@portico/routing');
    const { parseInstance } = await import('@portico/dicom');
    const routes = loadRoutes(config.export.routesFile);
    const source = values.source ?? 'dimse';
    if (!(SOURCES as readonly string[]).includes(source)) {
      err(`--source: one of ${SOURCES.join(', ')}`);
      return 2;
    }
    const parsed = await parseInstance([readFileSync(values.explain)]);
    const x = evaluateRoutes(routes, parsed.json as never, {
      source: source as 'dimse',
      ...(values['calling-ae'] ? { callingAeTitle: values['calling-ae'] } : {}),
      ...(values['called-ae'] ? { calledAeTitle: values['called-ae'] } : {}),
    });
    if (values.json) {
      out(JSON.stringify(x, null, 2));
      return 0;
    }
    out(`${values.explain} (SOP Instance UID ${parsed.sopInstanceUid})`);
    if (x.destinations.length === 0) out('  goes nowhere: stored only');
    for (const d of x.destinations) {
      const how = [
        d.transferSyntaxUid ? `transcoded to ${d.transferSyntaxUid}` : 'as stored',
        d.mutations.length ? `${d.mutations.length} attribute change(s)` : '',
      ]
        .filter(Boolean)
        .join(', ');
      out(`  → ${d.destination}: ${how} (rule ${d.rule})`);
    }
    for (const r of x.removed) out(`  ✗ ${r.destination}: removed by rule ${r.rule}`);
    out(`  rules: ${x.rules.map((r) => `${r.rule}${r.matched ? ' (matched)' : ''}`).join(', ') || '(none)'}`);
    return 0;
  }
  if (command === 'status') {
    const uid = positionals[0];
    if (!uid) {
      err('status <StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID>');
      return 2;
    }
    const { json } = await admin(config, values.url, 'GET', `/admin/status/${encodeURIComponent(uid)}`);
    if (values.json) {
      out(JSON.stringify(json, null, 2));
      return 0;
    }
    for (const i of json as Array<Record<string, unknown>>) {
      out(`${String(i['sopInstanceUid'])}  (study ${String(i['studyInstanceUid'])})`);
      out(`  received ${time(i['received'])} via ${String(i['source'])}${i['callingAeTitle'] ? ` from ${String(i['callingAeTitle'])}` : ''}`);
      out(`  stored   ${time(i['stored'])}`);
      const dests = i['destinations'] as Array<Record<string, unknown>>;
      if (dests.length === 0) out('  routed   nowhere');
      for (const d of dests) {
        const when = d['status'] === 'delivered' ? time(d['delivered']) : time(d['lastAttempt']);
        out(
          `  → ${String(d['destination'])}: routed ${time(d['routed'])} (rule ${String(d['rule'])}), ${String(d['status'])} ${when}, ${String(d['attempts'])} attempt(s)${d['lastError'] ? `, last error: ${String(d['lastError'])}` : ''}`,
        );
        const c = d['commitment'] as Record<string, unknown> | null | undefined;
        if (c) {
          const at = c['status'] === 'requested' || c['status'] === 'timeout' ? time(c['requested']) : time(c['answered']);
          out(`      storage commitment ${String(c['status'])} ${at}${c['error'] ? ` (${String(c['error'])})` : ''}`);
        }
      }
    }
    return 0;
  }
  // export
  const action = positionals[0];
  if (action !== 'retry' && action !== 'cancel' && action !== 'replay') {
    err('export retry|cancel|replay [--destination D] [--study UID] [--sop UID] [--status s1,s2]');
    return 2;
  }
  const body = {
    ...(values.destination ? { destination: values.destination } : {}),
    ...(values.study ? { studyInstanceUid: values.study } : {}),
    ...(values.sop ? { sopInstanceUid: values.sop } : {}),
    ...(values.status ? { status: values.status.split(',') } : {}),
  };
  const { json } = await admin(config, values.url, 'POST', `/admin/exports/${action}`, body);
  out(JSON.stringify(json));
  return 0;
}
