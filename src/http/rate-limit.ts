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
  consume(tenantKey: string): Promise<RateLimitDecision>;
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

  const decide = (res: RateLimiterRes, allowed: boolean): RateLimitDecision => {
    const resetSec = Math.ceil((Date.now() + res.msBeforeNext) / 1000);
    const retryAfterSec = Math.max(1, Math.ceil(res.msBeforeNext / 1000));
    return {
      allowed,
      retryAfterSec,
      headers: {
        'x-ratelimit-limit': String(options.perMinute),
        'x-ratelimit-remaining': String(Math.max(0, res.remainingPoints)),
        'x-ratelimit-reset': String(resetSec),
      },
    };
  };

  return {
    async consume(tenantKey) {
      try {
        return decide(await limiter.consume(tenantKey), true);
      } catch (err) {
        if (err instanceof RateLimiterRes) return decide(err, false);
        throw err;
      }
    },
    async close() {
      // The pool belongs to the gateway's database connections, which close it.
    },
  };
}
