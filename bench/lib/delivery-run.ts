// One measured delivery run: publish events, wait until the receiver has every delivery that
// should reach it, and turn the receipt times into throughput and latency.
import { serverUrl } from './database.js';
import type { GatewayProcess } from './gateway-process.js';
import { now, publishEvents, sleep } from './load.js';
import type { ReceiverProcess } from './receiver-process.js';
import { postgresCpuMs } from './processes.js';
import { percentile } from './stats.js';

// The server's CPU is only read when it runs on this machine (and not for the embedded database,
// which runs inside the gateway process and is counted with it).
const localServer = serverUrl !== undefined && ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(serverUrl).hostname);
/** CPU time the local Postgres server has used so far, in ms; NaN when it is not on this machine. */
export const serverCpuMs = () => (localServer ? postgresCpuMs() : Promise.resolve(Number.NaN));

export interface DeliveryRunResult {
  expected: number;
  received: number;
  distinct: number;
  /** First publish to last receipt, in seconds. */
  seconds: number;
  deliveriesPerSec: number;
  publishPerSec: number;
  p50: number;
  p95: number;
  p99: number;
  /** CPU time the gateway process used per delivery (publishing included), in ms. */
  gatewayCpuMsPerDelivery: number;
  /** CPU time the local Postgres server used per delivery, in ms (NaN when not measured). */
  postgresCpuMsPerDelivery: number;
}

export async function deliveryRun(options: {
  gateway: GatewayProcess;
  receiver: ReceiverProcess;
  token: string;
  tenant: string;
  run: string;
  events: number;
  /** Deliveries that should reach the healthy receiver. */
  expected: number;
  publishConcurrency: number;
  timeoutMs: number;
}): Promise<DeliveryRunResult> {
  const { receiver, run } = options;
  const arrived = receiver.waitFor(run, options.expected, options.timeoutMs);
  const cpuBefore = await options.gateway.cpuMs();
  const serverBefore = await serverCpuMs();
  const started = now();
  const published = await publishEvents({
    gatewayUrl: options.gateway.url,
    token: options.token,
    tenant: options.tenant,
    run,
    count: options.events,
    concurrency: options.publishConcurrency,
  });
  const report = await arrived;
  receiver.forget(run);
  // Let the last attempts be recorded before the next run starts.
  await sleep(500);
  const cpuAfter = await options.gateway.cpuMs();
  const serverAfter = await serverCpuMs();
  const seconds = (report.last - started) / 1000;
  return {
    expected: options.expected,
    received: report.count,
    distinct: report.distinct,
    seconds,
    deliveriesPerSec: options.expected / seconds,
    publishPerSec: options.events / ((published.finishedAt - published.startedAt) / 1000),
    p50: percentile(report.latencies, 50),
    p95: percentile(report.latencies, 95),
    p99: percentile(report.latencies, 99),
    gatewayCpuMsPerDelivery: (cpuAfter - cpuBefore) / options.expected,
    postgresCpuMsPerDelivery: (serverAfter - serverBefore) / options.expected,
  };
}
