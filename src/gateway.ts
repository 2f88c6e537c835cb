// Assembles a running gateway from a Config: database (migrated), encryption key, HTTP server.
// main.ts and the tests both start gateways through here; only main.ts exits or traps signals.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import type { Config } from './config.js';
import { resolveEncryptionKey } from './crypto/encryption-key.js';
import { createSecretBox } from './crypto/secrets.js';
import { migrate, openDatabase, type Database } from './db/orm.js';
import { ensureDevelopmentApiKey } from './modules/api-keys/development-key.js';

export interface Gateway {
  config: Config;
  db: Database;
  server: Server | undefined;
  /** http://host:port of the API, when this process serves it. */
  url: string | undefined;
  /** The development API key, on the first start of an embedded gateway without JWT settings. */
  developmentKey: string | undefined;
  close(): Promise<void>;
}

export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  const db = await openDatabase(config, { poolMax: config.workerConcurrency + 10 });
  try {
    const applied = await migrate(db);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
    const key = await resolveEncryptionKey({ configured: config.encryptionKey, embedded: db.embedded, dataDir: config.dataDir });
    const secretBox = createSecretBox(key);
    const jwtConfigured = Boolean(config.jwt.secret || config.jwt.jwksUrl);
    const developmentKey =
      db.embedded && !jwtConfigured ? await ensureDevelopmentApiKey(db.orm.em.fork()) : undefined;

    let server: Server | undefined;
    let url: string | undefined;
    if (config.role !== 'worker') {
      const app = createApp({ config, orm: db.orm, secretBox, logger });
      server = createServer((req, res) => app.handle(req, res));
      server.headersTimeout = 30_000;
      server.requestTimeout = 60_000;
      server.keepAliveTimeout = 5_000;
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(config.port, config.host, () => resolve());
      });
      const address = server.address() as AddressInfo;
      const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
      url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
    }

    return {
      config,
      db,
      server,
      url,
      developmentKey,
      async close() {
        if (server) {
          await new Promise<void>((resolve) => {
            server!.close(() => resolve());
            server!.closeIdleConnections();
          });
        }
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
