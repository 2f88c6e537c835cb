// Every connection this process opens to Postgres is opened here, under one budget and with one
// set of time limits.
//
// Budget: DATABASE_POOL_SIZE is the most connections one process opens, all pools and threads
// together, so an operator sizes max_connections by counting processes. planConnections splits
// it: a few fixed connections (the LISTEN connection of each thread that has one, and a small
// service pool on the main thread for the rate limits, the readiness probe and the migration
// lock), the rest shared out between the API and the worker (half each when the worker runs on a
// thread of its own), and on each side between MikroORM's pool and the prepared statements' pool.
// Pools open connections as needed and close idle ones; the budget is what they may reach.
//
// Time limits: every call has a client-side limit (DATABASE_QUERY_TIMEOUT, pg's query_timeout),
// the server ends statements just before it (statement_timeout) and transactions left idle
// (idle_in_transaction_session_timeout), and TCP keepalive notices a peer that vanished. A link
// that goes half-open (a failover, a dropped NAT entry, a proxy that stops forwarding) keeps
// accepting bytes and never answers, so neither keepalive nor the server's limits notice it, and
// pg's query_timeout answers the caller but keeps the connection, with its unanswered query still
// in front of every later one. So every connection's socket is watched: a socket that has been
// sent something and has not answered for the time limit is destroyed, which takes its
// connection out of whichever pool holds it, and the idle sockets opened before it, which most
// likely went through the same broken path, are closed as well: pools open fresh ones on demand.
// Over TLS the watch sits under the encryption: Node's TLS socket takes over a plain socket's
// handle and reads and writes it natively, out of the watch's sight, so a TLS connection runs over
// a stream that carries the encrypted bytes through JavaScript instead (see WatchedStream).
import { Socket, type SocketConnectOpts } from 'node:net';
import { Duplex } from 'node:stream';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { startEmbeddedDatabase } from './embedded.js';
import { createLocalNotifier, createPostgresNotifier, type Notifier } from './notifier.js';
import { createOrm } from './orm.js';
import { openStatementPool, type StatementPool } from './statements.js';

/** The connections of one thread. */
export interface ConnectionShare {
  /** MikroORM's pool. */
  orm: number;
  /** The prepared statements' pool (0: the statements run on MikroORM's pool). */
  statements: number;
  /** The service pool: rate limits, readiness probe, migration lock (main thread only). */
  service: number;
  /** A LISTEN connection for notifications between processes. */
  listen: number;
}

export interface ConnectionPlan {
  main: ConnectionShare;
  /** The worker's thread, when it runs on one. */
  thread: ConnectionShare | undefined;
  total: number;
}

const EMBEDDED_SHARE: ConnectionShare = { orm: 1, statements: 0, service: 0, listen: 0 };

const sum = (s: ConnectionShare) => s.orm + s.statements + s.service + s.listen;

/**
 * Splits `budget` (DATABASE_POOL_SIZE) between the pools of this process. Throws when the budget
 * cannot give every pool at least one connection.
 */
export function planConnections(
  budget: number,
  options: { role: Config['role']; workerThread: boolean; preparedStatements: boolean; embedded: boolean },
): ConnectionPlan {
  // PGlite answers one query at a time over one connection: more would only queue.
  if (options.embedded) return { main: EMBEDDED_SHARE, thread: undefined, total: 1 };
  const thread = options.workerThread;
  // The API side needs three for its service pool (rate limits, readiness probe, migration lock
  // at start); a worker process only the migration lock.
  const service = options.role === 'worker' ? 1 : 3;
  const fixed = service + 1 + (thread ? 1 : 0);
  const sides = thread ? 2 : 1;
  const perPool = options.preparedStatements ? 2 : 1;
  const needed = fixed + sides * perPool;
  if (budget < needed) {
    const what = thread ? 'ROLE=all with the worker on a thread of its own' : `ROLE=${options.role}`;
    throw new Error(
      `DATABASE_POOL_SIZE=${budget} is too small: ${what} needs at least ${needed} connections (set DATABASE_POOL_SIZE to ${needed} or more)`,
    );
  }
  const rest = budget - fixed;
  const split = (n: number) => {
    // The prepared statements (publish, claim, record) hold a connection for a few milliseconds
    // each and write in groups, so they need fewer than the ORM's requests and transactions.
    const statements = options.preparedStatements ? Math.max(1, Math.floor((n * 2) / 5)) : 0;
    return { orm: n - statements, statements };
  };
  const mainSide = Math.ceil(rest / sides);
  const main: ConnectionShare = { ...split(mainSide), service, listen: 1 };
  const threadShare: ConnectionShare | undefined = thread ? { ...split(rest - mainSide), service: 0, listen: 1 } : undefined;
  return { main, thread: threadShare, total: sum(main) + (threadShare ? sum(threadShare) : 0) };
}

