import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createTestDatabase, postgresAnswers, startEmbeddedPostgres, testPostgresUrl } from './postgres.ts';

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

describe('testPostgresUrl', () => {
  it('resolves to a superuser URL, the same one on every call', async () => {
    const url = await testPostgresUrl();
    expect(await testPostgresUrl()).toBe(url);
    const { rows } = await query(url, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
    expect(rows[0]).toEqual({ rolsuper: true });
  });
});

describe('createTestDatabase', () => {
  it('creates a fresh database and drops it, even with a connection open', async () => {
    const db = await createTestDatabase();
    expect(db.name).toMatch(/^portico_test_[0-9a-f]{12}$/);
    expect(new URL(db.url).pathname).toBe(`/${db.name}`);
    await query(db.url, 'CREATE TABLE t (id int)');
    const open = new pg.Client({ connectionString: db.url });
    open.on('error', () => undefined); // the forced drop terminates this connection
    await open.connect();
    await db.drop();
    await open.end().catch(() => undefined);
    const { rows } = await query(await testPostgresUrl(), `SELECT 1 FROM pg_database WHERE datname = '${db.name}'`);
    expect(rows).toEqual([]);
    await db.drop(); // dropping twice is fine
  });

  it('clones from a template', async () => {
    const template = await createTestDatabase();
    await query(template.url, 'CREATE TABLE schema_version (v int); INSERT INTO schema_version VALUES (7)');
    const clone = await createTestDatabase({ template: template.name });
    try {
      const { rows } = await query(clone.url, 'SELECT v FROM schema_version');
      expect(rows).toEqual([{ v: 7 }]);
    } finally {
      await clone.drop();
      await template.drop();
    }
  });
});

describe('startEmbeddedPostgres', () => {
  it('starts a real PostgreSQL on a free port and stops it', { timeout: 120_000 }, async () => {
    const server = await startEmbeddedPostgres();
    try {
      const { rows } = await query(server.url, 'SELECT current_setting($$server_version_num$$)::int AS v');
      expect(rows[0]?.v).toBeGreaterThanOrEqual(180000);
    } finally {
      await server.stop();
    }
    expect(await postgresAnswers(server.url, 1000)).toBe(false);
  });
});
