import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
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

export async function migrate(db: Database): Promise<string[]> {
  const applied = await db.orm.getMigrator().up();
  return applied.map((m) => m.name);
}
