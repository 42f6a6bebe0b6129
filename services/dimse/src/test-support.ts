/** Helpers shared by the DIMSE integration tests. */
import type { Db } from '@portico/db';

/** Waits until `SELECT count(*) FROM <table>` reaches n (the worker indexed, the refresh cached…). */
export async function waitForRows(db: Db, table: 'instance' | 'worklist_item', n: number, timeoutMs = 60_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; ;) {
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    if (rows[0]!.n >= n) return;
    if (Date.now() > until) throw new Error(`only ${rows[0]!.n} of ${n} rows in ${table} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
