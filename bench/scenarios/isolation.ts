// Scenario 4: half the webhooks point at a receiver that accepts and never answers. Measured: the
// rate at which the healthy half receives, against an all-healthy run of the same size on the same
// gateway. Each repetition makes its runs one right after the other (the order rotates from one
// repetition to the next), each on fresh webhooks, and the ratio is taken within the repetition, as
// scenario 1 takes its ratio to the bare got loop: on a noisy machine, figures taken minutes apart
// differ by more than the effect measured. A third run, the healthy half's webhooks alone (no
// broken ones), separates what the broken endpoints cost the healthy ones from what having half as
// many webhooks to deliver to costs. Webhooks are deleted after their run, which takes the broken
// half's retries out of the queue before the next one.
import { deliveryRun, type DeliveryRunResult } from '../lib/delivery-run.js';
import type { GatewayProcess } from '../lib/gateway-process.js';
import { userToken } from '../lib/http-client.js';
import { createWebhooks, deleteWebhooks, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';

export interface IsolationRep {
  /** The healthy half's run, next to a receiver half that never answers. */
  healthyHalf: DeliveryRunResult;
  /** The same events to as many webhooks, all healthy, in the same repetition. */
  allHealthy: DeliveryRunResult;
  /** The same events to the healthy half's number of webhooks and no others, in the same repetition. */
  healthyAlone: DeliveryRunResult;
  /** Healthy-half deliveries per second over all-healthy deliveries per second. */
  ratio: number;
  /** Healthy-half deliveries per second over those of the healthy half alone. */
  aloneRatio: number;
}

export async function isolationScenario(ctx: {
  options: BenchOptions;
  gateway: GatewayProcess;
  receiver: ReceiverProcess;
  serviceToken: string;
  /** WEBHOOK_TIMEOUT in ms: how long a broken endpoint holds a slot. */
  webhookTimeoutMs: number;
  log: (line: string) => void;
}): Promise<IsolationRep[]> {
  const { options, gateway, receiver } = ctx;
  const half = Math.floor(options.webhooks / 2);
  const reps: IsolationRep[] = [];

  type Kind = 'all-healthy' | 'half-broken' | 'healthy-alone';
  async function measure(rep: number, kind: Kind): Promise<DeliveryRunResult> {
    const broken = kind === 'half-broken' ? half : 0;
    const healthyCount = kind === 'all-healthy' ? options.webhooks : options.webhooks - half;
    const tenant = `bench-isolation-${rep}-${kind}`;
    const token = await userToken(tenant);
    const healthy = await createWebhooks(
      gateway.url,
      token,
      Array.from({ length: healthyCount }, (_, i) => `${receiver.healthyUrl}/hook/${i}`),
    );
    const silent = await createWebhooks(
      gateway.url,
      token,
      Array.from({ length: broken }, (_, i) => `${receiver.silentUrl}/hook/${i}`),
    );
    // The pings to a broken half time out first, so every run starts from the same state.
    await sleep(ctx.webhookTimeoutMs + 500);
    const result = await deliveryRun({
      gateway,
      receiver,
      token: ctx.serviceToken,
      tenant,
      run: `isolation-${rep}-${kind}`,
      events: options.events,
      expected: options.events * healthy.length,
      publishConcurrency: options.publishConcurrency,
      timeoutMs: options.runTimeoutMs,
    });
    await deleteWebhooks(gateway.url, token, [...silent, ...healthy]);
    await sleep(broken > 0 ? ctx.webhookTimeoutMs + 500 : 500);
    return result;
  }

  const kinds: Kind[] = ['all-healthy', 'half-broken', 'healthy-alone'];
  for (let rep = 1; rep <= options.reps; rep += 1) {
    const runs = new Map<Kind, DeliveryRunResult>();
    for (let i = 0; i < kinds.length; i += 1) {
      const kind = kinds[(rep - 1 + i) % kinds.length]!;
      runs.set(kind, await measure(rep, kind));
    }
    const healthyHalf = runs.get('half-broken')!;
    const allHealthy = runs.get('all-healthy')!;
    const healthyAlone = runs.get('healthy-alone')!;
    const ratio = healthyHalf.deliveriesPerSec / allHealthy.deliveriesPerSec;
    const aloneRatio = healthyHalf.deliveriesPerSec / healthyAlone.deliveriesPerSec;
    reps.push({ healthyHalf, allHealthy, healthyAlone, ratio, aloneRatio });
    ctx.log(
      `isolation ${rep}/${options.reps}: healthy half ${healthyHalf.deliveriesPerSec.toFixed(0)} deliveries/s, ` +
        `all healthy ${allHealthy.deliveriesPerSec.toFixed(0)}/s (${(ratio * 100).toFixed(0)} %), ` +
        `healthy half alone ${healthyAlone.deliveriesPerSec.toFixed(0)}/s (${(aloneRatio * 100).toFixed(0)} %)`,
    );
  }
  return reps;
}
