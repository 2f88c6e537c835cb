import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import type { Config } from '../config.js';
import { startEmbeddedDatabase } from './embedded.js';
import { entities } from './entities.js';
import { migrationsList } from './migrations.js';

export interface Database {
  orm: MikroORM;
  /** true when running on the embedded PGlite server (single connection, single process). */
  embedded: boolean;
  url: string;
  close(): Promise<void>;
}

export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  options: { poolMax?: number } = {},
): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedDatabase(config.dataDir) : undefined;
  const url = embedded?.url ?? config.databaseUrl!;
  try {
    const orm = await MikroORM.init({
      clientUrl: url,
      entities,
      extensions: [Migrator],
      discovery: { warnWhenNoEntities: false },
      allowGlobalContext: false,
      forceUtcTimezone: true,
      ensureDatabase: false,
      // PGlite answers one query at a time; more pooled connections would only queue.
      pool: embedded ? { min: 0, max: 1 } : { min: 0, max: options.poolMax ?? 20 },
      migrations: {
        migrationsList,
        tableName: 'mikro_orm_migrations',
        transactional: true,
        allOrNothing: true,
        snapshot: false,
        silent: true,
      },
      debug: false,
    });
    return {
      orm,
      embedded: embedded !== undefined,
      url,
      async close() {
        await orm.close(true);
        await embedded?.close();
      },
    };
  } catch (err) {
    await embedded?.close();
    throw err;
  }
}

// Any number of processes may start at once on a fresh database; a session-level advisory lock,
// held on a connection of its own for the whole run, lets one migrate while the others wait and
// then find nothing left to do.
const MIGRATION_LOCK = 724_311_901;

export async function migrate(db: Database): Promise<string[]> {
  const run = async () => (await db.orm.getMigrator().up()).map((m) => m.name);
  if (db.embedded) return run();
  const lock = new pg.Client({ connectionString: db.url });
  await lock.connect();
  try {
    await lock.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    return await run();
  } finally {
    await lock.end().catch(() => undefined);
  }
}
