// `npm run bench`: builds the gateway, starts the receiver process, runs every scenario (each at
// least three times) and writes the results into BENCHMARKS.md. Bounded: every run waits at most
// options.runTimeoutMs, every loop has a fixed count, and the whole run is cut off after
// OVERALL_LIMIT_MS. Only loopback traffic.
// `npm run bench -- --scenario fairness [--scenario fanout ...] [--reps N]` runs only the named
// scenarios, N times each, and prints their results without touching BENCHMARKS.md.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchDatabase, serverUrl } from './lib/database.js';
import { buildGateway, GATEWAY_ENTRY, GATEWAY_SETTINGS, startGatewayProcess, WEBHOOK_TIMEOUT_MS } from './lib/gateway-process.js';
import { serviceToken as makeServiceToken } from './lib/http-client.js';
import { machineInfo } from './lib/machine.js';
import { benchOptions } from './lib/options.js';
import { repoRoot, runMain, stopAllChildren } from './lib/processes.js';
import { startReceiverProcess } from './lib/receiver-process.js';
import { renderResults, writeReport } from './lib/report.js';
import { apiScenario } from './scenarios/api.js';
import { fairnessScenario, renderFairness } from './scenarios/fairness.js';
import { fanoutScenario, renderFanout } from './scenarios/fanout.js';
import { idleScenario } from './scenarios/idle.js';
import { isolationScenario } from './scenarios/isolation.js';
import { scaleScenario } from './scenarios/scale.js';
import { throughputScenario } from './scenarios/throughput.js';

const OVERALL_LIMIT_MS = 30 * 60 * 1000;

const SCENARIOS = ['idle', 'throughput', 'isolation', 'api', 'scale', 'fairness', 'fanout'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

function selection(): { only: ScenarioName[] | undefined; reps: number | undefined } {
  const { values } = parseArgs({ options: { scenario: { type: 'string', multiple: true }, reps: { type: 'string' } } });
  const names = values.scenario?.flatMap((v) => v.split(',')).map((v) => v.trim());
  for (const name of names ?? []) {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`unknown scenario ${name}; known: ${SCENARIOS.join(', ')}`);
  }
  const reps = values.reps === undefined ? undefined : Number(values.reps);
  if (reps !== undefined && (!Number.isInteger(reps) || reps < 1 || reps > 50)) throw new Error('--reps: a whole number from 1 to 50');
  return { only: names as ScenarioName[] | undefined, reps };
}

const started = Date.now();
const log = (line: string) => process.stdout.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

function describeCommand(quick: boolean): string {
  const parts: string[] = [];
  if (serverUrl) {
    const url = new URL(serverUrl);
    url.password = '';
    parts.push(`DATABASE_URL=${url.toString()}`);
  }
  if (quick) parts.push('BENCH_QUICK=1');
  if (process.env['BENCH_GATEWAY_ENTRY']) parts.push(`BENCH_GATEWAY_ENTRY=${GATEWAY_ENTRY}`);
  parts.push('npm run bench');
  return parts.join(' ');
}

/** Runs the named scenarios only and prints what they measured. */
async function runSelected(only: ScenarioName[], options: ReturnType<typeof benchOptions>): Promise<void> {
  const receiver = await startReceiverProcess();
  try {
    const serviceToken = await makeServiceToken();
    const out: string[] = [];
    const ctx = { options, receiver, serviceToken, log };
    const shared = only.filter((n) => n === 'idle' || n === 'throughput' || n === 'isolation');
    if (shared.length > 0) {
      const db = await createBenchDatabase();
      const gateway = await startGatewayProcess(db.env);
      try {
        for (const name of shared) {
          const reps =
            name === 'idle'
              ? await idleScenario({ ...ctx, gateway })
              : name === 'throughput'
                ? await throughputScenario({ ...ctx, gateway })
                : await isolationScenario({ ...ctx, gateway, webhookTimeoutMs: WEBHOOK_TIMEOUT_MS });
          out.push(`${name}: ${JSON.stringify(reps)}`);
        }
      } finally {
        await gateway.stop();
        await db.drop();
      }
    }
    if (only.includes('api')) out.push(`api: ${JSON.stringify(await apiScenario(ctx))}`);
    if (only.includes('scale')) out.push(`scale: ${JSON.stringify(await scaleScenario(ctx))}`);
    if (only.includes('fairness')) {
      const { target, section } = renderFairness(await fairnessScenario(ctx));
      out.push(target, '', ...section);
    }
    if (only.includes('fanout')) {
      const { target, section } = renderFanout(await fanoutScenario(ctx));
      out.push(target, '', ...section);
    }
    process.stdout.write(`\n${out.join('\n')}\n`);
  } finally {
    await receiver.close();
  }
}

async function main(): Promise<void> {
  const { only, reps } = selection();
  const options = { ...benchOptions(), ...(reps === undefined ? {} : { reps }) };
  log(`options: ${JSON.stringify(options)}`);
  const machine = await machineInfo();
  log(`machine: ${JSON.stringify(machine)}`);
  if (process.env['BENCH_GATEWAY_ENTRY']) {
    log(`using the build at ${GATEWAY_ENTRY}`);
  } else {
    log('building the gateway (tsc -p tsconfig.build.json)');
    await buildGateway();
  }
  if (only) return runSelected(only, options);
  const receiver = await startReceiverProcess();
  try {
    const serviceToken = await makeServiceToken();
    const webhookTimeoutMs = WEBHOOK_TIMEOUT_MS;
    const db = await createBenchDatabase();
    const gateway = await startGatewayProcess(db.env);
    let idle, throughput, isolation;
    try {
      log(`gateway ${gateway.url} (pid ${gateway.pid})`);
      idle = await idleScenario({ options, gateway, receiver, serviceToken, log });
      throughput = await throughputScenario({ options, gateway, receiver, serviceToken, log });
      isolation = await isolationScenario({ options, gateway, receiver, serviceToken, webhookTimeoutMs, log });
    } finally {
      await gateway.stop();
      await db.drop();
    }
    const api = await apiScenario({ options, receiver, log });
    const scale = await scaleScenario({ options, receiver, serviceToken, log });
    const fairness = await fairnessScenario({ options, receiver, serviceToken, log });
    const fanout = await fanoutScenario({ options, receiver, serviceToken, log });
    const results = renderResults({
      date: new Date(started),
      command: describeCommand(options.quick),
      machine,
      options,
      settings: GATEWAY_SETTINGS,
      durationSec: (Date.now() - started) / 1000,
      throughput,
      idle,
      api,
      isolation,
      scale,
      fairness,
      fanout,
    });
    const file = path.resolve(repoRoot, process.env['BENCH_REPORT'] || 'BENCHMARKS.md');
    await writeReport(file, results);
    process.stdout.write(`\n${results}\n\nwritten to ${file}\n`);
  } finally {
    await receiver.close();
  }
}

const watchdog = setTimeout(() => {
  log(`still running after ${OVERALL_LIMIT_MS / 60000} minutes; stopping`);
  void stopAllChildren().finally(() => process.exit(1));
}, OVERALL_LIMIT_MS);
watchdog.unref();

process.on('SIGINT', () => {
  void stopAllChildren().finally(() => process.exit(130));
});

runMain('bench', main);
