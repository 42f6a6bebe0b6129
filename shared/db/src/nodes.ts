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
  /** Export settings (accepted transfer syntaxes, associations, calling AE…), validated by the caller. */
  readonly options?: Record<string, unknown>;
}

export async function listDbNodes(db: Queryable): Promise<NodeRow[]> {
  const { rows } = await db.query<{ ae_title: string; host: string; port: number; tls: boolean; services: string[]; options: Record<string, unknown> }>(
    'SELECT ae_title, host, port, tls, services, options FROM dicom_node ORDER BY ae_title',
  );
  return rows.map((r) => ({ aeTitle: r.ae_title, host: r.host, port: r.port, tls: r.tls, services: r.services, options: r.options }));
}

export async function putDbNode(db: Queryable, n: NodeRow): Promise<'created' | 'updated'> {
  const { rows } = await db.query<{ inserted: boolean }>(
    `INSERT INTO dicom_node (ae_title, host, port, tls, services, options) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (ae_title) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, tls = EXCLUDED.tls, services = EXCLUDED.services,
       options = EXCLUDED.options, updated_at = now()
     RETURNING (xmax = 0) AS inserted`,
    [n.aeTitle, n.host, n.port, n.tls, n.services, JSON.stringify(n.options ?? {})],
  );
  return rows[0]!.inserted ? 'created' : 'updated';
}

export async function deleteDbNode(db: Queryable, aeTitle: string): Promise<boolean> {
  const r = await db.query('DELETE FROM dicom_node WHERE ae_title = $1', [aeTitle]);
  return (r.rowCount ?? 0) > 0;
}

/** DICOMweb destinations added through the admin API; `definition` is validated by the caller. */
export async function listDbDicomwebDestinations(db: Queryable): Promise<Array<{ name: string; definition: Record<string, unknown> }>> {
  const { rows } = await db.query<{ name: string; definition: Record<string, unknown> }>('SELECT name, definition FROM dicomweb_destination ORDER BY name');
  return rows;
}

export async function putDbDicomwebDestination(db: Queryable, name: string, definition: object): Promise<'created' | 'updated'> {
  const { rows } = await db.query<{ inserted: boolean }>(
    `INSERT INTO dicomweb_destination (name, definition) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
     RETURNING (xmax = 0) AS inserted`,
    [name, JSON.stringify(definition)],
  );
  return rows[0]!.inserted ? 'created' : 'updated';
}

export async function deleteDbDicomwebDestination(db: Queryable, name: string): Promise<boolean> {
  const r = await db.query('DELETE FROM dicomweb_destination WHERE name = $1', [name]);
  return (r.rowCount ?? 0) > 0;
}
