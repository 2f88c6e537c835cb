// Reads a gateway's database directly (not through the API), for tests about what is stored.
import pg from 'pg';

/** Runs `fn` with a client connected to `url` (the real server or the embedded one's socket). */
export async function withPg<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TableDump {
  table: string;
  /** Every row as the JSON text of all its columns. */
  rows: string[];
}

/** Every row of every table in the public schema, each as the text of row_to_json. */
export async function dumpAllTables(url: string): Promise<TableDump[]> {
  return withPg(url, async (client) => {
    const tables = await client.query<{ table_name: string }>(
      `select table_name from information_schema.tables
        where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`,
    );
    const dumps: TableDump[] = [];
    for (const { table_name } of tables.rows) {
      const quoted = `"${table_name.replace(/"/g, '""')}"`;
      const result = await client.query<{ row: string }>(`select row_to_json(t)::text as row from ${quoted} t`);
      dumps.push({ table: table_name, rows: result.rows.map((r) => r.row) });
    }
    return dumps;
  });
}
