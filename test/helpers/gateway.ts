// Starts a real gateway in this process (real HTTP server, real database) for a test file.
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/logger.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export const TEST_ENCRYPTION_KEY = 'a'.repeat(64);
export const TEST_JWT_SECRET = 'test-jwt-secret-that-is-long-enough-for-hs256';

export interface TestGateway {
  gateway: Gateway;
  url: string;
  database: TestDatabase;
  /** Every log line the gateway wrote. */
  logs: string[];
  env: Record<string, string>;
  /** Stops the server but keeps the database, for restart tests. */
  stop(): Promise<void>;
  /** Starts again on the same database. */
  restart(extraEnv?: Record<string, string>): Promise<TestGateway>;
  close(): Promise<void>;
}

export async function startTestGateway(
  extraEnv: Record<string, string> = {},
  database?: TestDatabase,
): Promise<TestGateway> {
  const db = database ?? (await createTestDatabase());
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    JWT_SECRET: TEST_JWT_SECRET,
    WEBHOOK_ALLOW_INSECURE_URLS: 'true',
    LOG_LEVEL: 'info',
    RATE_LIMIT_PER_MINUTE: '0',
    // The worker runs on the main thread unless a test asks for its own thread: a thread loads the
    // worker's modules again (seconds per gateway), and the tests of the thread itself, and every
    // test that runs src/main.ts as a process, use the default, a thread.
    WORKER_THREAD: 'false',
    ...db.env,
    ...extraEnv,
  };
  for (const [k, v] of Object.entries(env)) if (v === '') delete env[k];
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const gateway = await startGateway(loadConfig(env), createLogger(env['LOG_LEVEL']!, sink));
  let stopped = false;
  const result: TestGateway = {
    gateway,
    url: gateway.url ?? '',
    database: db,
    logs,
    env,
    async stop() {
      if (!stopped) {
        stopped = true;
        await gateway.close();
      }
    },
    async restart(more = {}) {
      await result.stop();
      return startTestGateway({ ...extraEnv, ...more }, db);
    },
    async close() {
      await result.stop();
      await db.drop();
    },
  };
  return result;
}
