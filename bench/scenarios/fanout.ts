// Scenario 7: live updates fanned out. 1000 deliveryUpdates subscriptions of one tenant over
// graphql-ws, one WebSocket each (as 1000 open browser tabs), with MAX_SUBSCRIPTIONS_PER_TENANT
// raised to 1000; then one event to the tenant's one webhook. Measured: from the publish to the
// moment the last subscription has its first update of that delivery; and, on a real Postgres,
// the transactions the gateway's database committed in a window around the publish beside the
// same window with nothing published (pg_stat_database.xact_commit, read from another database so
// the reads do not count), to show that an update costs no query per subscription.
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { createBenchDatabase, serverUrl } from '../lib/database.js';
import { startGatewayProcess } from '../lib/gateway-process.js';
import { expectStatus, requestJson, userToken } from '../lib/http-client.js';
import { createWebhooks, now, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';
import { formatNumber, formatSummary, median, summarize } from '../lib/stats.js';

export const FANOUT_SUBSCRIPTIONS = 1000;
export const FANOUT_SETTINGS = { MAX_SUBSCRIPTIONS_PER_TENANT: String(FANOUT_SUBSCRIPTIONS) } as const;
/** Target: every subscription has the update within 1 s of the publish. */
export const FANOUT_LIMIT_MS = 1000;
/**
 * Each transaction window: long enough for the backends' statistics to reach pg_stat_database
 * (an idle backend reports at the latest 10 s after its last report).
 */
const WINDOW_MS = 12_000;
const OPEN_BATCH = 50;

const QUERY = `subscription { deliveryUpdates { kind delivery { id eventId status } } }`;

export interface FanoutRep {
  /** Publish to the last subscription's first update of the delivery, ms. */
  last: number;
  /** Publish to the first subscription's, ms. */
  first: number;
  received: number;
  /** Publish to the receiver's receipt of the delivery itself, ms. */
  delivered: number;
  /** Transactions committed by the gateway's database in the window with the publish, and in the one without. */
  xactWith: number;
  xactWithout: number;
}

export const fanoutMet = (r: FanoutRep) => r.received === FANOUT_SUBSCRIPTIONS && r.last < FANOUT_LIMIT_MS;

async function xactCommit(database: string): Promise<number> {
  if (!serverUrl) return Number.NaN;
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: string }>('select xact_commit as n from pg_stat_database where datname = $1', [database]);
    return Number(rows[0]?.n ?? Number.NaN);
  } finally {
    await c.end();
  }
}

async function openSubscriptions(gatewayUrl: string): Promise<number> {
  // Read seconds apart, a keep-alive socket may have been closed by the server as it is reused.
  const res = await requestJson(`${gatewayUrl}/metrics`).catch(() => requestJson(`${gatewayUrl}/metrics`));
  const match = /^gateway_subscriptions_open\s+(\d+)/m.exec(String(res.body));
  return Number(match?.[1] ?? 0);
}

