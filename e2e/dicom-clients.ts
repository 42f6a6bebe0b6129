/**
 * Small real-client helpers for end-to-end tests: dcmsend report parsing, a storescp +B reference
 * receiver (the exact bytes a sender put on the wire), multipart/related bodies both ways.
 */
import { readFileSync, readdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileMetaInformation } from '@portico/dicom';

export interface DcmsendEntry {
  readonly file: string;
  readonly sopInstanceUid: string;
  readonly status: string; // '0x0000 (Success)', '<not sent>', '0xa700 ...'
}

/** Parses the report written by `dcmsend +crf <file>`. */
export function parseDcmsendReport(text: string): DcmsendEntry[] {
  const entries: DcmsendEntry[] = [];
  for (const block of text.split(/\n(?=Number\s+:)/)) {
    const get = (label: string): string => new RegExp(`^${label}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim() ?? '';
    const file = get('Filename');
    if (file) entries.push({ file, sopInstanceUid: get('SOP Instance'), status: get('DIMSE Status') });
  }
  return entries;
}

/** Offset of the data set in a Part-10 file: after preamble, 'DICM' and the group length-delimited meta. */
export function datasetOffset(buf: Buffer): number {
  if (buf.toString('latin1', 128, 132) !== 'DICM') throw new Error('no DICM prefix');
  if (buf.readUInt16LE(132) !== 0x0002 || buf.readUInt16LE(134) !== 0x0000) throw new Error('meta group starts without (0002,0000)');
  return 132 + 12 + buf.readUInt32LE(140);
}

/** Sends folders with dcmsend to host:port and returns the per-file report. */
export async function dcmsend(
  cwd: string,
  port: number,
  folders: string[],
  opts: { aec?: string; extra?: string[] } = {},
): Promise<{ entries: DcmsendEntry[]; output: string; code: number | null }> {
  const report = path.join(mkdtempSync(path.join(tmpdir(), 'dcmsend-')), 'report.txt');
  const args = ['-nh', '+sd', '+r', ...(opts.extra ?? []), '127.0.0.1', String(port), ...folders, '-aec', opts.aec ?? 'PORTICO', '+crf', report];
  const { code, output } = await runTool('dcmsend', args, cwd);
  return { entries: parseDcmsendReport(readFileSync(report, 'utf8')), output, code };
}

export function runTool(cmd: string, args: string[], cwd?: string, timeoutMs = 300_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, TCP_NODELAY: '1' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Sends the folders to a dcmtk `storescp +B` (bit-preserving, all transfer syntaxes accepted) and returns
 * the data set bytes it received, by SOP Instance UID: what dcmsend actually put on the wire (it re-encodes
 * while sending, and converts Big Endian). `-dn` (never decompress) makes dcmsend propose only the file's
 * own syntax for compressed files, so storescp and Portico negotiate the same transfer syntax.
 */
export async function referenceBytes(cwd: string, folders: string[], port: number): Promise<Map<string, Buffer>> {
  const out = mkdtempSync(path.join(tmpdir(), 'storescp-ref-'));
  const scp = spawn('storescp', ['+xa', '+B', '-od', out, '-aet', 'REF', String(port)], { env: { ...process.env, TCP_NODELAY: '1' } });
  try {
    await new Promise((r) => setTimeout(r, 500));
    await dcmsend(cwd, port, folders, { aec: 'REF', extra: ['-dn'] });
  } finally {
    scp.kill();
  }
  const map = new Map<string, Buffer>();
  for (const f of readdirSync(out)) {
    const buf = readFileSync(path.join(out, f));
    map.set(readFileMetaInformation(buf).sopInstanceUid, buf.subarray(datasetOffset(buf)));
  }
  return map;
}

export interface Part {
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** Splits a buffered multipart/related body (tests only: they fetch small studies). */
export function parseMultipart(body: Buffer, contentType: string): Part[] {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in ${contentType}`);
  const delim = Buffer.from(`--${boundary}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delim);
  while (pos !== -1) {
    const start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', start);
    const next = body.indexOf(delim, headerEnd);
    if (headerEnd === -1 || next === -1) throw new Error('truncated multipart body');
    const headers: Record<string, string> = {};
    for (const line of body
      .subarray(start + 2, headerEnd)
      .toString('latin1')
      .split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    parts.push({ headers, body: body.subarray(headerEnd + 4, next - 2) });
    pos = next;
  }
  return parts;
}

/** A STOW-RS request body (multipart/related; type="application/dicom"), one part per file. */
export function stowBody(files: string[]): { body: Buffer; contentType: string } {
  const boundary = `portico-${randomUUID()}`;
  const chunks: Buffer[] = [];
  for (const f of files) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), readFileSync(f), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}
