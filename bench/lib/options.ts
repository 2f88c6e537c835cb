// Sizes of every scenario: the full run, the short one (BENCH_QUICK=1), and the embedded
// database's (no DATABASE_URL), which answers one query at a time and so gets smaller loads.
import { serverUrl } from './database.js';
import { GATEWAY_SETTINGS } from './gateway-process.js';

export interface BenchOptions {
  quick: boolean;
  embedded: boolean;
  /** Times each scenario is repeated; medians and ranges are over these. */
  reps: number;
  /** Scenario 1 (and 4, 5): events published per run, webhooks they fan out to, publishers. */
  events: number;
  webhooks: number;
  publishConcurrency: number;
  /** Bare got loop concurrency: the gateway's WORKER_CONCURRENCY. */
  workerConcurrency: number;
  idle: { events: number; gapMs: [number, number] };
  api: { webhooks: number; connections: number; seconds: number };
  scale: { events: number; historyAttempts: number; pendingDeliveries: number };
  /** Upper bound on one delivery run, in ms. */
  runTimeoutMs: number;
}

export function benchOptions(env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const quick = env['BENCH_QUICK'] === '1' || env['BENCH_QUICK'] === 'true';
  const embedded = serverUrl === undefined;
  const base: BenchOptions = {
    quick,
    embedded,
    reps: 3,
    events: 1000,
    webhooks: 10,
    publishConcurrency: 8,
    workerConcurrency: Number(GATEWAY_SETTINGS['WORKER_CONCURRENCY']),
    idle: { events: 40, gapMs: [100, 200] },
    api: { webhooks: 20, connections: 16, seconds: 5 },
    scale: { events: 500, historyAttempts: 1_000_000, pendingDeliveries: 100_000 },
    runTimeoutMs: 180_000,
  };
  if (quick) {
    Object.assign(base, {
      events: 200,
      idle: { events: 15, gapMs: [80, 150] },
      api: { webhooks: 20, connections: 16, seconds: 2 },
      scale: { events: 100, historyAttempts: 100_000, pendingDeliveries: 10_000 },
    });
  }
  if (embedded) {
    Object.assign(base, {
      events: Math.round(base.events / 4),
      scale: {
        events: Math.round(base.scale.events / 4),
        historyAttempts: Math.round(base.scale.historyAttempts / 10),
        pendingDeliveries: Math.round(base.scale.pendingDeliveries / 10),
      },
    });
  }
  return base;
}
