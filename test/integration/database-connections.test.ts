// The gateway's connections to Postgres: one budget (DATABASE_POOL_SIZE) split between its pools
// and checked against the server's max_connections at start, and errors sorted into those a retry
// can fix and the rest.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase, planConnections, type Database } from '../../src/db/connections.js';
import { isRetryableDatabaseError } from '../../src/db/retryable-errors.js';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, realPostgresUrl, type TestDatabase } from '../helpers/database.js';
import { createWebhook, freePort, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { startReceiver } from '../helpers/receiver.js';

async function errorOf(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('the connection budget', () => {
  it('by default, one process of any role fits twice into a default max_connections of 100', () => {
    const config = loadConfig({});
    expect(config.databasePoolSize).toBe(40);
    expect(config.databaseQueryTimeoutMs).toBe(30_000);
    for (const [role, workerThread] of [
      ['all', true],
      ['all', false],
      ['api', false],
      ['worker', false],
    ] as const) {
      for (const preparedStatements of [true, false]) {
        const plan = planConnections(config.databasePoolSize, { role, workerThread, preparedStatements, embedded: false });
        expect(plan.total).toBe(config.databasePoolSize);
        // 100 less the 3 connections Postgres reserves for superusers by default.
        expect(2 * plan.total).toBeLessThanOrEqual(97);
        for (const share of [plan.main, plan.thread].filter((s) => s !== undefined)) {
          expect(share.orm).toBeGreaterThanOrEqual(1);
          expect(share.statements >= 1).toBe(preparedStatements);
        }
        expect(plan.thread !== undefined).toBe(workerThread);
      }
    }
    expect(planConnections(40, { role: 'all', workerThread: false, preparedStatements: true, embedded: true }).total).toBe(1);
  });

  it('a budget too small for the pools is refused with the smallest that works', () => {
    expect(() => planConnections(6, { role: 'all', workerThread: true, preparedStatements: true, embedded: false })).toThrow(
      'DATABASE_POOL_SIZE=6 is too small: ROLE=all with the worker on a thread of its own needs at least 9 connections',
    );
    expect(planConnections(9, { role: 'all', workerThread: true, preparedStatements: true, embedded: false }).total).toBe(9);
  });

  it.skipIf(!onRealPostgres)('a budget over the server’s max_connections stops the start with a message that says what to change', async () => {
    const database = await createTestDatabase();
    try {
      const max = Number((await query(realPostgresUrl!, 'show max_connections'))[0]!.max_connections);
      const started = startTestGateway({ DATABASE_POOL_SIZE: String(max + 1) }, database);
      await expect(started).rejects.toThrow(
        new RegExp(
          `^DATABASE_POOL_SIZE=${max + 1} is more than the database server accepts: max_connections is ${max}, \\d+ of them reserved for superusers, ` +
            `so at most \\d+ are left for this gateway\\. Lower DATABASE_POOL_SIZE \\(each gateway process opens up to that many\\) or raise max_connections on the server\\.$`,
        ),
      );
    } finally {
      await database.drop();
    }
  });

  describe.skipIf(!onRealPostgres)('a running gateway (real Postgres)', () => {
    let database: TestDatabase | undefined;
    afterAll(async () => {
      await database?.drop();
    });

    it('opens no more connections than DATABASE_POOL_SIZE, worker thread included, under load', async () => {
      database = await createTestDatabase();
      const gw = await startTestGateway({ DATABASE_POOL_SIZE: '12', WORKER_POLL_INTERVAL: '50ms', RATE_LIMIT_PER_MINUTE: '100000', WORKER_THREAD: 'true' }, database);
      expect(gw.gateway.config.workerThread).toBe(true);
      const receiver = await startReceiver();
      try {
        expect(gw.gateway.config.role).toBe('all');
        const api = client(gw.url, await userToken(uniqueTenant('budget')));
        const hooks = [];
        for (let i = 0; i < 6; i += 1) hooks.push(await createWebhook(api, { url: `${receiver.url}/${i}`, events: ['drift.detected'] }));
        const name = new URL(database.url!).pathname.slice(1);
        let most = 0;
        const sample = async () => {
          const [row] = await query(realPostgresUrl!, 'select count(*)::int as n from pg_stat_activity where datname = $1', [name]);
          most = Math.max(most, row!.n as number);
        };
        const publishes = Array.from({ length: 60 }, (_, n) => api.post('/api/v1/events', { event: 'drift.detected', data: { n } }));
        const sampling = (async () => {
          while (receiver.requests.length < 6 * 60) {
            await sample();
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();
        for (const res of await Promise.all(publishes)) expect(res.status, res.text).toBe(202);
        await receiver.waitFor(6 * 60 + 6, { timeoutMs: 60_000 });
        await sampling;
        await sample();
        expect(most).toBeGreaterThan(2);
        expect(most).toBeLessThanOrEqual(12);
      } finally {
        await receiver.close();
        await gw.stop();
      }
      // An outer limit for a busy machine: the gateway and its worker's thread start in this test.
    }, 90_000);
  });
});

async function query(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, values)).rows;
  } finally {
    await c.end();
  }
}

describe('errors a retry can fix', () => {
  let db: Database;
  beforeAll(async () => {
    const database = await createTestDatabase();
    db = await openDatabase({ databaseUrl: database.url, dataDir: database.dataDir });
    return async () => {
      await db.close();
      await database.drop();
    };
  });

  it('a refused connection, a serialization failure, a deadlock and a restarting server are retried', async () => {
    const port = await freePort();
    const refused = await errorOf(() => new pg.Client({ host: '127.0.0.1', port, connectionTimeoutMillis: 5_000 }).connect());
    expect(isRetryableDatabaseError(refused)).toBe(true);
    const knex = db.orm.em.fork().getConnection().getKnex();
    for (const state of ['40001', '40P01', '57P01', '57P03']) {
      const err = await errorOf(() => knex.raw(`do $$ begin raise exception 'fault' using errcode = '${state}'; end $$`));
      expect(err).toBeInstanceOf(pg.DatabaseError);
      expect(isRetryableDatabaseError(err), state).toBe(true);
    }
  });

  it('an error the statement would repeat, or one after which it may have run, is not', async () => {
    const knex = db.orm.em.fork().getConnection().getKnex();
    const division = await errorOf(() => knex.raw('select 1 / 0'));
    expect((division as pg.DatabaseError).code).toBe('22012');
    expect(isRetryableDatabaseError(division)).toBe(false);
    const duplicate = await errorOf(() => knex.raw(`do $$ begin raise exception 'fault' using errcode = '23505'; end $$`));
    expect(isRetryableDatabaseError(duplicate)).toBe(false);
    // The client stopped waiting: the statement may still have run.
    const c = new pg.Client({ connectionString: db.url, query_timeout: 100 });
    await c.connect();
    try {
      const late = await errorOf(() => c.query('select pg_sleep(1)'));
      expect((late as Error).message).toBe('Query read timeout');
      expect(isRetryableDatabaseError(late)).toBe(false);
    } finally {
      await c.end().catch(() => undefined);
    }
  });
});
