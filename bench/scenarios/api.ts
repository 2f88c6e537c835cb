// Scenario 3: the webhook list under load (autocannon), through REST and through the same
// GraphQL query, next to a bare node:http handler that runs the same SQL. A gateway of its own on
// a fresh database, so the list and its tables hold only what this scenario put there.
import { cp } from 'node:fs/promises';
import path from 'node:path';
import autocannon from 'autocannon';
import { createBenchDatabase } from '../lib/database.js';
import { startGatewayProcess } from '../lib/gateway-process.js';
import { expectStatus, requestJson, userToken } from '../lib/http-client.js';
import { createWebhooks, sleep } from '../lib/load.js';
import type { BenchOptions } from '../lib/options.js';
import { childEnv, startChild, stopChild } from '../lib/processes.js';
import type { ReceiverProcess } from '../lib/receiver-process.js';

const WEBHOOK_FIELDS = 'id name url events enabled createdAt updatedAt lastDeliveryStatus lastDeliveryAt';

export type ApiTarget = 'rest' | 'graphql' | 'bare';

export interface ApiRep {
  target: ApiTarget;
  requestsPerSec: number;
  p99: number;
  p50: number;
}

interface Target {
  name: ApiTarget;
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  count(body: any): number;
}

async function startBareApi(env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const child = startChild(['--import', 'tsx', 'bench/bare-api.ts'], { env: childEnv(env), stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`bare api exited (${code})`)));
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const match = /bare api on (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
  });
  return { url, stop: () => stopChild(child, 'SIGTERM', 10_000) };
}

async function load(target: Target, connections: number, seconds: number): Promise<autocannon.Result> {
  const result = await autocannon({
    url: target.url,
    method: target.method,
    headers: target.headers,
    body: target.body,
    connections,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${target.name}: ${result.non2xx} non-2xx answers and ${result.errors} errors under load`);
  }
  return result;
}

export async function apiScenario(ctx: {
  options: BenchOptions;
  receiver: ReceiverProcess;
  log: (line: string) => void;
}): Promise<ApiRep[]> {
  const { options } = ctx;
  const db = await createBenchDatabase();
  let gateway = await startGatewayProcess(db.env);
  let bare: { url: string; stop(): Promise<void> } | undefined;
  try {
    const tenant = 'bench-api';
    const token = await userToken(tenant);
    const urls = Array.from({ length: options.api.webhooks }, (_, i) => `${ctx.receiver.healthyUrl}/api/${i}`);
    await createWebhooks(gateway.url, token, urls);
    await sleep(1500);
    if (db.url) {
      bare = await startBareApi({ BARE_DATABASE_URL: db.url, BARE_POOL_MAX: String(options.workerConcurrency + 10) });
    } else {
      // PGlite is one process's database: the bare handler serves a copy of the gateway's.
      await gateway.stop();
      const copy = path.join(db.dataDir, 'bare-pgdata');
      await cp(path.join(db.dataDir, 'pgdata'), copy, { recursive: true });
      gateway = await startGatewayProcess(db.env);
      bare = await startBareApi({ BARE_PGLITE_DIR: copy });
    }
    const auth = { authorization: `Bearer ${token}` };
    const targets: Target[] = [
      { name: 'rest', url: `${gateway.url}/api/v1/webhooks`, method: 'GET', headers: auth, count: (b) => b.length },
      {
        name: 'graphql',
        url: `${gateway.url}/graphql`,
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ query: `query ListWebhooks { webhooks { ${WEBHOOK_FIELDS} } }` }),
        count: (b) => b.data.webhooks.length,
      },
      { name: 'bare', url: `${bare.url}/webhooks?tenant=${tenant}`, method: 'GET', headers: {}, count: (b) => b.length },
    ];
    for (const t of targets) {
      const body = await expectStatus(
        requestJson(t.url, { method: t.method, token, body: t.body === undefined ? undefined : JSON.parse(t.body) }),
        200,
        t.name,
      );
      if (t.count(body) !== options.api.webhooks) throw new Error(`${t.name} listed ${t.count(body)} webhooks`);
      await load(t, options.api.connections, 1);
    }
    const reps: ApiRep[] = [];
    for (let rep = 1; rep <= options.reps; rep += 1) {
      for (const t of targets) {
        const result = await load(t, options.api.connections, options.api.seconds);
        reps.push({ target: t.name, requestsPerSec: result.requests.average, p99: result.latency.p99, p50: result.latency.p50 });
        ctx.log(`api ${rep}/${options.reps} ${t.name}: ${result.requests.average.toFixed(0)} req/s, p99 ${result.latency.p99} ms`);
      }
    }
    return reps;
  } finally {
    await bare?.stop();
    await gateway.stop();
    await db.drop();
  }
}
