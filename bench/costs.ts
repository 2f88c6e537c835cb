// `npx tsx bench/costs.ts`: what one publish and one delivery cost, apart. Events are published to
// a gateway that only serves the API (ROLE=api, no worker), then a worker-only gateway (ROLE=worker)
// on the same database drains them. For each phase: the CPU time of the gateway, the local
// Postgres server (when it runs on this machine), the receiver and this process (the publisher),
// per event and per delivery.
// COSTS_EVENTS and COSTS_WEBHOOKS size the run (1 000 × 10), COSTS_ROUNDS repeats it (3).
import { createBenchDatabase, serverUrl } from './lib/database.js';
import { serverCpuMs } from './lib/delivery-run.js';
import { buildGateway, startGatewayProcess } from './lib/gateway-process.js';
import { serviceToken, userToken } from './lib/http-client.js';
import { createWebhooks, publishEvents, sleep } from './lib/load.js';
import { cpuMs, runMain } from './lib/processes.js';
import { startReceiverProcess } from './lib/receiver-process.js';
import { median } from './lib/stats.js';

interface Split {
  gateway: number;
  postgres: number;
  receiver: number;
  publisher: number;
  seconds: number;
}

const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function measure(gatewayPid: number, receiverPid: number, work: () => Promise<void>): Promise<Split> {
  const before = [await cpuMs(gatewayPid), await serverCpuMs(), await cpuMs(receiverPid), selfCpuMs(), performance.now()];
  await work();
  const after = [await cpuMs(gatewayPid), await serverCpuMs(), await cpuMs(receiverPid), selfCpuMs(), performance.now()];
  const d = after.map((v, i) => v - before[i]!);
  return { gateway: d[0]!, postgres: d[1]!, receiver: d[2]!, publisher: d[3]!, seconds: d[4]! / 1000 };
}

async function main(): Promise<void> {
  if (!serverUrl) throw new Error('bench/costs.ts needs DATABASE_URL (it reads the local server CPU time)');
  const events = Number(process.env['COSTS_EVENTS'] ?? 1000);
  const webhooks = Number(process.env['COSTS_WEBHOOKS'] ?? 10);
  const rounds = Number(process.env['COSTS_ROUNDS'] ?? 3);
  await buildGateway();
  const receiver = await startReceiverProcess();
  const publishes: Split[] = [];
  const deliveries: Split[] = [];
  try {
    for (let round = 1; round <= rounds; round += 1) {
      const db = await createBenchDatabase();
      try {
        const api = await startGatewayProcess({ ...db.env, ROLE: 'api' });
        const tenant = `bench-costs-${round}`;
        const urls = Array.from({ length: webhooks }, (_, i) => `${receiver.healthyUrl}/hook/${i}`);
        await createWebhooks(api.url, await userToken(tenant), urls);
        const token = await serviceToken();
        const run = `costs-${round}`;
        publishes.push(
          await measure(api.pid, receiver.pid, async () => {
            await publishEvents({ gatewayUrl: api.url, token, tenant, run, count: events, concurrency: 8 });
          }),
        );
        await api.stop();
        const arrived = receiver.waitFor(run, events * webhooks, 180_000);
        const worker = await startGatewayProcess({ ...db.env, ROLE: 'worker' });
        await sleep(200);
        deliveries.push(
          await measure(worker.pid, receiver.pid, async () => {
            await arrived;
            await sleep(300);
          }),
        );
        receiver.forget(run);
        await worker.stop();
      } finally {
        await db.drop();
      }
    }
  } finally {
    await receiver.close();
  }
  const line = (label: string, splits: Split[], per: number) => {
    const m = (k: keyof Split) => median(splits.map((s) => s[k] / per)).toFixed(3);
    return `| ${label} | ${m('gateway')} | ${m('postgres')} | ${m('receiver')} | ${m('publisher')} |`;
  };
  process.stdout.write(
    [
      `${rounds} rounds, ${events} events × ${webhooks} webhooks; CPU ms, medians`,
      '| | gateway | postgres | receiver | publisher |',
      '|---|---|---|---|---|',
      line('per publish (ROLE=api)', publishes, events),
      line('per delivery (ROLE=worker)', deliveries, events * webhooks),
      `publish phase ${median(publishes.map((s) => s.seconds)).toFixed(2)} s, delivery phase ${median(deliveries.map((s) => s.seconds)).toFixed(2)} s`,
      '',
    ].join('\n'),
  );
}

runMain('costs', main);
