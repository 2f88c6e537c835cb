// Turns one benchmark run into the generated part of BENCHMARKS.md. Everything outside the
// markers is kept as written, so the notes on bottlenecks and changes survive a new run.
import { readFile, writeFile } from 'node:fs/promises';
import type { ApiRep, ApiTarget } from '../scenarios/api.js';
import type { IdleRep } from '../scenarios/idle.js';
import type { ScalePhase } from '../scenarios/scale.js';
import type { ThroughputRep } from '../scenarios/throughput.js';
import type { DeliveryRunResult } from './delivery-run.js';
import type { IsolationRep } from '../scenarios/isolation.js';
import { renderFairness, type FairnessRep } from '../scenarios/fairness.js';
import { renderFanout, type FanoutRep } from '../scenarios/fanout.js';
import { GATEWAY_ENTRY } from './gateway-process.js';
import type { MachineInfo } from './machine.js';
import type { BenchOptions } from './options.js';
import { formatNumber, formatRatio, formatSummary, median, summarize } from './stats.js';

export const START_MARKER = '<!-- bench:results:start (written by `npm run bench`; edit outside the markers) -->';
export const END_MARKER = '<!-- bench:results:end -->';

export interface BenchResults {
  date: Date;
  command: string;
  machine: MachineInfo;
  options: BenchOptions;
  settings: Record<string, string>;
  durationSec: number;
  throughput: ThroughputRep[];
  idle: IdleRep[];
  api: ApiRep[];
  isolation: IsolationRep[];
  scale: { empty: ScalePhase; large: ScalePhase };
  fairness: FairnessRep[];
  fanout: FanoutRep[];
}

const mib = (bytes: number) => `${formatNumber(bytes / 1024 ** 2)} MiB`;
const ms = (values: number[], digits = 1) => formatSummary(summarize(values), digits, ' ms');
/**
 * A target judged per repetition: "met in N of M runs", never a verdict from one figure. The
 * scenarios that measure one figure per run pair the repetitions of their two sides.
 */
const metIn = (oks: boolean[]) => {
  const n = oks.filter(Boolean).length;
  return `met in ${n} of ${oks.length} run${oks.length === 1 ? '' : 's'}${oks.length < 3 ? ' (too few runs to call)' : ''}`;
};
const pairs = <T>(a: readonly T[], b: readonly T[]) => a.slice(0, Math.min(a.length, b.length)).map((x, i) => [x, b[i]!] as const);

/** The local server's CPU per delivery, when it was measured (DATABASE_URL on this machine). */
function serverCpuRow(runs: readonly DeliveryRunResult[]): string[] {
  if (!runs.some((x) => Number.isFinite(x.postgresCpuMsPerDelivery))) return [];
  return [`| Postgres CPU time per delivery (every backend on the machine) | ${ms(runs.map((x) => x.postgresCpuMsPerDelivery), 2)} |`];
}

