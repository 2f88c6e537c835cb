// Per-tenant request limits. On Postgres the counters live in the `rate_limit` table so every api
// instance shares them; the embedded database serves one process, so memory suffices there. If
// the store fails, an in-memory limiter stands in rather than refusing or waving everything through.
import type pg from 'pg';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

export interface RateLimitDecision {
  allowed: boolean;
  headers: Record<string, string>;
  retryAfterSec: number;
}

export interface RateLimiter {
  /** Counts `points` requests (a GraphQL operation's root fields) at once: all or none. */
  consume(key: string, points?: number): Promise<RateLimitDecision>;
  close(): Promise<void>;
}

const WINDOW_SEC = 60;

/**
 * The bucket a caller's requests count against. Tenant ids are free text, so they are namespaced:
 * a tenant named "service" cannot spend the budget of the tenant-less service tokens.
 */
export function rateLimitKey(viewer: { tenantId: string | null }): string {
  return viewer.tenantId === null ? 'service' : `tenant:${viewer.tenantId}`;
}

export function createRateLimiter(options: {
  perMinute: number;
  /** The counters' store on Postgres (a pool of src/db/connections.ts); unset: memory. */
  postgresPool?: pg.Pool | undefined;
}): RateLimiter | undefined {
  if (options.perMinute <= 0) return undefined;
  const memory = new RateLimiterMemory({ points: options.perMinute, duration: WINDOW_SEC, keyPrefix: 'tenant' });
  const pool = options.postgresPool;
  let limiter: RateLimiterAbstract = memory;
  if (pool) {
    limiter = new RateLimiterPostgres({
      storeClient: pool,
      storeType: 'pool',
      tableName: 'rate_limit',
      tableCreated: true,
      points: options.perMinute,
      duration: WINDOW_SEC,
      keyPrefix: 'tenant',
      insuranceLimiter: new RateLimiterMemory({ points: options.perMinute, duration: WINDOW_SEC, keyPrefix: 'tenant' }),
    });
  }

  // The pool belongs to the gateway's database connections, which close it.
  return limiterOf(limiter, options.perMinute, () => Promise.resolve());
}

/**
 * Requests without valid credentials, per client address. Kept in this instance's memory: it
 * guards this process, and must cost nothing that a stranger could multiply (no database row).
 */
export function createAnonymousLimiter(perMinute: number): RateLimiter {
  return limiterOf(new RateLimiterMemory({ points: perMinute, duration: WINDOW_SEC, keyPrefix: 'anonymous' }), perMinute, () => Promise.resolve());
}

function limiterOf(limiter: RateLimiterAbstract, perMinute: number, close: () => Promise<void>): RateLimiter {
  const decide = (res: RateLimiterRes, allowed: boolean, refunded = 0): RateLimitDecision => {
    const resetSec = Math.ceil((Date.now() + res.msBeforeNext) / 1000);
    const retryAfterSec = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
    return {
      allowed,
      retryAfterSec,
      headers: {
        'x-ratelimit-limit': String(perMinute),
        'x-ratelimit-remaining': String(Math.max(0, perMinute - (res.consumedPoints - refunded))),
        'x-ratelimit-reset': String(resetSec),
      },
    };
  };

  return {
    async consume(key, points = 1) {
      try {
        return decide(await limiter.consume(key, points), true);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        // A refused request runs nothing, so it spends nothing: what it took is given back, and
        // an operation too large for what is left does not use up what smaller ones could have.
        await limiter.reward(key, points).catch(() => undefined);
        return decide(err, false, points);
      }
    },
    close,
  };
}
