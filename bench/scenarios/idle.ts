// Scenario 2: single events on an idle system. Each event waits for the one before it to arrive,
// then a random pause (never a multiple of the poll interval), so what is measured is the NOTIFY
// wake-up path: publish, commit, notify, claim, send.
import type { GatewayProcess } from '../lib/gateway-process.js';
import { userToken } from '../lib/http-client.js';
import { createWebhooks, publishEvents, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';
import { percentile } from '../lib/stats.js';

export interface IdleRep {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

export async function idleScenario(ctx: {
  options: BenchOptions;
  gateway: GatewayProcess;
  receiver: ReceiverProcess;
  serviceToken: string;
  log: (line: string) => void;
}): Promise<IdleRep[]> {
  const { options, gateway, receiver } = ctx;
  const tenant = 'bench-idle';
  await createWebhooks(gateway.url, await userToken(tenant), [`${receiver.healthyUrl}/idle`]);
  await sleep(1000);
  const [gapMin, gapMax] = options.idle.gapMs;
  const reps: IdleRep[] = [];
  for (let rep = 1; rep <= options.reps; rep += 1) {
    const latencies: number[] = [];
    for (let i = 0; i < options.idle.events; i += 1) {
      const run = `idle-${rep}-${i}`;
      const arrived = receiver.waitFor(run, 1, 10_000);
      await publishEvents({ gatewayUrl: gateway.url, token: ctx.serviceToken, tenant, run, count: 1, concurrency: 1 });
      const report = await arrived;
      receiver.forget(run);
      latencies.push(...report.latencies);
      await sleep(gapMin + Math.random() * (gapMax - gapMin));
    }
    const result = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies), samples: latencies.length };
    reps.push(result);
    ctx.log(`idle ${rep}/${options.reps}: p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms`);
  }
  return reps;
}
