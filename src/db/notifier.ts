// Wake-ups and live updates between processes. On Postgres they travel by NOTIFY to a dedicated
// LISTEN connection (re-established when it drops); the embedded database serves one process, so
// there they stay in memory. Notifications are only hints: whoever receives one re-reads the
// database, and the scheduler also polls, so a lost notification delays but never loses work.
import { EventEmitter } from 'node:events';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import type { Logger } from 'pino';

export const CHANNEL_DELIVERIES_DUE = 'gateway_deliveries_due';
export const CHANNEL_DELIVERY_UPDATES = 'gateway_delivery_updates';
/** A webhook was changed or deleted; the payload is its id. Workers hand back its spare rows. */
export const CHANNEL_WEBHOOKS_CHANGED = 'gateway_webhooks_changed';

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
    async notify(channel, payload) {
      emitter.emit(channel, payload);
    },
    listen(channel, handler) {
      emitter.on(channel, handler);
      return () => emitter.off(channel, handler);
    },
    async close() {
      emitter.removeAllListeners();
    },
  };
}

export function createPostgresNotifier(options: { url: string; orm: MikroORM; logger: Logger }): Notifier {
  const local = new EventEmitter();
  local.setMaxListeners(0);
  const channels = new Set<string>();
  let client: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: options.url });
    c.on('notification', (msg) => local.emit(msg.channel, msg.payload ?? ''));
    c.on('error', (err) => {
      options.logger.warn({ err }, 'listen connection failed');
      scheduleReconnect(c);
    });
    c.on('end', () => scheduleReconnect(c));
    await c.connect();
    for (const channel of channels) await c.query(`listen ${pg.escapeIdentifier(channel)}`);
    client = c;
    // Anything published while the connection was down was missed: tell listeners to re-read.
    for (const channel of channels) local.emit(channel, '');
  };

  const scheduleReconnect = (c: pg.Client) => {
    if (closed || client !== c) return;
    client = undefined;
    c.end().catch(() => undefined);
    ensure();
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
      local.removeAllListeners();
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