export async function fanoutScenario(ctx: {
  options: BenchOptions;
  receiver: ReceiverProcess;
  serviceToken: string;
  log: (line: string) => void;
}): Promise<FanoutRep[]> {
  const { options, receiver } = ctx;
  const db = await createBenchDatabase();
  const database = db.url ? new URL(db.url).pathname.slice(1) : '';
  const gateway = await startGatewayProcess({ ...db.env, ...FANOUT_SETTINGS });
  const tenant = 'bench-fanout';
  const token = await userToken(tenant);
  const clients: Client[] = [];
  /** Per subscription: when it first saw each event's delivery. */
  const seen: Map<string, number>[] = [];
  const reps: FanoutRep[] = [];
  try {
    await createWebhooks(gateway.url, token, [`${receiver.healthyUrl}/fanout`]);
    const wsUrl = `${gateway.url.replace(/^http/, 'ws')}/graphql`;
    for (let i = 0; i < FANOUT_SUBSCRIPTIONS; i += 1) {
      const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { token }, retryAttempts: 0, lazy: true });
      const firstSeen = new Map<string, number>();
      client.subscribe(
        { query: QUERY },
        {
          next: (r) => {
            const eventId = (r.data as { deliveryUpdates?: { delivery?: { eventId?: string } } } | null)?.deliveryUpdates?.delivery?.eventId;
            if (eventId && !firstSeen.has(eventId)) firstSeen.set(eventId, now());
          },
          error: (err) => ctx.log(`fanout: subscription ${i} failed: ${JSON.stringify(err)}`),
          complete: () => undefined,
        },
      );
      clients.push(client);
      seen.push(firstSeen);
      if ((i + 1) % OPEN_BATCH === 0) await sleep(20);
    }
    const openBy = Date.now() + 60_000;
    while ((await openSubscriptions(gateway.url)) < FANOUT_SUBSCRIPTIONS) {
      if (Date.now() > openBy) throw new Error(`fanout: ${await openSubscriptions(gateway.url)} subscriptions open after 60 s`);
      await sleep(250);
    }
    ctx.log(`fanout: ${FANOUT_SUBSCRIPTIONS} subscriptions open`);

    for (let rep = 1; rep <= options.reps; rep += 1) {
      // A window with nothing published: the worker's polls and whatever else runs by itself.
      await sleep(WINDOW_MS);
      const idleStart = await xactCommit(database);
      await sleep(WINDOW_MS);
      const idleEnd = await xactCommit(database);

      const before = await xactCommit(database);
      const arrived = receiver.waitFor(`fanout-${rep}`, 1, 10_000);
      const publishedAt = now();
      const body = await expectStatus(
        requestJson(`${gateway.url}/api/v1/events`, {
          method: 'POST',
          token: ctx.serviceToken,
          body: { event: 'drift.detected', tenant_id: tenant, data: { run: `fanout-${rep}`, sentAt: publishedAt } },
        }),
        202,
        'publish event',
      );
      const eventId = body.id as string;
      const doneBy = Date.now() + 10_000;
      while (seen.some((m) => !m.has(eventId)) && Date.now() < doneBy) await sleep(10);
      const times = seen.flatMap((m) => (m.has(eventId) ? [m.get(eventId)! - publishedAt] : []));
      const delivered = (await arrived).latencies[0] ?? Number.NaN;
      receiver.forget(`fanout-${rep}`);
      await sleep(Math.max(0, publishedAt + WINDOW_MS - now()));
      const after = await xactCommit(database);
      const result: FanoutRep = {
        last: times.length === FANOUT_SUBSCRIPTIONS ? Math.max(...times) : Number.POSITIVE_INFINITY,
        first: Math.min(...times),
        received: times.length,
        delivered,
        xactWith: after - before,
        xactWithout: idleEnd - idleStart,
      };
      reps.push(result);
      ctx.log(
        `fanout ${rep}/${options.reps}: ${result.received} of ${FANOUT_SUBSCRIPTIONS} updated, first ${result.first.toFixed(1)} ms, ` +
          `last ${result.last.toFixed(1)} ms; transactions ${result.xactWith} with the publish, ${result.xactWithout} without`,
      );
    }
  } finally {
    await Promise.allSettled(
      clients.map(async (c) => {
        await c.dispose();
      }),
    );
    await gateway.stop();
    await db.drop();
  }
  return reps;
}

export function renderFanout(reps: FanoutRep[]): { target: string; section: string[] } {
  const ms = (values: number[]) => formatSummary(summarize(values), 1, ' ms');
  const metCount = reps.filter(fanoutMet).length;
  const measuredXact = reps.some((r) => Number.isFinite(r.xactWith));
  return {
    target:
      `| ${formatNumber(FANOUT_SUBSCRIPTIONS)} subscriptions of one tenant all updated < 1 s after the publish | ` +
      `last at ${formatNumber(median(reps.map((r) => r.last)), 0)} ms (median) | met in ${metCount} of ${reps.length} runs |`,
    section: [
      '### 7. Live updates to 1 000 subscriptions',
      '',
      `${formatNumber(FANOUT_SUBSCRIPTIONS)} \`deliveryUpdates\` subscriptions of one tenant over graphql-ws, one WebSocket each, ` +
        `with \`MAX_SUBSCRIPTIONS_PER_TENANT=${FANOUT_SUBSCRIPTIONS}\`; one event to the tenant's one webhook per run. Times run from ` +
        "the publish to each subscription's first update of that delivery. Transactions are the gateway database's " +
        `\`pg_stat_database.xact_commit\` over ${WINDOW_MS / 1000} s from the publish, beside the ${WINDOW_MS / 1000} s just before ` +
        'with nothing published (read from another database).',
      '',
      '| | median of runs (range) |',
      '|---|---|',
      `| The delivery at its receiver | ${ms(reps.map((r) => r.delivered))} |`,
      `| First subscription updated | ${ms(reps.map((r) => r.first))} |`,
      `| Last subscription updated | ${ms(reps.map((r) => r.last))} |`,
      ...(measuredXact
        ? [
            `| Transactions in the window with the publish | ${formatSummary(summarize(reps.map((r) => r.xactWith)))} |`,
            `| Transactions in the window without | ${formatSummary(summarize(reps.map((r) => r.xactWithout)))} |`,
          ]
        : ['| Transactions | not measured (embedded database) |']),
      `| Runs meeting the target | ${metCount} of ${reps.length} |`,
    ],
  };
}
