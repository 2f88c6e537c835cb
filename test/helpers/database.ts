// A fresh database for each gateway a test starts: a new database on the real server when
// DATABASE_URL is set (CI), otherwise a new embedded data directory. Both are copies of what the
// run's global setup made once (test/setup/template-database.ts): migrated by default, or just
// created with `{ migrated: false }` for tests of migrating itself.
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';

export const realPostgresUrl = process.env['DATABASE_URL'] || undefined;
export const onRealPostgres = realPostgresUrl !== undefined;

export interface TestDatabase {
  /** Environment for the gateway: DATABASE_URL or DATA_DIR. */
  env: Record<string, string>;
  /** A connection string for direct inspection (real Postgres only). */
  url: string | undefined;
  dataDir: string;
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: realPostgresUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const migrated = options.migrated ?? true;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gateway-test-'));
  if (!realPostgresUrl) {
    const templates = inject('embeddedTemplates');
    await cp(path.join(migrated ? templates.migrated : templates.empty, 'pgdata'), path.join(dataDir, 'pgdata'), { recursive: true });
    return { env: { DATA_DIR: dataDir }, url: undefined, dataDir, drop: () => rm(dataDir, { recursive: true, force: true }) };
  }
  const name = `gateway_test_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(migrated ? `create database ${name} template ${inject('postgresTemplate')}` : `create database ${name}`));
  const url = new URL(realPostgresUrl);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString(), DATA_DIR: dataDir },
    url: url.toString(),
    dataDir,
    async drop() {
      await admin((c) => c.query(`drop database if exists ${name} with (force)`));
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