export function renderResults(r: BenchResults): string {
  const o = r.options;
  const m = r.machine;
  const tp = r.throughput;
  const tpRate = summarize(tp.map((x) => x.deliveriesPerSec));
  const bareRate = summarize(tp.map((x) => x.bareRequestsPerSec));
  const tpRatio = median(tp.map((x) => x.ratio));
  const idleP50 = median(r.idle.map((x) => x.p50));
  const api = (t: ApiTarget) => r.api.filter((x) => x.target === t);
  const apiRate = (t: ApiTarget) => median(api(t).map((x) => x.requestsPerSec));
  const isoRate = summarize(r.isolation.map((x) => x.healthyHalf.deliveriesPerSec));
  const isoControlRate = summarize(r.isolation.map((x) => x.allHealthy.deliveriesPerSec));
  const isoRatios = summarize(r.isolation.map((x) => x.ratio));
  const isoRatio = isoRatios.median;
  const isoAloneRate = summarize(r.isolation.map((x) => x.healthyAlone.deliveriesPerSec));
  const isoAloneRatios = summarize(r.isolation.map((x) => x.aloneRatio));
  const emptyRate = summarize(r.scale.empty.runs.map((x) => x.deliveriesPerSec));
  const largeRate = summarize(r.scale.large.runs.map((x) => x.deliveriesPerSec));
  const slowdown = 1 - largeRate.median / emptyRate.median;
  const seed = r.scale.large.seed;
  const memoryGrowth = r.scale.large.peakRss / r.scale.empty.peakRss - 1;
  const restOverGraphql = apiRate('rest') / apiRate('graphql');
  const restOverGraphqlRuns = pairs(api('rest'), api('graphql')).map(([rest, graphql]) => rest.requestsPerSec / graphql.requestsPerSec);
  const slowdownRuns = pairs(r.scale.empty.runs, r.scale.large.runs).map(([empty, large]) => 1 - large.deliveriesPerSec / empty.deliveriesPerSec);
  const total = o.events * o.webhooks;
  const fairness = renderFairness(r.fairness);
  const fanout = renderFanout(r.fanout);

  const lines: string[] = [];
  const add = (...l: string[]) => lines.push(...l);
  add(
    `Run of ${r.date.toISOString().slice(0, 10)} (${r.date.toISOString()}), \`${r.command}\`, ${formatNumber(r.durationSec)} s in all.`,
    '',
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGiB.toFixed(1)} GiB memory, ${m.platform}, Node ${m.node}, ${m.postgres}.`,
    'Everything shares those cores: the gateway, Postgres, the receiver process and the load generator (this process,',
    'which also runs autocannon and the bare got loop). The machine is noisy; numbers are medians of ' +
      `${o.reps} repetitions with the range (min–max) in brackets, and every ratio compares figures of this one run.`,
    '',
    `Gateway: compiled (${GATEWAY_ENTRY === 'dist/src/main.js' ? '`npm run build`, then `node dist/src/main.js`' : `\`node ${GATEWAY_ENTRY}\``}), one process (ROLE=all${o.embedded ? '' : ', its worker on a thread of its own'}), fresh database per gateway ` +
      `(${o.embedded ? 'embedded PGlite, smaller loads' : 'on the DATABASE_URL server'}). Settings: ` +
      Object.entries(r.settings)
        .map(([k, v]) => `\`${k}=${v}\``)
        .join(', ') +
      '. Publishing: a service JWT, `POST /api/v1/events` over keep-alive, ' +
      `${o.publishConcurrency} at a time, each event stamped with the time just before its POST.` +
      (o.quick ? ' **Short run (BENCH_QUICK=1): smaller loads than the full run.**' : ''),
    '',
    '### Targets',
    '',
    'Each target is counted over the repetitions of this run (a repetition is one run of the scenario); the figure is their median.',
    '',
    '| Target | Measured (median) | |',
    '|---|---|---|',
    `| End-to-end throughput ≥ 50 % of the bare got limit | ${formatRatio(tpRatio, 1)} | ${metIn(tp.map((x) => x.ratio >= 0.5))} |`,
    `| Idle publish-to-receipt p50 < 10 ms | ${formatNumber(idleP50, 1)} ms | ${metIn(r.idle.map((x) => x.p50 < 10))} |`,
    `| Healthy half ≥ 80 % of the all-healthy run | ${formatRatio(isoRatio, 1)} | ${metIn(r.isolation.map((x) => x.ratio >= 0.8))} |`,
    `| < 10 % slowdown from large tables | ${slowdown >= 0 ? `${formatRatio(slowdown, 1)} slower` : `none (${formatRatio(-slowdown, 1)} faster)`} | ${metIn(slowdownRuns.map((x) => x < 0.1))} |`,
    `| Memory flat in pending deliveries | peak RSS ${memoryGrowth >= 0 ? '+' : ''}${formatRatio(memoryGrowth, 1)} with ${formatNumber(seed?.pending ?? 0)} pending | one figure per run: ${Math.abs(memoryGrowth) < 0.1 ? 'within 10 % in this run' : '**more than 10 % in this run**'} |`,
    `| REST within 80 % of GraphQL | REST at ${formatRatio(restOverGraphql)} of GraphQL | ${metIn(restOverGraphqlRuns.map((x) => x >= 0.8))} |`,
    fairness.target,
    fanout.target,
    '',
    '### 1. Throughput and latency',
    '',
    `${formatNumber(o.events)} events × ${o.webhooks} webhooks = ${formatNumber(total)} deliveries per repetition to a receiver that ` +
      'answers 200 at once; throughput is deliveries over the time from the first publish to the last receipt. The limit, ' +
      `in the same repetition: ${formatNumber(total)} got POSTs of the same shape at concurrency ${o.workerConcurrency} ` +
      '(= WORKER_CONCURRENCY) to the same receiver.',
    '',
    '| | median (range) |',
    '|---|---|',
    `| Gateway, deliveries/s end to end | ${formatSummary(tpRate)} |`,
    `| Bare got loop, requests/s | ${formatSummary(bareRate)} |`,
    `| Ratio (per repetition, median) | ${formatRatio(tpRatio)} |`,
    `| Publish rate, events/s | ${formatSummary(summarize(tp.map((x) => x.publishPerSec)))} |`,
    `| Gateway CPU time per delivery (publishing included) | ${ms(tp.map((x) => x.gatewayCpuMsPerDelivery), 2)} |`,
    ...serverCpuRow(tp),
    `| Publish-to-receipt p50 | ${ms(tp.map((x) => x.p50), 0)} |`,
    `| Publish-to-receipt p95 | ${ms(tp.map((x) => x.p95), 0)} |`,
    `| Publish-to-receipt p99 | ${ms(tp.map((x) => x.p99), 0)} |`,
    '',
    'Publishing runs faster than delivery, so a backlog builds during the run and these latencies are mostly time in the',
    'queue (they grow with N); scenario 2 is the latency of one event on an idle system.',
    `Duplicates seen: ${tp.reduce((n, x) => n + (x.received - x.distinct), 0)}.`,
    '',
    '### 2. Idle latency',
    '',
    `${o.idle.events} single events per repetition, each after the previous one arrived and a random pause of ` +
      `${o.idle.gapMs[0]}–${o.idle.gapMs[1]} ms (the poll interval is ${r.settings['WORKER_POLL_INTERVAL']}, so only the NOTIFY wake-up explains low figures).`,
    '',
    '| | median (range) |',
    '|---|---|',
    `| p50 | ${ms(r.idle.map((x) => x.p50))} |`,
    `| p99 | ${ms(r.idle.map((x) => x.p99))} |`,
    `| max | ${ms(r.idle.map((x) => x.max))} |`,
    '',
    '### 3. API',
    '',
    `The webhook list of one tenant (${o.api.webhooks} webhooks), autocannon with ${o.api.connections} connections for ` +
      `${o.api.seconds} s per target after a 1 s warm-up, the three targets taken in turn in each repetition. Bare: a node:http ` +
      'handler (its own process) running the same SQL with the same pool size and writing the same JSON, without authentication.',
    '',
    '| | requests/s | p50 | p99 |',
    '|---|---|---|---|',
    ...(['rest', 'graphql', 'bare'] as const).map(
      (t) =>
        `| ${{ rest: 'REST `GET /api/v1/webhooks`', graphql: 'GraphQL `{ webhooks { … } }`', bare: 'bare node:http + same SQL' }[t]} | ` +
        `${formatSummary(summarize(api(t).map((x) => x.requestsPerSec)))} | ${ms(api(t).map((x) => x.p50), 0)} | ${ms(api(t).map((x) => x.p99), 0)} |`,
    ),
    '',
    `Ratios of the medians: REST/GraphQL ${formatRatio(restOverGraphql)}, REST/bare ${formatRatio(apiRate('rest') / apiRate('bare'))}, ` +
      `GraphQL/bare ${formatRatio(apiRate('graphql') / apiRate('bare'))}.`,
    '',
    '### 4. Isolation',
    '',
    `Per repetition three runs of ${formatNumber(o.events)} events, one right after the other (the order rotates), each on ` +
      `fresh webhooks: ${o.webhooks} webhooks all healthy; ${o.webhooks} with half of them on a receiver that accepts and never ` +
      `answers (WEBHOOK_TIMEOUT=${r.settings['WEBHOOK_TIMEOUT']}); and the healthy half's ${o.webhooks - Math.floor(o.webhooks / 2)} ` +
      `webhooks alone. Measured: the healthy half's throughput ` +
      `(${formatNumber(o.events * (o.webhooks - Math.floor(o.webhooks / 2)))} deliveries) against the all-healthy run's ` +
      `(${formatNumber(o.events * o.webhooks)}), as a ratio within each repetition (the target's ratio), and against the ` +
      `healthy half alone (the same deliveries with no broken endpoint beside them).`,
    '',
    '| | median (range) |',
    '|---|---|',
    `| Healthy half, deliveries/s | ${formatSummary(isoRate)} |`,
    `| All healthy (same repetitions), deliveries/s | ${formatSummary(isoControlRate)} |`,
    `| Ratio (per repetition) | ${formatRatio(isoRatio)} (${formatRatio(isoRatios.min)}–${formatRatio(isoRatios.max)}) |`,
    `| Healthy half alone (same repetitions), deliveries/s | ${formatSummary(isoAloneRate)} |`,
    `| Healthy half / healthy half alone (per repetition) | ${formatRatio(isoAloneRatios.median)} (${formatRatio(isoAloneRatios.min)}–${formatRatio(isoAloneRatios.max)}) |`,
    `| Healthy-half publish-to-receipt p50 / p99 | ${ms(r.isolation.map((x) => x.healthyHalf.p50), 0)} / ${ms(r.isolation.map((x) => x.healthyHalf.p99), 0)} |`,
    `| Gateway CPU per healthy delivery, half broken / all healthy / healthy half alone | ${ms(r.isolation.map((x) => x.healthyHalf.gatewayCpuMsPerDelivery), 2)} / ${ms(r.isolation.map((x) => x.allHealthy.gatewayCpuMsPerDelivery), 2)} / ${ms(r.isolation.map((x) => x.healthyAlone.gatewayCpuMsPerDelivery), 2)} |`,
    '',
    '### 5. Scale',
    '',
    `${formatNumber(o.scale.events)} events × ${o.webhooks} webhooks per repetition, on empty tables and on tables seeded with ` +
      (seed
        ? `${formatNumber(seed.attempts)} attempt rows (${formatNumber(seed.deliveries - seed.pending)} finished deliveries, ` +
          `${formatNumber(seed.events)} events) and ${formatNumber(seed.pending)} pending deliveries due from a day on, on the same webhooks ` +
          `(set-based SQL, ${formatNumber(seed.seconds)} s including ANALYZE)`
        : 'nothing') +
      '. Each phase: its own database and a freshly started gateway.',
    '',
    '| | empty tables | large tables |',
    '|---|---|---|',
    `| Deliveries/s | ${formatSummary(emptyRate)} | ${formatSummary(largeRate)} |`,
    `| Publish-to-receipt p50 | ${ms(r.scale.empty.runs.map((x) => x.p50), 0)} | ${ms(r.scale.large.runs.map((x) => x.p50), 0)} |`,
    `| Gateway CPU time per delivery | ${ms(r.scale.empty.runs.map((x) => x.gatewayCpuMsPerDelivery), 2)} | ${ms(r.scale.large.runs.map((x) => x.gatewayCpuMsPerDelivery), 2)} |`,
    ...(r.scale.empty.runs.some((x) => Number.isFinite(x.postgresCpuMsPerDelivery))
      ? [
          `| Postgres CPU time per delivery | ${ms(r.scale.empty.runs.map((x) => x.postgresCpuMsPerDelivery), 2)} | ${ms(r.scale.large.runs.map((x) => x.postgresCpuMsPerDelivery), 2)} |`,
        ]
      : []),
    `| Gateway RSS at rest after start | ${mib(r.scale.empty.idleRss)} | ${mib(r.scale.large.idleRss)} |`,
    `| Gateway RSS peak during the runs | ${mib(r.scale.empty.peakRss)} | ${mib(r.scale.large.peakRss)} |`,
    '',
    `Slowdown from the large tables: ${formatRatio(slowdown, 1)} (median against median; negative means faster).`,
    '',
    ...fairness.section,
    '',
    ...fanout.section,
  );
  return lines.join('\n');
}

const SKELETON = `# Benchmarks

\`npm run bench\` (code in bench/, never part of \`npm test\`) starts the gateway as a child process against
DATABASE_URL (or the embedded database), a receiver process on loopback, and runs every scenario three times.
\`BENCH_QUICK=1 npm run bench\` is a short run with smaller loads.

## Results

${START_MARKER}
${END_MARKER}
`;

export async function writeReport(file: string, results: string): Promise<void> {
  const current = await readFile(file, 'utf8').catch(() => SKELETON);
  const start = current.indexOf(START_MARKER);
  const end = current.indexOf(END_MARKER);
  const base = start >= 0 && end > start ? current : `${current.trimEnd()}\n\n## Results\n\n${START_MARKER}\n${END_MARKER}\n`;
  const s = base.indexOf(START_MARKER);
  const e = base.indexOf(END_MARKER);
  await writeFile(file, `${base.slice(0, s + START_MARKER.length)}\n${results}\n${base.slice(e)}`);
}
