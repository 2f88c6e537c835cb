// Statements on the delivery path (publish, claim, record) run many times a second with the same
// text. MikroORM's `execute` writes the values into the SQL text, so Postgres parses and plans
// every call anew and a response body is escaped into the statement in JavaScript first. These
// go straight to a pooled pg connection instead, as named prepared statements with bound values:
// each connection parses and plans a statement once, and values travel as parameters.
import type { EntityManager } from '@mikro-orm/postgresql';
import type pg from 'pg';

export interface Statement {
  /** Unique per text: pg keeps a prepared statement per connection under this name. */
  name: string;
  text: string;
}

interface KnexClient {
  acquireConnection(): Promise<pg.ClientBase>;
  releaseConnection(connection: pg.ClientBase): Promise<unknown>;
}

/**
 * Runs a prepared statement on a pooled connection (or on the connection of the transaction `em`
 * is in) and answers its rows. Errors are the driver's own (`code` is the SQLSTATE).
 */
export async function runStatement<R extends pg.QueryResultRow>(
  em: EntityManager,
  statement: Statement,
  values: unknown[],
): Promise<R[]> {
  const knex = em.getTransactionContext() ?? em.getConnection().getKnex();
  const client = (knex as unknown as { client: KnexClient }).client;
  const connection = await client.acquireConnection();
  try {
    const result = await connection.query<R>({ name: statement.name, text: statement.text, values });
    return result.rows;
  } finally {
    await client.releaseConnection(connection);
  }
}
