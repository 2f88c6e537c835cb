// `npx tsx bench/compare.ts before=<main.js> after=<main.js>`: paired runs of two (or more) builds,
// for the before/after figures in docs/decisions/. A build may carry settings of its own after
// commas (`cap16=dist/src/main.js,WORKER_MAX_IN_FLIGHT_PER_WEBHOOK=16`), which override the
// bench's. Each round starts every build in turn (the order alternates from round to round, so a
// machine that gets busier over time favours neither) on a fresh database and runs scenarios 2, 1
// and 4 once (4 is three runs: all healthy, half broken, and the healthy half alone); the table at
// the end gives each build's median over the rounds. COMPARE_ROUNDS sets the rounds (default 3);
// the sizes are those of `npm run bench` (BENCH_QUICK=1 for the short ones). An entry of
// dist/src/main.js is rebuilt first.
import { createBenchDatabase } from './lib/database.js';
import { buildGateway, startGatewayProcess, WEBHOOK_TIMEOUT_MS } from './lib/gateway-process.js';
import { serviceToken as makeServiceToken } from './lib/http-client.js';
import { benchOptions } from './lib/options.js';
import { runMain } from './lib/processes.js';
import { startReceiverProcess } from './lib/receiver-process.js';
import { formatNumber, formatRatio, median } from './lib/stats.js';
import { idleScenario } from './scenarios/idle.js';
import { isolationScenario } from './scenarios/isolation.js';
import { throughputScenario } from './scenarios/throughput.js';

interface Round {
  deliveriesPerSec: number;
  ratio: number;
  cpuMsPerDelivery: number;
  serverCpuMsPerDelivery: number;
  idleP50: number;
  idleP99: number;
  healthyHalfPerSec: number;
  isolationControlPerSec: number;
  isolationRatio: number;
  isolationAloneRatio: number;
}

const started = Date.now();
const log = (line: string) => process.stdout.write(`[compare ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

async function main(): Promise<void> {
  const builds = process.argv.slice(2).map((arg) => {
    const at = arg.indexOf('=');
    if (at <= 0) throw new Error(`expected label=path/to/main.js, got ${arg}`);
    const [entry, ...settings] = arg.slice(at + 1).split(',');
    const env = Object.fromEntries(
      settings.map((setting) => {
        const eq = setting.indexOf('=');
        if (eq <= 0) throw new Error(`expected NAME=value after the entry, got ${setting}`);
        return [setting.slice(0, eq), setting.slice(eq + 1)];
      }),
    );
    return { label: arg.slice(0, at), entry: entry!, env };
  });
  if (builds.length < 2) throw new Error('usage: npx tsx bench/compare.ts before=<main.js> after=<main.js>');
  if (builds.some((b) => b.entry === 'dist/src/main.js')) await buildGateway();
  const rounds = Number(process.env['COMPARE_ROUNDS'] ?? 3);
  const options = { ...benchOptions(), reps: 1 };
  const results = new Map<string, Round[]>(builds.map((b) => [b.label, []]));
  const receiver = await startReceiverProcess();
  try {
    const serviceToken = await makeServiceToken();
    for (let round = 1; round <= rounds; round += 1) {
      const order = round % 2 === 1 ? builds : [...builds].reverse();
      for (const build of order) {
        const db = await createBenchDatabase();
        const gateway = await startGatewayProcess({ ...db.env, ...build.env }, { entry: build.entry });
        try {
          const quiet = (line: string) => log(`${build.label} round ${round}: ${line}`);
          const [idle] = await idleScenario({ options, gateway, receiver, serviceToken, log: quiet });
          const [throughput] = await throughputScenario({ options, gateway, receiver, serviceToken, log: quiet });
          const [isolation] = await isolationScenario({
            options,
            gateway,
            receiver,
            serviceToken,
            webhookTimeoutMs: WEBHOOK_TIMEOUT_MS,
            log: quiet,
          });
          results.get(build.label)!.push({
            deliveriesPerSec: throughput!.deliveriesPerSec,
            ratio: throughput!.ratio,
            cpuMsPerDelivery: throughput!.gatewayCpuMsPerDelivery,
            serverCpuMsPerDelivery: throughput!.postgresCpuMsPerDelivery,
            idleP50: idle!.p50,
            idleP99: idle!.p99,
            healthyHalfPerSec: isolation!.healthyHalf.deliveriesPerSec,
            isolationControlPerSec: isolation!.allHealthy.deliveriesPerSec,
            isolationRatio: isolation!.ratio,
            isolationAloneRatio: isolation!.aloneRatio,
          });
        } finally {
          await gateway.stop();
          await db.drop();
        }
      }
    }
  } finally {
    await receiver.close();
  }
  const rows: [string, (r: Round[]) => string][] = [
    ['1. Deliveries/s end to end', (r) => formatNumber(median(r.map((x) => x.deliveriesPerSec)))],
    ['1. Ratio to the bare got loop', (r) => formatRatio(median(r.map((x) => x.ratio)))],
    ['1. Gateway CPU per delivery', (r) => `${formatNumber(median(r.map((x) => x.cpuMsPerDelivery)), 2)} ms`],
    ['1. Postgres CPU per delivery', (r) => `${formatNumber(median(r.map((x) => x.serverCpuMsPerDelivery)), 2)} ms`],
    ['2. Idle p50 / p99', (r) => `${formatNumber(median(r.map((x) => x.idleP50)), 1)} / ${formatNumber(median(r.map((x) => x.idleP99)), 1)} ms`],
    ['4. Healthy half, deliveries/s', (r) => formatNumber(median(r.map((x) => x.healthyHalfPerSec)))],
    ['4. All healthy, same repetition, deliveries/s', (r) => formatNumber(median(r.map((x) => x.isolationControlPerSec)))],
    ['4. Healthy half / all healthy (per repetition)', (r) => formatRatio(median(r.map((x) => x.isolationRatio)))],
    ['4. Healthy half / healthy half alone (per repetition)', (r) => formatRatio(median(r.map((x) => x.isolationAloneRatio)))],
  ];
  const lines = [
    `${rounds} rounds, ${options.events} events × ${options.webhooks} webhooks${options.quick ? ' (BENCH_QUICK=1)' : ''}; medians over the rounds`,
    '',
    `| | ${builds.map((b) => b.label).join(' | ')} |`,
    `|---|${builds.map(() => '---|').join('')}`,
    ...rows.map(([name, cell]) => `| ${name} | ${builds.map((b) => cell(results.get(b.label)!)).join(' | ')} |`),
    '',
    'Each round, deliveries/s:',
    ...builds.map((b) => `- ${b.label}: ${results.get(b.label)!.map((x) => formatNumber(x.deliveriesPerSec)).join(', ')}`),
  ];
  process.stdout.write(`\n${lines.join('\n')}\n`);
}

runMain('compare', main);
