// Assembles a running gateway from a Config: database (migrated), encryption key, notifier, the
// HTTP server (api role) and the delivery scheduler (worker role). main.ts and the tests both
// start gateways through here; only main.ts exits or traps signals.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import type { Config } from './config.js';
import { resolveEncryptionKey } from './crypto/encryption-key.js';
import { createSecretBox } from './crypto/secrets.js';
import { openDatabase, planConnections, type Database } from './db/connections.js';
import type { Notifier } from './db/notifier.js';
import { migrate } from './db/orm.js';
import { createDeliverer } from './worker/deliverer.js';
import { createScheduler, schedulerOptions, type Scheduler } from './worker/scheduler.js';
import { createSender, senderOptions } from './worker/sender.js';
import { startWorkerThread, usesWorkerThread } from './worker/worker-thread.js';
import { createRateLimiter, type RateLimiter } from './http/rate-limit.js';
import { ensureDevelopmentApiKey } from './modules/api-keys/development-key.js';
import { createEventPublisher } from './modules/events/event.service.js';
import { createMetrics } from './observability/metrics.js';
import { createCredentialWatch, type CredentialWatch } from './subscriptions/credential-watch.js';
import { createDeliveryUpdateHub, type DeliveryUpdateHub } from './subscriptions/delivery-update-hub.js';
import { attachLiveSubscriptions, type LiveSubscriptions } from './subscriptions/live-subscriptions.js';

export interface Gateway {
  config: Config;
  db: Database;
  notifier: Notifier;
  server: Server | undefined;
  scheduler: Scheduler | undefined;
  /** Live delivery updates and their subscriptions, when this process serves the API. */
  deliveryUpdates: DeliveryUpdateHub | undefined;
  /** http://host:port of the API, when this process serves it. */
  url: string | undefined;
  /** The development API key, on the first start of an embedded gateway without JWT settings. */
  developmentKey: string | undefined;
  close(): Promise<void>;
}

// /readyz answers within 5 seconds whatever the database does: its probe has a limit of its own.
const READY_PROBE_TIMEOUT_MS = 2_000;

