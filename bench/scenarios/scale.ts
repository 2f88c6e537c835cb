// Scenario 5: the throughput run of scenario 1 on empty tables, then on tables holding a large
// delivery history and many future-dated pending deliveries on the same webhooks; the gateway's
// memory in both. Each phase has its own database and a gateway process started the same way
// (webhooks created, gateway restarted), so the only difference between them is the seed.
import { createBenchDatabase } from '../lib/database.js';
import { deliveryRun, type DeliveryRunResult } from '../lib/delivery-run.js';
import { startGatewayProcess } from '../lib/gateway-process.js';
import { userToken } from '../lib/http-client.js';
import { createWebhooks, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import { rssBytes, sampleRss } from '../lib/processes.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';
import { seedLargeTables, type SeedResult } from '../lib/seed.js';

export interface ScalePhase {
  seeded: boolean;
  seed: SeedResult | undefined;
  runs: DeliveryRunResult[];
  /** RSS of the gateway process at rest after it started, and the peak during the runs. */
  idleRss: number;
  peakRss: number;
}

async function phase(
  ctx: { options: BenchOptions; receiver: ReceiverProcess; serviceToken: string; log: (line: string) => void },
  seeded: boolean,
): Promise<ScalePhase> {
  const { options, receiver } = ctx;
  const db = await createBenchDatabase();
  try {
    const tenant = 'bench-scale';
    let gateway = await startGatewayProcess(db.env);
    let webhookIds: string[];
    try {
      const urls = Array.from({ length: options.webhooks }, (_, i) => `${receiver.healthyUrl}/scale/${i}`);
      webhookIds = await createWebhooks(gateway.url, await userToken(tenant), urls);
      await sleep(1000);
    } finally {
      await gateway.stop();
    }
    let seed: SeedResult | undefined;
    if (seeded) {
      seed = await db.withSql((query) =>
        seedLargeTables(query, {
          tenant,
          webhookIds,
          historyAttempts: options.scale.historyAttempts,
          pendingDeliveries: options.scale.pendingDeliveries,
        }),
      );
      ctx.log(
        `scale: seeded ${seed.attempts} attempts, ${seed.deliveries} deliveries (${seed.pending} pending) in ${seed.seconds.toFixed(0)} s`,
      );
    }
    gateway = await startGatewayProcess(db.env);
    try {
      await sleep(2000);
      const idleRss = await rssBytes(gateway.pid);
      const sampler = sampleRss(gateway.pid);
      const runs: DeliveryRunResult[] = [];
      for (let rep = 1; rep <= options.reps; rep += 1) {
        const result = await deliveryRun({
          gateway,
          receiver,
          token: ctx.serviceToken,
          tenant,
          run: `scale-${seeded ? 'large' : 'empty'}-${rep}`,
          events: options.scale.events,
          expected: options.scale.events * options.webhooks,
          publishConcurrency: options.publishConcurrency,
          timeoutMs: options.runTimeoutMs,
        });
        runs.push(result);
        ctx.log(`scale ${seeded ? 'large' : 'empty'} ${rep}/${options.reps}: ${result.deliveriesPerSec.toFixed(0)} deliveries/s`);
      }
      const { peak } = await sampler.stop();
      return { seeded, seed, runs, idleRss, peakRss: peak };
    } finally {
      await gateway.stop();
    }
  } finally {
    await db.drop();
  }
}

export async function scaleScenario(ctx: {
  options: BenchOptions;
  receiver: ReceiverProcess;
  serviceToken: string;
  log: (line: string) => void;
}): Promise<{ empty: ScalePhase; large: ScalePhase }> {
  const empty = await phase(ctx, false);
  const large = await phase(ctx, true);
  return { empty, large };
}
