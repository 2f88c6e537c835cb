// The limit for the API scenario: a bare node:http handler that runs the same SQL as the
// gateway's webhook list (what MikroORM emits for it) and answers the same JSON, with nothing
// else (no authentication, no GraphQL). Connects to BARE_DATABASE_URL, or serves a PGlite data
// directory (BARE_PGLITE_DIR) over a loopback socket and connects to that, as the embedded
// gateway does. Prints its URL once it listens.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';

const LIST_SQL = 'select "w0".* from "webhook" as "w0" where "w0"."tenant_id" = $1 order by "w0"."seq" desc';

interface WebhookRow {
  id: string;
  name: string;
  url: string;
  events: string[];
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
  last_delivery_status: string | null;
  last_delivery_at: Date | null;
}

async function connectionString(): Promise<{ url: string; poolMax: number; close(): Promise<void> }> {
  const dir = process.env['BARE_PGLITE_DIR'];
  if (!dir) return { url: process.env['BARE_DATABASE_URL']!, poolMax: Number(process.env['BARE_POOL_MAX'] ?? 42), close: () => Promise.resolve() };
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(dir);
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 4 });
  await server.start();
  return {
    url: `postgresql://postgres:postgres@${server.getServerConn()}/postgres?sslmode=disable`,
    poolMax: 1,
    async close() {
      await server.stop();
      await db.close();
    },
  };
}

const database = await connectionString();
const pool = new pg.Pool({ connectionString: database.url, max: database.poolMax });

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://bare.invalid');
  const tenant = url.searchParams.get('tenant') ?? '';
  pool
    .query<WebhookRow>(LIST_SQL, [tenant])
    .then(({ rows }) => {
      const text = JSON.stringify(
        rows.map((w) => ({
          id: w.id,
          name: w.name,
          url: w.url,
          events: w.events,
          enabled: w.enabled,
          created_at: w.created_at.toISOString(),
          updated_at: w.updated_at.toISOString(),
          last_delivery_status: w.last_delivery_status,
          last_delivery_at: w.last_delivery_at?.toISOString() ?? null,
        })),
      );
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    })
    .catch((err: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`bare api on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});

process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close();
  void pool.end().then(() => database.close()).then(() => process.exit(0));
});