export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  const embedded = config.databaseUrl === undefined;
  const plan = planConnections(config.databasePoolSize, {
    role: config.role,
    workerThread: usesWorkerThread(config, embedded),
    preparedStatements: config.databasePreparedStatements,
    embedded,
  });
  const db = await openDatabase(config, { share: plan.main, checkBudget: embedded ? undefined : config.databasePoolSize, logger });
  if (!embedded) logger.info({ databasePoolSize: config.databasePoolSize, main: plan.main, workerThread: plan.thread }, 'database connections planned');
  let notifier: Notifier | undefined;
  let server: Server | undefined;
  let scheduler: Scheduler | undefined;
  let rateLimiter: RateLimiter | undefined;
  let live: LiveSubscriptions | undefined;
  let deliveryUpdates: DeliveryUpdateHub | undefined;
  let credentials: CredentialWatch | undefined;
  const sender = createSender(senderOptions(config));

  // Graceful: stop accepting, let requests and attempts in flight finish within the bound, hand
  // back the leases of whatever is still unsent, then close the database.
  /**
   * Ready when the database answers a probe on a connection of its own within
   * READY_PROBE_TIMEOUT_MS, and this instance's worker, if it has one, completed a claim cycle
   * within max(WORKER_STALLED_AFTER, 3 × WORKER_POLL_INTERVAL): a worker whose loop has not come
   * round for that long is stuck (on connections that stopped answering, say), however well a
   * fresh connection answers the probe.
   */
  async function ready(): Promise<boolean> {
    const stalledAfterMs = Math.max(config.workerStalledAfterMs, 3 * config.pollIntervalMs);
    if (scheduler && Date.now() - scheduler.lastCycleAt > stalledAfterMs) return false;
    return db.ping(READY_PROBE_TIMEOUT_MS);
  }

  let closing: Promise<void> | undefined;
  const open = new Set<ServerResponse>();
  const close = () => (closing ??= shutdown());
  async function shutdown() {
    for (const res of open) res.shouldKeepAlive = false;
    const s = server;
    const serverClosed = s ? new Promise<void>((resolve) => s.close(() => resolve())) : Promise.resolve();
    s?.closeIdleConnections();
    const force = setTimeout(() => s?.closeAllConnections(), config.shutdownTimeoutMs);
    // Subscriptions never end by themselves: end them, or their connections hold the server open.
    await Promise.all([live?.close(), serverClosed, scheduler?.stop(config.shutdownTimeoutMs)]);
    clearTimeout(force);
    credentials?.close();
    sender.close();
    await rateLimiter?.close();
    await notifier?.close();
    await db.close();
  }

  try {
    const applied = await migrate(db);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
    const key = await resolveEncryptionKey({ configured: config.encryptionKey, embedded: db.embedded, dataDir: config.dataDir });
    const secretBox = createSecretBox(key);
    const jwtConfigured = Boolean(config.jwt.secret || config.jwt.jwksUrl);
    const developmentKey =
      db.embedded && !jwtConfigured ? await ensureDevelopmentApiKey(db.orm.em.fork()) : undefined;

    notifier = db.createNotifier(logger);
    const metrics = createMetrics({ orm: db.orm, openSubscriptions: () => deliveryUpdates?.openCount() ?? 0 });
    const deliverer = createDeliverer({
      metrics,
      orm: db.orm,
      sender,
      secretBox,
      notifier,
      retryScheduleMs: config.retryScheduleMs,
      retryAfterMaxMs: config.retryAfterMaxMs,
      disableAfterMs: config.webhookDisableAfterMs,
      logger,
    });

    if (usesWorkerThread(config, db.embedded)) {
      const thread = await startWorkerThread({ config: { ...config, encryptionKey: key }, connections: plan.thread!, logger });
      scheduler = thread;
      metrics.addSource(() => thread.metrics());
    } else if (config.role !== 'api') {
      scheduler = createScheduler({ orm: db.orm, notifier, deliverer, logger, options: schedulerOptions(config) });
      scheduler.start();
    }

    let url: string | undefined;
    if (config.role !== 'worker') {
      rateLimiter = createRateLimiter({ perMinute: config.rateLimitPerMinute, postgresPool: db.service });
      credentials = createCredentialWatch({ notifier, orm: db.orm, logger, checkIntervalMs: config.subscriptionCredentialsCheckMs });
      deliveryUpdates = createDeliveryUpdateHub({ notifier, orm: db.orm, logger, maxPerTenant: config.maxSubscriptionsPerTenant, credentials });
      const eventPublisher = createEventPublisher();
      const appDeps = { config, orm: db.orm, secretBox, notifier, deliverer, logger, metrics, rateLimiter, deliveryUpdates, eventPublisher, ready };
      const app = createApp(appDeps);
      const s = createServer((req, res) => {
        // While stopping, answers close their connection, so keep-alive clients move elsewhere
        // instead of holding this process open until SHUTDOWN_TIMEOUT.
        if (closing) res.shouldKeepAlive = false;
        else {
          open.add(res);
          res.once('close', () => open.delete(res));
        }
        app.handle(req, res);
      });
      // Requests Node cannot parse never reach the app; answer them in the same JSON shape.
      s.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        if (!socket.writable) {
          socket.destroy();
          return;
        }
        const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
        const body = JSON.stringify(
          tooLarge
            ? { error: 'request headers are too large', code: 'BAD_REQUEST' }
            : { error: 'malformed HTTP request', code: 'BAD_REQUEST' },
        );
        socket.end(
          `HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\n` +
            `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
            `connection: close\r\n\r\n${body}`,
        );
      });
      server = s;
      live = attachLiveSubscriptions(s, { ...appDeps, credentials }, app.graphql);
      s.headersTimeout = 30_000;
      s.requestTimeout = 60_000;
      s.keepAliveTimeout = 5_000;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(config.port, config.host, () => resolve());
      });
      const address = s.address() as AddressInfo;
      const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
      url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
    }

    return { config, db, notifier, server, scheduler, deliveryUpdates, url, developmentKey, close };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
