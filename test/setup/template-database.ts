// Global setup: one migrated database per test run, which every test file then copies (see
// test/helpers/database.ts). Migrating a database takes a second, and making a fresh embedded data
// directory (PGlite's initdb, in WebAssembly) takes several; copying either takes a fraction of that.
// - Real Postgres (DATABASE_URL): a template database, copied with CREATE DATABASE ... TEMPLATE.
// - Embedded: a data directory made once, copied file by file into each test's DATA_DIR.
// Names carry a random part, so two runs on one machine (or one server) never share a template.
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/connections.js';
import { migrate } from '../../src/db/orm.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Real Postgres: the name of the migrated template database. */
    postgresTemplate: string;
    /** Embedded: data directories holding pgdata/, one fresh from initdb, one migrated as well. */
    embeddedTemplates: { empty: string; migrated: string };
  }
}

async function onServer(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function migrateAt(config: { databaseUrl: string | undefined; dataDir: string }): Promise<void> {
  const db = await openDatabase(config);
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const serverUrl = process.env['DATABASE_URL'] || undefined;
  if (serverUrl) {
    const name = `gateway_template_${randomBytes(6).toString('hex')}`;
    await onServer(serverUrl, `create database ${name}`);
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    try {
      await migrateAt({ databaseUrl: url.toString(), dataDir: tmpdir() });
    } catch (err) {
      await onServer(serverUrl, `drop database if exists ${name} with (force)`);
      throw err;
    }
    project.provide('postgresTemplate', name);
    return () => onServer(serverUrl, `drop database if exists ${name} with (force)`);
  }

  const root = await mkdtemp(path.join(tmpdir(), 'gateway-template-'));
  const empty = path.join(root, 'empty');
  const migrated = path.join(root, 'migrated');
  try {
    // Opening a database on an empty DATA_DIR runs initdb; closed again, the directory is a clean
    // copy of a new cluster. A copy of it is then migrated.
    const fresh = await openDatabase({ databaseUrl: undefined, dataDir: empty });
    await fresh.close();
    await cp(path.join(empty, 'pgdata'), path.join(migrated, 'pgdata'), { recursive: true });
    await migrateAt({ databaseUrl: undefined, dataDir: migrated });
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  project.provide('embeddedTemplates', { empty, migrated });
  return () => rm(root, { recursive: true, force: true });
}
