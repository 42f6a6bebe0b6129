/**
 * How tests and benchmarks start Portico: through bin/portico, the launcher every deployment uses, so
 * that they run with the same V8 flags (young and old generation sizes, see there) and are measured as
 * users run it. bin/portico execs Node, so the child's pid is the Node process itself.
 */
import { join, resolve } from 'node:path';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');
export const PORTICO_LAUNCHER = join(REPO_ROOT, 'bin/portico');

/**
 * Command, arguments and the environment additions for `portico <args>` on this Node (process.execPath),
 * with extra Node flags (e.g. `--cpu-prof`) passed through NODE_OPTIONS.
 */
export function porticoCommand(args: readonly string[], nodeFlags: readonly string[] = []): { command: string; args: string[]; env: Record<string, string> } {
  const options = [process.env['NODE_OPTIONS'] ?? '', ...nodeFlags].filter((s) => s !== '').join(' ');
  return { command: PORTICO_LAUNCHER, args: [...args], env: { PORTICO_NODE: process.execPath, ...(options ? { NODE_OPTIONS: options } : {}) } };
}
