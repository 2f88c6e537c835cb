// Statements on the delivery path (publish, claim, record) run many times a second and carry
// whole request and response bodies. MikroORM's `execute` writes the values into the SQL text,
// escaping every body into the statement in JavaScript first and making Postgres read it back as
// a literal. These go straight to a pg connection instead, with the values bound as parameters.
//
// On a real Postgres they are also prepared: planning them took more of Postgres's time than
// running them (2 to 3 ms for a claim or a record batch, against well under a millisecond of
// work). A cached plan has a trap, though: a plan made while the tables are small (a fresh
// install) is a sequential scan or a hash join over a whole table, and it would be kept as the
// table grows, until the next ANALYZE. So they run on a pool of their own whose connections may
// not plan sequential scans, hash joins or merge joins, and always use the generic plan: every
// plan is then index probes and nested loops, whatever the size of the tables when it was made,
// which is the shape these statements are written for (each reads a handful of rows through an
// index). The claim, which must follow an advisory lock in the same transaction, is PREPAREd in
// SQL instead and EXECUTEd after the lock in one simple-protocol query: one round trip, like the
// others. The rest of the gateway keeps the default planner. With
// DATABASE_PREPARED_STATEMENTS=false (for a pooler that cannot keep prepared statements or
// session settings), and on the embedded database, they are planned per call on the ORM's pool.
import { createHash } from 'node:crypto';
import type { EntityManager, Knex, MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';

/** Session settings of the prepared statements' connections (see above). */
export const PREPARED_PLANNER_SETTINGS: Readonly<Record<string, string>> = {
  enable_seqscan: 'off',
  enable_hashjoin: 'off',
  enable_mergejoin: 'off',
  plan_cache_mode: 'force_generic_plan',
};

const SETTINGS_SQL = Object.entries(PREPARED_PLANNER_SETTINGS)
  .map(([name, value]) => `set ${name} = ${value}`)
  .join('; ');

/** Where an ORM's prepared statements' pool is registered, on the ORM's own configuration. */
const EXTENSION = '@infraaudit/statement-pool';

export interface StatementPool {
  /** A connection with the planner settings applied, for tests and diagnostics. */
  connect(): Promise<pg.PoolClient>;
  close(): Promise<void>;
}

interface PreparedPool extends StatementPool {
  /** Names PREPAREd (SQL) on each of the pool's connections. */
  preparedByConnection: WeakMap<pg.ClientBase, Set<string>>;
}

/**
 * Opens the pool the delivery path's prepared statements run on, for the ORM `orm`, with the pg
 * settings every connection of the gateway has. Connections open when first needed and close
 * after 10 s unused.
 */
export function openStatementPool(orm: MikroORM, settings: pg.ClientConfig, max: number): StatementPool {
  const pool = new pg.Pool({ ...settings, max, idleTimeoutMillis: 10_000 });
  // A connection the server drops (a restart, pg_terminate_backend) or that stops answering fails
  // the statement running on it, if any, and is taken out of the pool when released; the next
  // checkout opens a fresh one. pg also reports the drop as an 'error' event, on the pool while the
  // connection is idle and on the connection itself while it is checked out: both listeners only
  // keep that event from being an uncaught exception.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const configured = new WeakSet<pg.PoolClient>();
  const handle: PreparedPool = {
    preparedByConnection: new WeakMap(),
    async connect() {
      const client = await pool.connect();
      if (!configured.has(client)) {
        try {
          await client.query(SETTINGS_SQL);
        } catch (err) {
          client.release(true);
          throw err;
        }
        configured.add(client);
      }
      return client;
    },
    close: () => pool.end(),
  };
  orm.config.registerExtension(EXTENSION, () => handle);
  return handle;
}

const names = new Map<string, string>();

/** A statement's name on the server: the same text always gets the same name. */
function nameOf(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `gw_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}

/**
 * Runs a statement with bound values ($1, $2, ...) and answers its rows: on the connection of the
 * transaction `em` is in when there is one, else prepared on the statement pool when the ORM has
 * one, else on a connection of the ORM's pool. Errors are the driver's own (`code` is the SQLSTATE).
 */
export async function runStatement<R extends pg.QueryResultRow>(
  em: EntityManager,
  text: string,
  values: unknown[],
): Promise<R[]> {
  return withConnection(em, (c) => c.query<R>(text, values));
}

/**
 * Runs a statement after taking the transaction-scoped advisory lock `lock`, in one round trip and
 * one transaction (the caller's, if `em` is in one), and answers its rows. The two go as one
 * simple-protocol query: in READ COMMITTED the statement's snapshot is taken once the lock is
 * held, so it sees everything the previous holder of the lock committed. The simple protocol
 * cannot bind values, so they are written into the query as literals: finite numbers, and arrays
 * of strings (escaped, as text[]). On the statement pool the statement is prepared once per
 * connection (SQL PREPARE) and the query EXECUTEs it.
 */
export async function runAfterLock<R extends pg.QueryResultRow>(
  em: EntityManager,
  lock: number,
  text: string,
  values: (number | readonly string[])[],
): Promise<R[]> {
  if (!Number.isSafeInteger(lock)) throw new Error(`advisory lock keys are whole numbers, got ${lock}`);
  const literals = values.map(literal);
  return withConnection(em, async (c) => {
    const statement = c.prepared
      ? `execute ${await c.prepare(text)}(${literals.join(', ')})`
      : text.replace(/\$(\d+)/g, (_, n: string) => {
          const value = literals[Number(n) - 1];
          if (value === undefined) throw new Error(`no value for $${n}`);
          return `(${value})`;
        });
    const results = await c.script(`select pg_advisory_xact_lock(${lock});\n${statement}`);
    return results[results.length - 1] as R[];
  });
}

const isStringArray = (value: unknown): value is readonly string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

/** A value as an SQL literal, for the simple protocol, which cannot bind values. */
function literal(value: number | readonly string[]): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`numbers written into a query must be finite, got ${value}`);
    return String(value);
  }
  if (!isStringArray(value)) throw new Error('expected a number or an array of strings');
  return `array[${value.map((v) => pg.escapeLiteral(v)).join(', ')}]::text[]`;
}

interface Connection {
  /** true on the statement pool: statements are prepared once and run with generic plans. */
  prepared: boolean;
  /** A statement with bound values (named, so prepared, on the statement pool). */
  query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<R[]>;
  /** Statements separated by semicolons, in one round trip (simple protocol); each one's rows. */
  script(text: string): Promise<pg.QueryResultRow[][]>;
  /** PREPAREs `text` on this connection unless it already is; answers its name. */
  prepare(text: string): Promise<string>;
}

async function scriptOn(client: pg.ClientBase, text: string): Promise<pg.QueryResultRow[][]> {
  const result = (await client.query(text)) as pg.QueryResult<pg.QueryResultRow> | pg.QueryResult<pg.QueryResultRow>[];
  return (Array.isArray(result) ? result : [result]).map((r) => r.rows);
}

async function withConnection<T>(em: EntityManager, use: (c: Connection) => Promise<T>): Promise<T> {
  const transaction = em.getTransactionContext<Knex.Transaction>();
  const pool = transaction ? undefined : em.config.getExtension<PreparedPool>(EXTENSION);
  if (pool) {
    const client = await pool.connect();
    let broken = false;
    // An error the server answered with leaves the connection usable; anything else does not.
    const watch = async <X>(work: Promise<X>): Promise<X> => {
      try {
        return await work;
      } catch (err) {
        if (!(err instanceof pg.DatabaseError)) broken = true;
        throw err;
      }
    };
    try {
      return await use({
        prepared: true,
        query: async <R extends pg.QueryResultRow>(text: string, values: unknown[]) =>
          (await watch(client.query<R>({ name: nameOf(text), text, values }))).rows,
        script: (text) => watch(scriptOn(client, text)),
        async prepare(text) {
          // Its own prefix: a protocol-level statement of the same text has the other name.
          const name = `${nameOf(text)}_sql`;
          let names = pool.preparedByConnection.get(client);
          if (!names?.has(name)) {
            await watch(client.query(`prepare ${name} as ${text}`));
            if (!names) pool.preparedByConnection.set(client, (names = new Set()));
            names.add(name);
          }
          return name;
        },
      });
    } finally {
      client.release(broken);
    }
  }
  // On MikroORM's pool (or in its transaction), through knex's public query builder: `raw` with no
  // bindings leaves $1, $2 alone, and `options` hands pg the values to bind, as pg's own query
  // config. Knex would read a ? in the text as a binding of its own.
  const knex = transaction ?? em.getConnection().getKnex();
  const raw = (text: string, values?: unknown[]) => {
    if (text.includes('?')) throw new Error('statements run through knex must not contain ?');
    const query = knex.raw(text);
    return values === undefined ? query : query.options({ values });
  };
  return use({
    prepared: false,
    query: async <R extends pg.QueryResultRow>(text: string, values: unknown[]) => ((await raw(text, values)) as pg.QueryResult<R>).rows,
    async script(text) {
      const result = (await raw(text)) as pg.QueryResult<pg.QueryResultRow> | pg.QueryResult<pg.QueryResultRow>[];
      return (Array.isArray(result) ? result : [result]).map((r) => r.rows);
    },
    prepare: () => Promise.reject(new Error('statements are only prepared on the statement pool')),
  });
}
