import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import type { Config } from '../config.js';
import { startEmbeddedDatabase } from './embedded.js';
import { openStatementPool, type StatementPool } from './statements.js';
import { entities } from './entities.js';
import { migrationsList } from './migrations.js';

export interface Database {
  orm: MikroORM;
  /** true when running on the embedded PGlite server (single connection, single process). */
  embedded: boolean;
  url: string;
  /** The prepared statements' pool, when the delivery path's statements are prepared. */
  statements: StatementPool | undefined;
  close(): Promise<void>;
}

// Connections for the prepared statements: each publish, claim or record holds one for a single
// statement of a few milliseconds, so a few serve many requests and attempts at once.
const STATEMENT_POOL_MAX = 20;

export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  options: {
    poolMax?: number;
    /** Prepare the delivery path's statements on a pool of their own (real Postgres only). */
    preparedStatements?: boolean;
  } = {},
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
    const statements = embedded || !options.preparedStatements ? undefined : openStatementPool(orm, url, STATEMENT_POOL_MAX);
    return {
      orm,
      embedded: embedded !== undefined,
      url,
      statements,
      async close() {
        await statements?.close();
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
