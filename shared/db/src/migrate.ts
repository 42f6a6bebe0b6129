/**
 * Numbered plain-SQL migrations (`migrations/NNNN_name.sql`), applied in order under an advisory lock so
 * concurrent `portico migrate` runs (a Helm hook and a developer, say) serialise. Each file runs in its
 * own transaction together with its row in `schema_migration`. Services call {@link assertSchemaCurrent}
 * at start and refuse to run on an older schema.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Db } from './pool.ts';

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');
/** Arbitrary constant: 'PORT' in ASCII. */
const ADVISORY_LOCK_KEY = 0x504f5254;

export function listMigrations(): Array<{ version: number; name: string; file: string }> {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 4)), name: f.slice(5, -4), file: path.join(MIGRATIONS_DIR, f) }));
}

export const LATEST_SCHEMA_VERSION = Math.max(0, ...listMigrations().map((m) => m.version));

/** Applies pending migrations; returns the versions applied. */
export async function migrate(db: Db, log?: { info(obj: object, msg: string): void }): Promise<number[]> {
  const client = await db.pool.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migration (
      version integer CONSTRAINT schema_migration_pkey PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migration')).rows.map((r) => r.version));
    for (const m of listMigrations()) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(readFileSync(m.file, 'utf8'));
        await client.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.version);
      log?.info({ version: m.version, name: m.name }, 'migration applied');
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => undefined);
    client.release();
  }
  return applied;
}

/** Throws unless every migration this build knows has been applied (run `portico migrate`). */
export async function assertSchemaCurrent(db: Db): Promise<void> {
  const res = await db.query<{ v: number | null }>(`SELECT (SELECT max(version) FROM schema_migration) AS v WHERE to_regclass('schema_migration') IS NOT NULL`);
  const current = res.rows[0]?.v ?? 0;
  if (current < LATEST_SCHEMA_VERSION) {
    throw new Error(`database schema is at version ${current}, this build needs ${LATEST_SCHEMA_VERSION}: run "portico migrate" first`);
  }
}
