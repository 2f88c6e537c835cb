// Statements on the delivery path (publish, claim, record) run many times a second and carry
// whole request and response bodies. MikroORM's `execute` writes the values into the SQL text,
// escaping every body into the statement in JavaScript first and making Postgres read it back as
// a literal. These go straight to a pooled pg connection instead, with the values bound as
// parameters. They are deliberately not named (prepared once per connection): a plan cached while
// a table is small (a fresh install) would keep scanning it whole as it grows, until the next
// ANALYZE; planned per call, each one fits the tables as they are.
import type { EntityManager } from '@mikro-orm/postgresql';
import type pg from 'pg';

interface KnexClient {
  acquireConnection(): Promise<pg.ClientBase>;
  releaseConnection(connection: pg.ClientBase): Promise<unknown>;
}

/**
 * Runs a statement with bound values ($1, $2, ...) on a pooled connection (or on the connection of
 * the transaction `em` is in) and answers its rows. Errors are the driver's own (`code` is the
 * SQLSTATE).
 */
export async function runStatement<R extends pg.QueryResultRow>(
  em: EntityManager,
  text: string,
  values: unknown[],
): Promise<R[]> {
  return withConnection(em, async (connection) => (await connection.query<R>(text, values)).rows);
}

/**
 * Runs several statements, separated by semicolons, in one round trip (the simple query protocol:
 * no bound values). Postgres runs them as one transaction, rolled back whole if one fails, and in
 * READ COMMITTED each statement sees what committed before it started, so a lock taken by one is
 * held, and seen through, by the next. Answers each statement's rows.
 */
export async function runScript(em: EntityManager, text: string): Promise<pg.QueryResultRow[][]> {
  return withConnection(em, async (connection) => {
    const result = (await connection.query(text)) as pg.QueryResult | pg.QueryResult[];
    return (Array.isArray(result) ? result : [result]).map((r) => r.rows);
  });
}

async function withConnection<T>(em: EntityManager, use: (connection: pg.ClientBase) => Promise<T>): Promise<T> {
  const knex = em.getTransactionContext() ?? em.getConnection().getKnex();
  const client = (knex as unknown as { client: KnexClient }).client;
  const connection = await client.acquireConnection();
  try {
    return await use(connection);
  } finally {
    await client.releaseConnection(connection);
  }
}
