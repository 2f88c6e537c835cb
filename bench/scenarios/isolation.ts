// Scenario 4: half the webhooks point at a receiver that accepts and never answers. Measured: the
// rate at which the healthy half receives, to set against the all-healthy run of scenario 1 on
// the same gateway. Each repetition uses fresh webhooks and deletes them afterwards, which takes
// the broken half's retries out of the queue before the next run.
import { deliveryRun, type DeliveryRunResult } from '../lib/delivery-run.js';
import type { GatewayProcess } from '../lib/gateway-process.js';
import { userToken } from '../lib/http-client.js';
import { createWebhooks, deleteWebhooks, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';

export async function isolationScenario(ctx: {
  options: BenchOptions;
  gateway: GatewayProcess;
  receiver: ReceiverProcess;
  serviceToken: string;
  /** WEBHOOK_TIMEOUT in ms: how long a broken endpoint holds a slot. */
  webhookTimeoutMs: number;
  log: (line: string) => void;
}): Promise<DeliveryRunResult[]> {
  const { options, gateway, receiver } = ctx;
  const half = Math.floor(options.webhooks / 2);
  const reps: DeliveryRunResult[] = [];
  for (let rep = 1; rep <= options.reps; rep += 1) {
    const tenant = `bench-isolation-${rep}`;
    const token = await userToken(tenant);
    const healthy = await createWebhooks(
      gateway.url,
      token,
      Array.from({ length: options.webhooks - half }, (_, i) => `${receiver.healthyUrl}/hook/${i}`),
    );
    const broken = await createWebhooks(
      gateway.url,
      token,
      Array.from({ length: half }, (_, i) => `${receiver.silentUrl}/hook/${i}`),
    );
    // The pings to the broken half time out first, so every run starts from the same state.
    await sleep(ctx.webhookTimeoutMs + 500);
    const result = await deliveryRun({
      gateway,
      receiver,
      token: ctx.serviceToken,
      tenant,
      run: `isolation-${rep}`,
      events: options.events,
      expected: options.events * healthy.length,
      publishConcurrency: options.publishConcurrency,
      timeoutMs: options.runTimeoutMs,
    });
    reps.push(result);
    ctx.log(`isolation ${rep}/${options.reps}: healthy half ${result.deliveriesPerSec.toFixed(0)} deliveries/s`);
    await deleteWebhooks(gateway.url, token, [...broken, ...healthy]);
    await sleep(ctx.webhookTimeoutMs + 500);
  }
  return reps;
}
