// MikroORM's set-up (its pool is one of the connections src/db/connections.ts opens) and the
// migrations run at every start.
import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Database } from './connections.js';
import { entities } from './entities.js';
import { migrationsList } from './migrations.js';

export async function createOrm(options: {
  url: string;
  /** pg settings shared by every connection of the gateway (time limits, keepalive, socket). */
  settings: pg.ClientConfig;
  poolMax: number;
  /** How long a caller may wait for one of the pool's connections. */
  acquireTimeoutMs: number;
  logger?: Logger | undefined;
}): Promise<MikroORM> {
  const logger = options.logger;
  return MikroORM.init({
    clientUrl: options.url,
    // The driver's own settings win over what MikroORM reads from clientUrl: the connection string
    // as pg reads it (TLS, Unix sockets), time limits, keepalive.
    // The query builder's own warnings (a pooled connection found dropped, say) go to the log as
    // JSON lines rather than to the console.
    driverOptions: {
      connection: options.settings,
      log: {
        warn: (message: unknown) => logger?.warn({ detail: String(message) }, 'database driver warning'),
        error: (message: unknown) => logger?.error({ detail: String(message) }, 'database driver error'),
        deprecate: () => undefined,
        debug: () => undefined,
      },
    },
    entities,
    extensions: [Migrator],
    discovery: { warnWhenNoEntities: false },
    allowGlobalContext: false,
    forceUtcTimezone: true,
    ensureDatabase: false,
    pool: { min: 0, max: options.poolMax, acquireTimeoutMillis: options.acquireTimeoutMs, idleTimeoutMillis: 10_000 },
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
}

// Any number of processes may start at once on a fresh database; a session-level advisory lock,
// held on a connection of the service pool for the whole run, lets one migrate while the others
// wait and then find nothing left to do. The lock is tried rather than waited for, so that no
// call outlasts DATABASE_QUERY_TIMEOUT however long another process's migrations take.
const MIGRATION_LOCK = 724_311_901;
const MIGRATION_LOCK_RETRY_MS = 250;

export async function migrate(db: Database): Promise<string[]> {
  const run = async () => (await db.orm.getMigrator().up()).map((m) => m.name);
  if (!db.service) return run();
  const lock = await db.service.connect();
  let broken = false;
  try {
    for (;;) {
      const { rows } = await lock.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [MIGRATION_LOCK]);
      if (rows[0]?.locked) break;
      await new Promise((resolve) => setTimeout(resolve, MIGRATION_LOCK_RETRY_MS));
    }
    return await run();
  } catch (err) {
    broken = true;
    throw err;
  } finally {
    if (!broken) await lock.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => (broken = true));
    lock.release(broken);
  }
}
