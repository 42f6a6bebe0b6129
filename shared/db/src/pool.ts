import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * A statement with a name: each pooled connection parses and plans its text once (a named prepared
 * statement; after five executions PostgreSQL keeps a generic plan when it is no worse), instead of on
 * every execution. For the fixed statements that run per instance (on the ingest path, parsing, analysing
 * and planning unnamed statements were ~24% of PostgreSQL's CPU: perf, 2 x 500 instances); texts built at
 * run time go through {@link Db.queryPrepared}.
 */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
}

/** Anything that runs a query: the pool or a client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string | NamedStatement, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export interface Db extends Queryable {
  readonly pool: pg.Pool;
  readonly url: string;
  /**
   * A {@link NamedStatement} for texts built at run time from a bounded family (the QIDO-RS and C-FIND
   * shapes: values are bind parameters), named after a hash of the text. Past
   * {@link MAX_NAMED_STATEMENTS} distinct texts, unnamed as `query`.
   */
  queryPrepared<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>>;
  /**
   * Runs fn inside BEGIN/COMMIT on one client; ROLLBACK on error. `asyncCommit` does not wait for the WAL
   * flush at COMMIT (synchronous_commit off for this transaction only): for work that is safe to redo.
   */
  transaction<T>(fn: (client: Queryable) => Promise<T>, opts?: { asyncCommit?: boolean }): Promise<T>;
  /** Throws when the database does not answer (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Distinct texts {@link Db.queryPrepared} names, so that a connection holds a bounded set of statements. */
export const MAX_NAMED_STATEMENTS = 500;

/** A pool for one process. Errors on idle clients are logged by the caller via `onError`, never crash. */
export function openDb(url: string, options: { poolSize?: number; onError?: (err: Error) => void; applicationName?: string } = {}): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'portico',
    connectionTimeoutMillis: 5000,
  });
  pool.on('error', (err) => options.onError?.(err));
  let closed = false;
  const names = new Map<string, string>();
  return {
    pool,
    url,
    query: (text, values) => pool.query(asQuery(text, values)),
    queryPrepared: (text, values) => {
      let name = names.get(text);
      if (name === undefined && names.size < MAX_NAMED_STATEMENTS) {
        name = `q_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
        names.set(text, name);
      }
      return pool.query(asQuery(name === undefined ? text : { name, text }, values));
    },
    async transaction(fn, opts) {
      const client = await pool.connect();
      // A checked-out client has no pool 'error' listener; a server that goes away while we hold it
      // (between two statements) must fail this transaction, not crash the process.
      const onError = (err: Error): void => options.onError?.(err);
      client.on('error', onError);
      try {
        // one round trip: a simple-protocol query may hold several statements
        await client.query(opts?.asyncCommit ? 'BEGIN; SET LOCAL synchronous_commit = off' : 'BEGIN');
        const result = await fn({ query: (q, values) => client.query(asQuery(q, values)) });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.off('error', onError);
        client.release();
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}

/** A fresh config per call: pg writes `values` into the config object it is given. */
export function asQuery(q: string | NamedStatement, values?: unknown[]): pg.QueryConfig {
  return typeof q === 'string' ? { text: q, ...(values ? { values } : {}) } : { name: q.name, text: q.text, ...(values ? { values } : {}) };
}
