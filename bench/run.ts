// `npm run bench`: builds the gateway, starts the receiver process, runs every scenario (each at
// least three times) and writes the results into BENCHMARKS.md. Bounded: every run waits at most
// options.runTimeoutMs, every loop has a fixed count, and the whole run is cut off after
// OVERALL_LIMIT_MS. Only loopback traffic.
import path from 'node:path';
import { createBenchDatabase, serverUrl } from './lib/database.js';
import { buildGateway, GATEWAY_ENTRY, GATEWAY_SETTINGS, startGatewayProcess, WEBHOOK_TIMEOUT_MS } from './lib/gateway-process.js';
import { serviceToken as makeServiceToken } from './lib/http-client.js';
import { machineInfo } from './lib/machine.js';
import { benchOptions } from './lib/options.js';
import { repoRoot, runMain, stopAllChildren } from './lib/processes.js';
import { startReceiverProcess } from './lib/receiver-process.js';
import { renderResults, writeReport } from './lib/report.js';
import { apiScenario } from './scenarios/api.js';
import { idleScenario } from './scenarios/idle.js';
import { isolationScenario } from './scenarios/isolation.js';
import { scaleScenario } from './scenarios/scale.js';
import { throughputScenario } from './scenarios/throughput.js';

const OVERALL_LIMIT_MS = 25 * 60 * 1000;

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

async function main(): Promise<void> {
  const options = benchOptions();
  log(`options: ${JSON.stringify(options)}`);
  const machine = await machineInfo();
  log(`machine: ${JSON.stringify(machine)}`);
  if (process.env['BENCH_GATEWAY_ENTRY']) {
    log(`using the build at ${GATEWAY_ENTRY}`);
  } else {
    log('building the gateway (tsc -p tsconfig.build.json)');
    await buildGateway();
  }
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
