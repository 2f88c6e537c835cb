// Prometheus metrics, one registry per gateway (tests run several gateways in one process).
// The queue figures are read from Postgres at scrape time, so every instance reports the shared
// backlog rather than a guess of its own. A worker on a thread of its own keeps its delivery
// metrics in a registry there; the process's /metrics adds them in at each scrape.
import type { MikroORM } from '@mikro-orm/postgresql';
import {
  AggregatorRegistry,
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';

export interface DeliveryMetrics {
  attempts: Counter<'outcome' | 'error_class'>;
  attemptDuration: Histogram<'outcome'>;
  deliveriesFinished: Counter<'status'>;
}

export interface Metrics extends DeliveryMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  /** The Prometheus text of this registry and of every source added. */
  render(): Promise<string>;
  /** Metrics kept elsewhere (a worker thread's), summed with this registry's at each scrape; null when unavailable. */
  addSource(read: () => Promise<MetricsSnapshot | null>): void;
  /** Reports a cache keyed by callers' input as `gateway_cache_bytes{cache}` and its budget. */
  addCache(name: string, cache: { bytes(): number; budgetBytes: number }): void;
}

/** What a registry's getMetricsAsJSON() answers; it crosses threads as is. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

/** The delivery path's metrics, registered on `registry`. */
export function createDeliveryMetrics(registry: Registry): DeliveryMetrics {
  const attempts = new Counter({
    name: 'gateway_delivery_attempts_total',
    help: 'Delivery attempts made, by outcome and error class.',
    labelNames: ['outcome', 'error_class'] as const,
    registers: [registry],
  });
  const attemptDuration = new Histogram({
    name: 'gateway_delivery_attempt_duration_seconds',
    help: 'Duration of delivery attempts, request to response.',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const deliveriesFinished = new Counter({
    name: 'gateway_deliveries_finished_total',
    help: 'Deliveries that reached a final status (success, failed, cancelled).',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  return { attempts, attemptDuration, deliveriesFinished };
}

export function createMetrics(deps: { orm: MikroORM; openSubscriptions?: () => number }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  const sources: (() => Promise<MetricsSnapshot | null>)[] = [];

  const httpRequests = new Counter({
    name: 'gateway_http_requests_total',
    help: 'HTTP requests answered, by route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'gateway_http_request_duration_seconds',
    help: 'Time to answer HTTP requests.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const delivery = createDeliveryMetrics(registry);

  // Caches keyed by what callers send, each bounded in bytes: their sizes show the bound holds.
  const caches = new Map<string, { bytes(): number; budgetBytes: number }>();
  new Gauge({
    name: 'gateway_cache_bytes',
    help: 'Estimated bytes held by each cache keyed by callers\' input (parsed GraphQL documents, verified JWTs).',
    labelNames: ['cache'] as const,
    registers: [registry],
    collect() {
      for (const [name, cache] of caches) this.set({ cache: name }, cache.bytes());
    },
  });
  new Gauge({
    name: 'gateway_cache_budget_bytes',
    help: 'The byte budget of each cache in gateway_cache_bytes.',
    labelNames: ['cache'] as const,
    registers: [registry],
    collect() {
      for (const [name, cache] of caches) this.set({ cache: name }, cache.budgetBytes);
    },
  });

  // One query per scrape feeds both queue gauges. Each gauge awaits it in its own collect():
  // prom-client reads a gauge's value right after that gauge's collect() settles, so a value set
  // from another metric's collect() would only show on the next scrape.
  let queueRead: Promise<void> | undefined;
  const readQueue = () =>
    (queueRead ??= (async () => {
      try {
        const rows = await deps.orm.em
          .fork()
          .getConnection()
          .execute<{ due: string; age: number | null }[]>(
            `select count(*) as due, extract(epoch from now() - min(next_attempt_at)) as age
             from delivery where status = 'pending' and next_attempt_at <= now()`,
          );
        backlog.set(Number(rows[0]?.due ?? 0));
        oldestAge.set(Math.max(0, Number(rows[0]?.age ?? 0)));
        queueScrape.set(1);
      } catch {
        queueScrape.set(0);
      }
    })().finally(() => {
      queueRead = undefined;
    }));

  const backlog = new Gauge({
    name: 'gateway_delivery_backlog',
    help: 'Pending deliveries that are due now (across all instances).',
    registers: [registry],
    collect: readQueue,
  });
  const oldestAge = new Gauge({
    name: 'gateway_delivery_backlog_oldest_age_seconds',
    help: 'How long the oldest due pending delivery has been waiting (0 when none).',
    registers: [registry],
    collect: readQueue,
  });
  const queueScrape = new Gauge({
    name: 'gateway_queue_scrape',
    help: 'Whether the last read of the backlog figures succeeded (1) or failed (0).',
    registers: [registry],
    collect: readQueue,
  });
  new Gauge({
    name: 'gateway_subscriptions_open',
    help: 'Live GraphQL subscriptions (SSE and WebSocket) open on this instance.',
    registers: [registry],
    collect() {
      this.set(deps.openSubscriptions?.() ?? 0);
    },
  });

  async function render(): Promise<string> {
    if (sources.length === 0) return registry.metrics();
    const others = (await Promise.all(sources.map((read) => read()))).filter((m): m is MetricsSnapshot => m !== null);
    if (others.length === 0) return registry.metrics();
    return AggregatorRegistry.aggregate([(await registry.getMetricsAsJSON()) as MetricsSnapshot, ...others]).metrics();
  }

  return {
    registry,
    httpRequests,
    httpDuration,
    ...delivery,
    render,
    addSource: (read) => void sources.push(read),
    addCache: (name, cache) => void caches.set(name, cache),
  };
}
