// Wake-ups and live updates between processes. On Postgres they travel by NOTIFY to a dedicated
// LISTEN connection (re-established when it drops, or when it stops answering the query it is
// asked now and then); the embedded database serves one process, so there they stay in memory. Notifications are only hints: whoever receives one re-reads the
// database, and the scheduler also polls, so a lost notification delays but never loses work.
import { EventEmitter } from 'node:events';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import type { Logger } from 'pino';

export const CHANNEL_DELIVERIES_DUE = 'gateway_deliveries_due';
export const CHANNEL_DELIVERY_UPDATES = 'gateway_delivery_updates';
/** A webhook was changed or deleted; the payload is its id. Workers hand back its spare rows. */
export const CHANNEL_WEBHOOKS_CHANGED = 'gateway_webhooks_changed';
/** A bulk recover was started; workers look for recoveries to run. */
export const CHANNEL_RECOVERIES = 'gateway_recoveries';
/** An API key was revoked; the payload is its id. Api instances end the streams opened with it. */
export const CHANNEL_API_KEYS_REVOKED = 'gateway_api_keys_revoked';

export type NotificationHandler = (payload: string) => void;

export interface Notifier {
  /**
   * true when a NOTIFY issued by any SQL statement reaches the listeners (Postgres), so a writer
   * may fold its notification into its own statement instead of calling notify().
   */
  readonly viaSql: boolean;
  notify(channel: string, payload: string): Promise<void>;
  listen(channel: string, handler: NotificationHandler): () => void;
  close(): Promise<void>;
}

export function createLocalNotifier(): Notifier {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
    viaSql: false,
    // Listeners run inside the call; one that throws rejects the promise rather than throwing at
    // the caller, who catches rejections.
    notify: (channel, payload) =>
      new Promise<void>((resolve) => {
        emitter.emit(channel, payload);
        resolve();
      }),
    listen(channel, handler) {
      emitter.on(channel, handler);
      return () => emitter.off(channel, handler);
    },
    close() {
      emitter.removeAllListeners();
      return Promise.resolve();
    },
  };
}

export function createPostgresNotifier(options: {
  /** A new, unconnected client with the gateway's connection settings (src/db/connections.ts). */
  connect: () => pg.Client;
  orm: MikroORM;
  logger: Logger;
  /** How often the LISTEN connection is asked `select 1`, so a silent link is noticed. */
  pingIntervalMs: number;
}): Notifier {
  const local = new EventEmitter();
  local.setMaxListeners(0);
  const channels = new Set<string>();
  let client: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const c = options.connect();
    c.on('notification', (msg) => local.emit(msg.channel, msg.payload ?? ''));
    c.on('error', (err) => {
      options.logger.warn({ err }, 'listen connection failed');
      scheduleReconnect(c);
    });
    c.on('end', () => scheduleReconnect(c));
    try {
      await c.connect();
      for (const channel of channels) await c.query(`listen ${pg.escapeIdentifier(channel)}`);
    } catch (err) {
      c.end().catch(() => undefined);
      throw err;
    }
    client = c;
    // A failed ping means the link is gone (the query's time limit drops the socket as well).
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (client === c) c.query('select 1').catch(() => scheduleReconnect(c));
    }, options.pingIntervalMs);
    pingTimer.unref();
    // Anything published while the connection was down was missed: tell listeners to re-read.
    for (const channel of channels) local.emit(channel, '');
  };

  const scheduleReconnect = (c: pg.Client) => {
    if (closed || client !== c) return;
    client = undefined;
    clearInterval(pingTimer);
    c.end().catch(() => undefined);
    // Never rejects: a failed attempt schedules the next.
    void ensure();
  };

  const ensure = (): Promise<void> => {
    if (closed || client) return Promise.resolve();
    connecting ??= connect()
      .catch((err: unknown) => {
        options.logger.warn({ err }, 'listen connection failed; retrying');
        return new Promise<void>((resolve) => {
          retryTimer = setTimeout(() => {
            connecting = undefined;
            resolve(ensure());
          }, 1000);
        });
      })
      .finally(() => {
        if (client) connecting = undefined;
      });
    return connecting;
  };

  return {
    viaSql: true,
    async notify(channel, payload) {
      await options.orm.em.fork().getConnection().execute('select pg_notify(?, ?)', [channel, payload]);
    },
    listen(channel, handler) {
      local.on(channel, handler);
      if (!channels.has(channel)) {
        channels.add(channel);
        const c = client;
        if (c) c.query(`listen ${pg.escapeIdentifier(channel)}`).catch(() => scheduleReconnect(c));
        else void ensure();
      }
      return () => local.off(channel, handler);
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(pingTimer);
      local.removeAllListeners();
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