/** The time limits derived from DATABASE_QUERY_TIMEOUT. */
export interface TimeLimits {
  /** Client side: the caller's answer (pg's query_timeout), pool waits and connecting. */
  queryMs: number;
  /** Server side: statements end a little before the client stops waiting for them. */
  statementMs: number;
  /** A socket sent something and silent this long is dropped (see the top of this file). */
  silentMs: number;
}

export function timeLimits(queryTimeoutMs: number): TimeLimits {
  return {
    queryMs: queryTimeoutMs,
    statementMs: Math.max(50, queryTimeoutMs - Math.min(1_000, Math.floor(queryTimeoutMs / 10))),
    // After pg's own timeout, so the caller gets pg's answer first.
    silentMs: queryTimeoutMs + Math.min(1_000, Math.floor(queryTimeoutMs / 4)),
  };
}

/** A connection's stream that knows since when it has been waiting for an answer. */
interface Watched {
  /** From the first write after the last data received; undefined while nothing is asked. */
  waitingSince: number | undefined;
  destroy(error?: Error): void;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Streams of one thread's connections, each watched for silence after a request. pg writes a
 * request only once the previous one was answered, so anything written and not answered for long
 * means the other side is gone.
 */
function createSocketWatch(silentMs: number, logger: Logger | undefined) {
  const streams = new Set<Watched>();
  const tickMs = Math.max(20, Math.min(1_000, Math.floor(silentMs / 10)));
  let timer: NodeJS.Timeout | undefined;

  const check = () => {
    const now = Date.now();
    for (const stream of streams) {
      if (stream.waitingSince === undefined || now - stream.waitingSince <= silentMs) continue;
      logger?.warn({ silentMs: now - stream.waitingSince }, 'database connection stopped answering; dropping it and the idle ones opened before it');
      // The idle connections opened before this one (the set keeps the order they were opened in)
      // most likely share its broken path; those opened since came through a path that worked.
      for (const other of streams) {
        if (other === stream) break;
        if (other.waitingSince === undefined) {
          streams.delete(other);
          other.destroy();
        }
      }
      streams.delete(stream);
      stream.destroy(new Error(`the database did not answer within ${silentMs} ms; connection dropped`));
    }
    if (streams.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    /**
     * pg's `stream` option: a plain TCP or Unix socket, or for a TLS connection a stream carrying
     * the encrypted bytes, watched while it is open.
     */
    stream(options: { ssl?: unknown }): Socket {
      const stream = options.ssl ? new WatchedStream() : new WatchedSocket();
      streams.add(stream);
      stream.once('close', () => streams.delete(stream));
      if (!timer) {
        timer = setInterval(check, tickMs);
        timer.unref();
      }
      // pg uses a socket's connect, setNoDelay, setKeepAlive, ref and unref, which WatchedStream has.
      return stream as Socket;
    },
    close() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}

/** A plain connection's socket, watched through the writes and data that pass through it. */
class WatchedSocket extends Socket implements Watched {
  waitingSince: number | undefined;

  constructor() {
    super();
    this.on('data', () => {
      this.waitingSince = undefined;
    });
  }

  // Writable's implementation hooks, through which every write reaches the socket (net.Socket
  // puts its own `write` back on each connect, so that one cannot be overridden).
  override _write(chunk: unknown, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.waitingSince ??= Date.now();
    super._write(chunk, encoding, callback);
  }

  override _writev(chunks: { chunk: unknown; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    this.waitingSince ??= Date.now();
    super._writev!(chunks, callback);
  }
}

/**
 * A TLS connection's transport: a stream over a plain socket that passes every byte through
 * JavaScript. Given a stream that is not a socket, Node's TLS runs over its reads and writes
 * (instead of taking over the socket's handle), so the watch sees the encrypted traffic.
 */
class WatchedStream extends Duplex implements Watched {
  waitingSince: number | undefined;
  private readonly socket = new Socket();

  constructor() {
    super({ allowHalfOpen: false });
    const socket = this.socket;
    socket.on('connect', () => this.emit('connect'));
    socket.on('data', (chunk: Buffer) => {
      this.waitingSince = undefined;
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
  }

  connect(...args: [options: SocketConnectOpts] | [port: number, host?: string] | [path: string]): this {
    (this.socket.connect as (...a: unknown[]) => Socket)(...args);
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.socket.setKeepAlive(enable, initialDelay);
    return this;
  }

  ref(): this {
    this.socket.ref();
    return this;
  }

  unref(): this {
    this.socket.unref();
    return this;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.waitingSince ??= Date.now();
    this.socket.write(chunk, encoding, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}

const DEFAULT_QUERY_TIMEOUT_MS = 30_000;

/** The connections of the command line and of tests that open a database of their own. */
export const SMALL_SHARE: ConnectionShare = { orm: 4, statements: 2, service: 1, listen: 1 };

export interface Database {
  orm: MikroORM;
  /** true when running on the embedded PGlite server (single connection, single process). */
  embedded: boolean;
  /** Where the database is (for messages and tests; connections are opened here only). */
  url: string;
  /** The prepared statements' pool, when the delivery path's statements are prepared. */
  statements: StatementPool | undefined;
  /** The service pool (real Postgres, main thread): rate limits, readiness probe, migration lock. */
  service: pg.Pool | undefined;
  limits: TimeLimits;
  /** The notifier for this thread: LISTEN/NOTIFY on Postgres, in memory on the embedded database. */
  createNotifier(logger: Logger): Notifier;
  /** true when the database answers `select 1` within `timeoutMs`, whatever holds the pools. */
  ping(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'> & Partial<Pick<Config, 'databaseQueryTimeoutMs'>>,
  options: {
    /** This thread's connections (by default SMALL_SHARE). */
    share?: ConnectionShare;
    /** The whole process's budget, checked against the server's max_connections. */
    checkBudget?: number;
    logger?: Logger;
  } = {},
): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedDatabase(config.dataDir) : undefined;
  const url = embedded?.url ?? config.databaseUrl!;
  const share = embedded ? EMBEDDED_SHARE : (options.share ?? SMALL_SHARE);
  const limits = timeLimits(config.databaseQueryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS);
  const watch = createSocketWatch(limits.silentMs, options.logger);
  const settings: pg.ClientConfig = {
    connectionString: url,
    application_name: 'infraaudit-webhook-gateway',
    connectionTimeoutMillis: limits.queryMs,
    query_timeout: limits.queryMs,
    statement_timeout: limits.statementMs,
    idle_in_transaction_session_timeout: limits.queryMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // pg calls the function with the connection's settings, ssl among them (its types omit the argument).
    stream: ((options: { ssl?: unknown }) => watch.stream(options)) as unknown as () => Socket,
  };
  let service: pg.Pool | undefined;
  let statements: StatementPool | undefined;
  let orm: MikroORM | undefined;
  const close = async () => {
    await statements?.close();
    await orm?.close(true);
    await service?.end();
    watch.close();
    await embedded?.close();
  };
  try {
    if (share.service > 0) {
      service = new pg.Pool({ ...settings, max: share.service, idleTimeoutMillis: 10_000 });
      // A connection that fails while idle is taken out of the pool; the event only needs a listener.
      service.on('error', () => undefined);
      if (options.checkBudget !== undefined) await checkServerLimit(service, options.checkBudget, options.logger);
    }
    orm = await createOrm({ url, settings, poolMax: share.orm, acquireTimeoutMs: limits.queryMs, logger: options.logger });
    if (share.statements > 0) statements = openStatementPool(orm, settings, share.statements);
    const ormRef = orm;
    return {
      orm,
      embedded: embedded !== undefined,
      url,
      statements,
      service,
      limits,
      createNotifier(logger) {
        if (embedded || share.listen === 0) return createLocalNotifier();
        return createPostgresNotifier({
          connect: () => new pg.Client(settings),
          orm: ormRef,
          logger,
          // An idle LISTEN connection sends nothing, so a link that went silent would go unnoticed
          // until the server had something to say: ask it something now and then.
          pingIntervalMs: Math.min(30_000, limits.queryMs),
        });
      },
      async ping(timeoutMs) {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
        });
        // pg's per-query time limit, which its type declarations leave out.
        const query: pg.QueryConfig & { query_timeout: number } = { text: 'select 1', query_timeout: timeoutMs };
        const probe = (service ? service.query(query) : ormRef.em.fork().getConnection().execute('select 1')).then(
          () => true,
          () => false,
        );
        try {
          return await Promise.race([probe, late]);
        } finally {
          clearTimeout(timer);
        }
      },
      close,
    };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

/**
 * Refuses to start when this process alone may open more connections than the server accepts,
 * and warns when it and the connections already open together may.
 */
async function checkServerLimit(pool: pg.Pool, budget: number, logger: Logger | undefined): Promise<void> {
  const { rows } = await pool.query<{ max: number; reserved: number; open: number }>(
    `select current_setting('max_connections')::int as max,
            current_setting('superuser_reserved_connections')::int
              + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int as reserved,
            (select count(*) from pg_stat_activity where backend_type = 'client backend')::int as open`,
  );
  const { max, reserved, open } = rows[0]!;
  const available = max - reserved;
  if (budget > available) {
    throw new Error(
      `DATABASE_POOL_SIZE=${budget} is more than the database server accepts: max_connections is ${max}, ` +
        `${reserved} of them reserved for superusers, so at most ${available} are left for this gateway. ` +
        `Lower DATABASE_POOL_SIZE (each gateway process opens up to that many) or raise max_connections on the server.`,
    );
  }
  // `open` counts the connection asking, which is part of the budget.
  if (budget + open - 1 > available) {
    logger?.warn(
      { databasePoolSize: budget, maxConnections: max, reserved, alreadyOpen: open - 1 },
      'DATABASE_POOL_SIZE and the connections already open may exceed max_connections; new connections could be refused under load',
    );
  }
}
