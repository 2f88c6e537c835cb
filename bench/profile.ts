// `npx tsx bench/profile.ts`: one throughput run of scenario 1 with the gateway under --cpu-prof,
// then the functions and packages that took the most CPU time. Where to look before changing
// anything; PROFILE_EVENTS and PROFILE_WEBHOOKS size the run, PROFILE_KEEP=1 keeps the
// .cpuprofile files (open them in Chrome DevTools). PROFILE_PUBLISH_ONLY=1 profiles publishing alone: the
// gateway runs with ROLE=api, so nothing is delivered. PROFILE_BROKEN=5 points five of the
// webhooks at a receiver that never answers, as scenario 4 does. Each thread is reported apart
// (with ROLE=all on Postgres the worker has a thread of its own).
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createBenchDatabase } from './lib/database.js';
import { deliveryRun } from './lib/delivery-run.js';
import { buildGateway, startGatewayProcess, WEBHOOK_TIMEOUT_MS } from './lib/gateway-process.js';
import { serviceToken, userToken } from './lib/http-client.js';
import { createWebhooks, publishEvents, sleep } from './lib/load.js';
import { runMain } from './lib/processes.js';
import { startReceiverProcess } from './lib/receiver-process.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

function where(url: string): string {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (match) return match[1]!;
  if (url.includes('/dist/')) return 'gateway';
  if (url.startsWith('node:')) return 'node core';
  return url === '' ? '(native, gc, idle)' : url;
}

function top(totals: Map<string, number>, all: number, n: number): string[] {
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, hits]) => `${((hits / all) * 100).toFixed(1).padStart(5)} %  ${name}`);
}

async function main(): Promise<void> {
  const events = Number(process.env['PROFILE_EVENTS'] ?? 1000);
  const webhooks = Number(process.env['PROFILE_WEBHOOKS'] ?? 10);
  const dir = await mkdtemp(path.join(tmpdir(), 'gateway-profile-'));
  await buildGateway();
  const receiver = await startReceiverProcess();
  const db = await createBenchDatabase();
  try {
    const publishOnly = process.env['PROFILE_PUBLISH_ONLY'] === '1';
    const gateway = await startGatewayProcess(
      { ...db.env, ...(publishOnly ? { ROLE: 'api' } : {}) },
      { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] },
    );
    const tenant = 'bench-profile';
    // PROFILE_BROKEN of the webhooks point at the receiver that never answers (scenario 4's load).
    const broken = Number(process.env['PROFILE_BROKEN'] ?? 0);
    const urls = Array.from({ length: webhooks }, (_, i) =>
      i < webhooks - broken ? `${receiver.healthyUrl}/hook/${i}` : `${receiver.silentUrl}/hook/${i}`,
    );
    await createWebhooks(gateway.url, await userToken(tenant), urls);
    if (broken > 0) await sleep(WEBHOOK_TIMEOUT_MS);
    await sleep(1000);
    const result = publishOnly
      ? await publishEvents({ gatewayUrl: gateway.url, token: await serviceToken(), tenant, run: 'profile', count: events, concurrency: Number(process.env['PROFILE_CONCURRENCY'] ?? 8) })
      : await deliveryRun({
      gateway,
      receiver,
      token: await serviceToken(),
      tenant,
      run: 'profile',
      events,
      expected: events * (webhooks - broken),
      publishConcurrency: 8,
      timeoutMs: 180_000,
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    await gateway.stop();
    // One profile per thread: CPU.<date>.<time>.<pid>.<thread id>.<n>.cpuprofile, thread 0 the main
    // one (the API, and the worker unless it has a thread of its own).
    const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
    if (files.length === 0) throw new Error('no profile written');
    for (const file of files) {
      const threadId = file.split('.').at(-3);
      const label = threadId === '0' ? 'main thread' : `thread ${threadId} (worker)`;
      const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as { nodes: ProfileNode[] };
      const byFunction = new Map<string, number>();
      const byPlace = new Map<string, number>();
      let all = 0;
      for (const node of profile.nodes) {
        const hits = node.hitCount ?? 0;
        if (node.callFrame.functionName === '(idle)') continue;
        all += hits;
        const { functionName, url, lineNumber } = node.callFrame;
        const name = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
        byFunction.set(name, (byFunction.get(name) ?? 0) + hits);
        byPlace.set(where(url), (byPlace.get(where(url)) ?? 0) + hits);
      }
      process.stdout.write(`\n== ${label}: ${all} busy samples\n`);
      process.stdout.write(`\nbusy samples by package:\n${top(byPlace, all, 20).join('\n')}\n`);
      process.stdout.write(`\nbusy samples by function (self time):\n${top(byFunction, all, 40).join('\n')}\n`);
    }
    if (process.env['PROFILE_KEEP'] === '1') process.stdout.write(`\nprofiles kept in ${dir}\n`);
    else await rm(dir, { recursive: true, force: true });
  } finally {
    await receiver.close();
    await db.drop();
  }
}

runMain('profile', main);
