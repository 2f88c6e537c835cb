// Scenario 1: N events × W webhooks through the whole pipeline to a receiver that answers 200 at
// once, and in the same repetition the limit: a bare got POST loop of the same size at the same
// concurrency to the same receiver.
import { deliveryRun, type DeliveryRunResult } from '../lib/delivery-run.js';
import type { GatewayProcess } from '../lib/gateway-process.js';
import { userToken } from '../lib/http-client.js';
import { bareGotLoop, createWebhooks, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';

export interface ThroughputRep extends DeliveryRunResult {
  bareRequestsPerSec: number;
  /** Gateway deliveries per second over bare got requests per second, this repetition. */
  ratio: number;
}

export async function throughputScenario(ctx: {
  options: BenchOptions;
  gateway: GatewayProcess;
  receiver: ReceiverProcess;
  serviceToken: string;
  log: (line: string) => void;
}): Promise<ThroughputRep[]> {
  const { options, gateway, receiver } = ctx;
  const tenant = 'bench-throughput';
  const urls = Array.from({ length: options.webhooks }, (_, i) => `${receiver.healthyUrl}/hook/${i}`);
  await createWebhooks(gateway.url, await userToken(tenant), urls);
  await sleep(1000);
  const total = options.events * options.webhooks;
  const reps: ThroughputRep[] = [];
  for (let rep = 1; rep <= options.reps; rep += 1) {
    const run = await deliveryRun({
      gateway,
      receiver,
      token: ctx.serviceToken,
      tenant,
      run: `throughput-${rep}`,
      events: options.events,
      expected: total,
      publishConcurrency: options.publishConcurrency,
      timeoutMs: options.runTimeoutMs,
    });
    const bare = await bareGotLoop({
      url: `${receiver.healthyUrl}/bare`,
      run: `bare-${rep}`,
      total,
      concurrency: options.workerConcurrency,
    });
    receiver.forget(`bare-${rep}`);
    const bareRequestsPerSec = total / ((bare.finishedAt - bare.startedAt) / 1000);
    reps.push({ ...run, bareRequestsPerSec, ratio: run.deliveriesPerSec / bareRequestsPerSec });
    ctx.log(
      `throughput ${rep}/${options.reps}: ${run.deliveriesPerSec.toFixed(0)} deliveries/s, ` +
        `p50 ${run.p50.toFixed(0)} ms, bare got ${bareRequestsPerSec.toFixed(0)}/s`,
    );
    await sleep(500);
  }
  return reps;
}
