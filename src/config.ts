// The only reader of process.env. Every setting is validated here, and an invalid environment is
// reported as one error that names every problem, so an operator fixes them all in one go.
import { z } from 'zod';
import { parseDuration, parseDurationList } from './duration.js';

export type Role = 'all' | 'api' | 'worker';

export interface Config {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  /**
   * Whether the delivery path's statements (publish, claim, record) are prepared once per
   * connection on a pool of their own (real Postgres only); off for poolers that cannot keep them.
   */
  databasePreparedStatements: boolean;
  /** The most connections to Postgres this process opens, every pool and thread together. */
  databasePoolSize: number;
  /** Client-side time limit of every database call; a connection silent for longer is dropped. */
  databaseQueryTimeoutMs: number;
  dataDir: string;
  encryptionKey: string | undefined;
  jwt: {
    secret: string | undefined;
    jwksUrl: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
    tenantClaim: string;
    /** Refuse JWTs without an `exp` claim. */
    requireExp: boolean;
  };
  role: Role;
  /** With ROLE=all on a real Postgres: the worker runs on a thread of its own. */
  workerThread: boolean;
  workerConcurrency: number;
  maxInFlightPerWebhook: number;
  pollIntervalMs: number;
  /** How much longer than the HTTP timeout a claimed delivery stays leased to its worker. */
  workerLeaseMarginMs: number;
  /** /readyz turns 503 when the worker's claim loop has not come round for this long. */
  /** A webhook with no success for this long and a delivery failed meanwhile is disabled; 0 never. */
  webhookDisableAfterMs: number;
  workerStalledAfterMs: number;
  /** How long a stopping process waits for requests and attempts in flight. */
  shutdownTimeoutMs: number;
  webhookTimeoutMs: number;
  retryScheduleMs: number[];
  /** The longest a receiver's Retry-After (on 429 or 503) may stretch a retry's wait. */
  retryAfterMaxMs: number;
  /** Deliveries (or events, for include_missed) a bulk recover visits per batch, each batch one short transaction. */
  recoverBatchSize: number;
  /** A pause between a worker's recover batches, to leave the database to normal delivery. */
  recoverBatchDelayMs: number;
  allowInsecureUrls: boolean;
  rateLimitPerMinute: number;
  /** Requests without valid credentials per client address and minute before 429. */
  rateLimitAnonymousPerMinute: number;
  /** How many X-Forwarded-For hops are trusted proxies (0: use the connection's address). */
  trustProxy: number;
  graphqlMaxDepth: number;
  graphqlMaxAliases: number;
  graphqlMaxTokens: number;
  maxWebhooksPerTenant: number;
  maxSubscriptionsPerTenant: number;
  allowedOrigins: string[];
  metricsToken: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  maxBodyBytes: number;
  maxEventBytes: number;
  attemptRetentionMs: number;
  responseBodyLimitBytes: number;
  /** How often open subscriptions' API keys are re-read, for revocations whose notice was missed. */
  subscriptionCredentialsCheckMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      try {
        return parseDuration(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    });

const integer = (fallback: number, min: number, max: number) =>
  z
    .string()
    .default(String(fallback))
    .transform((v, ctx) => {
      const n = Number(v);
      if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

const boolean = (fallback: boolean) =>
  z
    .string()
    .default(String(fallback))
    .transform((v, ctx) => {
      const s = v.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(s)) return true;
      if (['false', '0', 'no', 'off', ''].includes(s)) return false;
      ctx.addIssue({ code: 'custom', message: 'must be true or false' });
      return z.NEVER;
    });

const url = (protocols: string[]) =>
  optionalString.refine(
    (v) => {
      if (v === undefined) return true;
      try {
        return protocols.includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL (${protocols.join(' or ')})` },
  );

const envSchema = z.object({
  PORT: integer(8080, 0, 65535),
  HOST: z.string().default('0.0.0.0'),
  DATABASE_URL: url(['postgres:', 'postgresql:']),
  DATABASE_PREPARED_STATEMENTS: boolean(true),
  DATABASE_POOL_SIZE: integer(40, 4, 10_000),
  DATABASE_QUERY_TIMEOUT: duration('30s'),
  DATA_DIR: z.string().min(1).default('./.data'),
  ENCRYPTION_KEY: optionalString.refine((v) => v === undefined || /^[0-9a-fA-F]{64}$/.test(v), {
    message: 'must be 64 hexadecimal characters (32 bytes)',
  }),
  JWT_SECRET: optionalString,
  JWT_JWKS_URL: url(['https:', 'http:']),
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: optionalString,
  JWT_TENANT_CLAIM: z.string().min(1).default('sub'),
  JWT_REQUIRE_EXP: boolean(true),
  ROLE: z.enum(['all', 'api', 'worker']).default('all'),
  WORKER_THREAD: boolean(true),
  WORKER_CONCURRENCY: integer(32, 1, 1024),
  WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: integer(4, 1, 1024),
  WORKER_POLL_INTERVAL: duration('1s'),
  WORKER_LEASE_MARGIN: duration('30s'),
  WORKER_STALLED_AFTER: duration('60s'),
  SHUTDOWN_TIMEOUT: duration('15s'),
  WEBHOOK_TIMEOUT: duration('10s'),
  WEBHOOK_DISABLE_AFTER: duration('5d'),
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .default('5m,30m,2h')
    .transform((v, ctx) => {
      try {
        return parseDurationList(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  WEBHOOK_RETRY_AFTER_MAX: duration('1h'),
  RECOVER_BATCH_SIZE: integer(1000, 1, 100_000),
  RECOVER_BATCH_DELAY: duration('0ms'),
  WEBHOOK_ALLOW_INSECURE_URLS: boolean(false),
  RATE_LIMIT_PER_MINUTE: integer(600, 0, 1_000_000),
  RATE_LIMIT_ANONYMOUS_PER_MINUTE: integer(60, 1, 1_000_000),
  TRUST_PROXY: integer(0, 0, 32),
  GRAPHQL_MAX_DEPTH: integer(25, 1, 1000),
  GRAPHQL_MAX_ALIASES: integer(30, 0, 10_000),
  GRAPHQL_MAX_TOKENS: integer(5000, 100, 1_000_000),
  MAX_WEBHOOKS_PER_TENANT: integer(100, 1, 1_000_000),
  MAX_SUBSCRIPTIONS_PER_TENANT: integer(50, 1, 100_000),
  ALLOWED_ORIGINS: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  METRICS_TOKEN: optionalString,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_BODY_BYTES: integer(1_048_576, 1024, 100 * 1_048_576),
  MAX_EVENT_BYTES: integer(262_144, 1024, 100 * 1_048_576),
  ATTEMPT_RETENTION: duration('30d'),
  RESPONSE_BODY_LIMIT_BYTES: integer(4096, 0, 1_048_576),
  SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL: duration('15s'),
});

/** Reads and validates the environment; throws ConfigError naming every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
    );
  }
  const e = parsed.data;
  const problems: string[] = [];
  if (e.JWT_SECRET !== undefined && e.JWT_JWKS_URL !== undefined) {
    problems.push('JWT_SECRET and JWT_JWKS_URL: set one of them, not both');
  }
  if (e.DATABASE_URL !== undefined && e.ENCRYPTION_KEY === undefined) {
    problems.push(
      'ENCRYPTION_KEY: required with DATABASE_URL (64 hex characters, e.g. from `openssl rand -hex 32`); it encrypts webhook secrets at rest',
    );
  }
  if (e.WEBHOOK_TIMEOUT <= 0) problems.push('WEBHOOK_TIMEOUT: must be above zero');
  if (e.DATABASE_QUERY_TIMEOUT < 100) problems.push('DATABASE_QUERY_TIMEOUT: must be at least 100ms');
  // A revoked key's streams must end within 30 s even when the revocation's notice is lost.
  if (e.SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL < 10 || e.SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL > 25_000) {
    problems.push('SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL: must be from 10ms to 25s');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    databasePreparedStatements: e.DATABASE_PREPARED_STATEMENTS,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    databaseQueryTimeoutMs: e.DATABASE_QUERY_TIMEOUT,
    dataDir: e.DATA_DIR,
    encryptionKey: e.ENCRYPTION_KEY?.toLowerCase(),
    jwt: {
      secret: e.JWT_SECRET,
      jwksUrl: e.JWT_JWKS_URL,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      tenantClaim: e.JWT_TENANT_CLAIM,
      requireExp: e.JWT_REQUIRE_EXP,
    },
    role: e.ROLE,
    workerThread: e.WORKER_THREAD,
    workerConcurrency: e.WORKER_CONCURRENCY,
    maxInFlightPerWebhook: e.WORKER_MAX_IN_FLIGHT_PER_WEBHOOK,
    pollIntervalMs: e.WORKER_POLL_INTERVAL,
    workerLeaseMarginMs: e.WORKER_LEASE_MARGIN,
    workerStalledAfterMs: e.WORKER_STALLED_AFTER,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    webhookTimeoutMs: e.WEBHOOK_TIMEOUT,
    webhookDisableAfterMs: e.WEBHOOK_DISABLE_AFTER,
    retryScheduleMs: e.WEBHOOK_RETRY_SCHEDULE,
    retryAfterMaxMs: e.WEBHOOK_RETRY_AFTER_MAX,
    recoverBatchSize: e.RECOVER_BATCH_SIZE,
    recoverBatchDelayMs: e.RECOVER_BATCH_DELAY,
    allowInsecureUrls: e.WEBHOOK_ALLOW_INSECURE_URLS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    rateLimitAnonymousPerMinute: e.RATE_LIMIT_ANONYMOUS_PER_MINUTE,
    trustProxy: e.TRUST_PROXY,
    graphqlMaxDepth: e.GRAPHQL_MAX_DEPTH,
    graphqlMaxAliases: e.GRAPHQL_MAX_ALIASES,
    graphqlMaxTokens: e.GRAPHQL_MAX_TOKENS,
    maxWebhooksPerTenant: e.MAX_WEBHOOKS_PER_TENANT,
    maxSubscriptionsPerTenant: e.MAX_SUBSCRIPTIONS_PER_TENANT,
    allowedOrigins: e.ALLOWED_ORIGINS,
    metricsToken: e.METRICS_TOKEN,
    logLevel: e.LOG_LEVEL,
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxEventBytes: e.MAX_EVENT_BYTES,
    attemptRetentionMs: e.ATTEMPT_RETENTION,
    responseBodyLimitBytes: e.RESPONSE_BODY_LIMIT_BYTES,
    subscriptionCredentialsCheckMs: e.SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL,
  };
}
