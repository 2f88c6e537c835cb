// Scenario 6: fair sharing between tenants. One tenant's 20 webhooks point at the receiver that
// accepts requests and never answers, with thousands of its deliveries due; another tenant
// publishes single events, one at a time, to a webhook that answers at once. Measured: that
// tenant's publish-to-receipt latency, and the same figure with no hog, taken in the same
// repetition on the same gateway just before the hog's backlog is published. The gateway runs
// with its defaults for what decides how long a hanging request holds a slot and how many slots
// there are (WORKER_CONCURRENCY=32, WEBHOOK_TIMEOUT=10s), rather than the bench's 96 and 2 s:
// with 96 slots the hog's 20 webhooks (4 requests each at most) could never fill them.
import { createBenchDatabase } from '../lib/database.js';
import { startGatewayProcess } from '../lib/gateway-process.js';
import { requestJson, userToken } from '../lib/http-client.js';
import { createWebhooks, deleteWebhooks, publishEvents, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';
import { formatNumber, median, percentile, summarize, formatSummary } from '../lib/stats.js';

export const FAIRNESS_SETTINGS = { WORKER_CONCURRENCY: '32', WEBHOOK_TIMEOUT: '10s' } as const;
const WEBHOOK_TIMEOUT_MS = 10_000;
const HOG_WEBHOOKS = 20;
/** Events the hog publishes, each fanned out to its 20 webhooks. */
const HOG_EVENTS = 150;
/** Probes, 250 to 350 ms apart: together longer than WEBHOOK_TIMEOUT, so they also meet the moments the hog's slots come free. */
const PROBES = 40;
/** How long one probe may take before it counts as not arrived (and the repetition stops probing). */
const PROBE_LIMIT_MS = 30_000;

/** Targets: every hogged delivery under 2 s, their median under 200 ms. */
export const FAIRNESS_MAX_MS = 2000;
export const FAIRNESS_MEDIAN_MS = 200;

export interface FairnessRep {
  /** Publish-to-receipt of the other tenant's events, no hog. */
  alone: number[];
  /** The same while the hog's endpoints hang; Infinity for a probe that did not arrive in time. */
  hogged: number[];
  /** Due pending deliveries (gateway_delivery_backlog) as the hogged probes began. */
  backlog: number;
}

export const fairnessMet = (r: FairnessRep) => Math.max(...r.hogged) < FAIRNESS_MAX_MS && median(r.hogged) < FAIRNESS_MEDIAN_MS;

export async function fairnessScenario(ctx: {
  options: BenchOptions;
  receiver: ReceiverProcess;
  serviceToken: string;
  log: (line: string) => void;
}): Promise<FairnessRep[]> {
  const { options, receiver } = ctx;
  const db = await createBenchDatabase();
  const gateway = await startGatewayProcess({ ...db.env, ...FAIRNESS_SETTINGS });
  const reps: FairnessRep[] = [];
  try {
    for (let rep = 1; rep <= options.reps; rep += 1) {
      const calmTenant = `bench-fair-calm-${rep}`;
      const hogTenant = `bench-fair-hog-${rep}`;
      const calmToken = await userToken(calmTenant);
      const hogToken = await userToken(hogTenant);
      const calm = await createWebhooks(gateway.url, calmToken, [`${receiver.healthyUrl}/calm/${rep}`]);
      await sleep(500);

      async function probe(phase: string): Promise<number[]> {
        const latencies: number[] = [];
        for (let i = 0; i < PROBES; i += 1) {
          const run = `fair-${rep}-${phase}-${i}`;
          const arrived = receiver.waitFor(run, 1, PROBE_LIMIT_MS);
          await publishEvents({ gatewayUrl: gateway.url, token: ctx.serviceToken, tenant: calmTenant, run, count: 1, concurrency: 1 });
          try {
            latencies.push(...(await arrived).latencies);
          } catch {
            latencies.push(Number.POSITIVE_INFINITY);
            ctx.log(`fairness ${rep}: ${phase} probe ${i} did not arrive within ${PROBE_LIMIT_MS} ms; stopping this repetition's probes`);
            break;
          } finally {
            receiver.forget(run);
          }
          await sleep(250 + Math.random() * 100);
        }
        return latencies;
      }

      const alone = await probe('alone');
      const hog = await createWebhooks(
        gateway.url,
        hogToken,
        Array.from({ length: HOG_WEBHOOKS }, (_, i) => `${receiver.silentUrl}/hog/${rep}/${i}`),
      );
      await publishEvents({ gatewayUrl: gateway.url, token: ctx.serviceToken, tenant: hogTenant, run: `fair-${rep}-hog`, count: HOG_EVENTS, concurrency: 8 });
      // The hog's requests take their slots at once; give the claims a moment to fill them.
      await sleep(1000);
      const backlog = await dueBacklog(gateway.url);
      const hogged = await probe('hogged');
      const result = { alone, hogged, backlog };
      reps.push(result);
      ctx.log(
        `fairness ${rep}/${options.reps}: alone p50 ${median(alone).toFixed(1)} ms max ${Math.max(...alone).toFixed(1)} ms; ` +
          `hogged p50 ${median(hogged).toFixed(1)} ms max ${Math.max(...hogged).toFixed(1)} ms (${fairnessMet(result) ? 'met' : 'missed'}); ` +
          `${backlog} deliveries due as the hogged probes began`,
      );
      // Deleting the webhooks cancels the hog's backlog; its hanging requests end at the timeout,
      // so the next repetition starts with every slot free.
      await deleteWebhooks(gateway.url, hogToken, hog);
      await deleteWebhooks(gateway.url, calmToken, calm);
      await sleep(WEBHOOK_TIMEOUT_MS + 1000);
    }
  } finally {
    await gateway.stop();
    await db.drop();
  }
  return reps;
}

async function dueBacklog(gatewayUrl: string): Promise<number> {
  const res = await requestJson(`${gatewayUrl}/metrics`);
  return Number(/^gateway_delivery_backlog\s+(\d+)/m.exec(String(res.body))?.[1] ?? Number.NaN);
}

export function renderFairness(reps: FairnessRep[]): { target: string; section: string[] } {
  const ms = (values: number[]) => formatSummary(summarize(values), 1, ' ms');
  const metCount = reps.filter(fairnessMet).length;
  const hoggedMax = reps.map((r) => Math.max(...r.hogged));
  return {
    target:
      `| Another tenant's delivery beside a hanging tenant: every one < 2 s, median < 200 ms | ` +
      `median ${formatNumber(median(reps.map((r) => median(r.hogged))), 1)} ms, max ${formatNumber(Math.max(...hoggedMax), 0)} ms | ` +
      `met in ${metCount} of ${reps.length} runs |`,
    section: [
      '### 6. Fair sharing between tenants',
      '',
      `One tenant's ${HOG_WEBHOOKS} webhooks point at the receiver that never answers, with ${formatNumber(HOG_WEBHOOKS * HOG_EVENTS)} of its ` +
        `deliveries published (${HOG_EVENTS} events); another tenant publishes ${PROBES} single events, one at a time, 250 to 350 ms ` +
        'apart (longer in all than WEBHOOK_TIMEOUT, so the probes also meet the moments the hog\'s slots come free), to a webhook ' +
        'that answers at once. Gateway settings for this scenario: ' +
        Object.entries(FAIRNESS_SETTINGS)
          .map(([k, v]) => `\`${k}=${v}\``)
          .join(', ') +
        ' (the defaults). "Alone" is the same tenant in the same repetition, before the hog publishes. A run meets the target ' +
        'when every hogged delivery arrived within 2 s and their median is under 200 ms.',
      '',
      '| | median of runs (range) |',
      '|---|---|',
      `| Alone: publish-to-receipt p50 | ${ms(reps.map((r) => median(r.alone)))} |`,
      `| Alone: max | ${ms(reps.map((r) => Math.max(...r.alone)))} |`,
      `| Beside the hog: publish-to-receipt p50 | ${ms(reps.map((r) => median(r.hogged)))} |`,
      `| Beside the hog: p90 | ${ms(reps.map((r) => percentile(r.hogged, 90)))} |`,
      `| Beside the hog: max | ${ms(hoggedMax)} |`,
      `| The hog's deliveries due as the probes began | ${formatSummary(summarize(reps.map((r) => r.backlog)))} |`,
      `| Probes that did not arrive within ${PROBE_LIMIT_MS / 1000} s (a repetition stops probing at the first) | ${reps.filter((r) => r.hogged.some((x) => !Number.isFinite(x))).length} of ${reps.length} runs |`,
      `| Runs meeting the target | ${metCount} of ${reps.length} |`,
    ],
  };
}
