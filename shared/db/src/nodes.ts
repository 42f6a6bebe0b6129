/**
 * DICOM nodes kept in the database (admin API); the nodes file holds the rest (see @portico/config
 * nodes.ts). Values are validated by the caller with the same schema as the file.
 */
import type { Queryable } from './pool.ts';

export interface NodeRow {
  readonly aeTitle: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly services: string[];
}

export async function listDbNodes(db: Queryable): Promise<NodeRow[]> {
  const { rows } = await db.query<{ ae_title: string; host: string; port: number; tls: boolean; services: string[] }>(
    'SELECT ae_title, host, port, tls, services FROM dicom_node ORDER BY ae_title',
  );
  return rows.map((r) => ({ aeTitle: r.ae_title, host: r.host, port: r.port, tls: r.tls, services: r.services }));
}

export async function putDbNode(db: Queryable, n: NodeRow): Promise<'created' | 'updated'> {
  const { rows } = await db.query<{ inserted: boolean }>(
    `INSERT INTO dicom_node (ae_title, host, port, tls, services) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (ae_title) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, tls = EXCLUDED.tls, services = EXCLUDED.services, updated_at = now()
     RETURNING (xmax = 0) AS inserted`,
    [n.aeTitle, n.host, n.port, n.tls, n.services],
  );
  return rows[0]!.inserted ? 'created' : 'updated';
}

export async function deleteDbNode(db: Queryable, aeTitle: string): Promise<boolean> {
  const r = await db.query('DELETE FROM dicom_node WHERE ae_title = $1', [aeTitle]);
  return (r.rowCount ?? 0) > 0;
}
