// Per-tenant request limits. On Postgres the counters live in the `rate_limit` table so every api
// instance shares them; the embedded database serves one process, so memory suffices there. If
// the store fails, an in-memory limiter stands in rather than refusing or waving everything through.
import pg from 'pg';
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

export function createRateLimiter(options: { perMinute: number; postgresUrl?: string | undefined }): RateLimiter | undefined {
  if (options.perMinute <= 0) return undefined;
  const memory = new RateLimiterMemory({ points: options.perMinute, duration: WINDOW_SEC, keyPrefix: 'tenant' });
  let pool: pg.Pool | undefined;
  let limiter: RateLimiterAbstract = memory;
  if (options.postgresUrl) {
    pool = new pg.Pool({ connectionString: options.postgresUrl, max: 4 });
    pool.on('error', () => undefined);
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
      await pool?.end();
    },
  };
}
