// A fresh database for each gateway the benchmarks start: a new database on the server named by
// DATABASE_URL, or a new embedded data directory. Direct SQL (seeding, the bare API handler) goes
// to the server, or for the embedded database straight to PGlite while no gateway holds it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';

export const serverUrl = process.env['DATABASE_URL'] || undefined;

export interface BenchDatabase {
  /** Environment for the gateway: DATABASE_URL and DATA_DIR. */
  env: Record<string, string>;
  /** Connection string of this database on the real server; undefined when embedded. */
  url: string | undefined;
  dataDir: string;
  /**
   * Runs SQL directly against this database. On the embedded database only while no gateway
   * has it open (PGlite is one process's database).
   */
  withSql<T>(fn: (query: SqlQuery) => Promise<T>): Promise<T>;
  drop(): Promise<void>;
}

export type SqlQuery = <R = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<R[]>;

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createBenchDatabase(): Promise<BenchDatabase> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gateway-bench-'));
  if (!serverUrl) {
    return {
      env: { DATA_DIR: dataDir },
      url: undefined,
      dataDir,
      async withSql(fn) {
        const { PGlite } = await import('@electric-sql/pglite');
        const db = await PGlite.create(path.join(dataDir, 'pgdata'));
        try {
          return await fn(async (sql, params) => (await db.query(sql, params)).rows as never[]);
        } finally {
          await db.close();
        }
      },
      drop: () => rm(dataDir, { recursive: true, force: true }),
    };
  }
  const name = `gateway_bench_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`create database ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString(), DATA_DIR: dataDir },
    url: url.toString(),
    dataDir,
    async withSql(fn) {
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        return await fn(async (sql, params) => (await client.query(sql, params)).rows as never[]);
      } finally {
        await client.end();
      }
    },
    async drop() {
      await admin((c) => c.query(`drop database if exists ${name} with (force)`));
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** `select version()` of the server the benchmarks run on (PGlite's own when embedded). */
export async function databaseVersion(): Promise<string> {
  if (serverUrl) return admin(async (c) => String((await c.query('select version() as v')).rows[0].v));
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create();
  try {
    const rows = (await db.query<{ v: string }>('select version() as v')).rows;
    return `PGlite (embedded): ${rows[0]?.v ?? 'unknown'}`;
  } finally {
    await db.close();
  }
}
