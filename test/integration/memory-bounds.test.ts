// Thousands of distinct large GraphQL documents, first from strangers, then from a tenant: the
// gateway's resident memory ends within a margin of where it started, the caches keyed by
// documents and tokens stay within their byte budgets (their gauges on /metrics: the exact bound,
// which resident memory, with the collector's slack in it, cannot show), and /healthz answers
// throughout. The gateway runs as a child process so that its memory is measured alone.
import { readFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../helpers/gateway.js';
import { killAll, startTsx } from '../helpers/processes.js';

const ANONYMOUS_DOCUMENTS = 2000;
const ANONYMOUS_BYTES = 32 * 1024;
const TENANT_DOCUMENTS = 40;
const TENANT_BYTES = 900 * 1024;
/**
 * What the process may keep after the load: caches at their bounds, and the collector's slack,
 * which on a busy machine can stay above 100 MB for a while (the embedded database's memory, in
 * the same process, never shrinks once grown).
 */
const MARGIN_BYTES = 160 * 1024 * 1024;

async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** A document of about `bytes` bytes that differs from every other: a long unique comment. */
function distinctDocument(i: number, bytes: number): string {
  return `# ${i} ${'x'.repeat(bytes)}\n{ __typename }`;
}

/** Sends `count` requests, `concurrency` at a time; resolves with how many got each status. */
async function runAll(count: number, concurrency: number, send: (i: number) => Promise<number>): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const status = await send(next++).catch((err: Error) => `${err.name}: ${(err.cause as Error | undefined)?.message ?? err.message}`);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

describe.skipIf(process.platform !== 'linux')('memory under distinct large documents', () => {
  let db: TestDatabase | undefined;

  afterAll(async () => {
    await killAll();
    await db?.drop();
  });

  it('stays within a small margin of its starting size, answering /healthz throughout', async () => {
    db = await createTestDatabase();
    const gateway = startTsx('src/main.ts', [], {
      ...db.env,
      ROLE: 'api',
      HOST: '127.0.0.1',
      PORT: '0',
      ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
      JWT_SECRET: TEST_JWT_SECRET,
      RATE_LIMIT_PER_MINUTE: '0',
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1000000',
      LOG_LEVEL: 'warn',
    });
    const url = (await gateway.waitForStdout(/InfraAudit webhook gateway on (http:\/\/\S+)/, 120_000))[1]!;
    const pid = gateway.child.pid!;
    const token = await userToken(uniqueTenant('memory'));
    const post = (body: string, authorization?: string) =>
      fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body,
      }).then(async (res) => {
        await res.arrayBuffer();
        return res.status;
      });

    // Warm up every path the load takes, then take the starting size.
    for (let i = 0; i < 20; i++) {
      await post(JSON.stringify({ query: distinctDocument(-i - 1, 1024) })).catch(() => undefined);
      await post(JSON.stringify({ query: distinctDocument(-i - 1, 1024) }), `Bearer ${token}`);
    }
    const before = await residentBytes(pid);

    let healthChecks = 0;
    let healthFailures = 0;
    let loading = true;
    const health = (async () => {
      while (loading) {
        const started = Date.now();
        const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) })
          .then((r) => r.status === 200)
          .catch(() => false);
        healthChecks++;
        if (!ok) healthFailures++;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - (Date.now() - started))));
      }
    })();

    // Refused before their bodies are read, strangers' requests may see the connection close
    // while still sending: such an error counts as refused too.
    const anonymous = await runAll(ANONYMOUS_DOCUMENTS, 16, (i) => post(JSON.stringify({ query: distinctDocument(i, ANONYMOUS_BYTES) })));
    const tenant = await runAll(TENANT_DOCUMENTS, 4, (i) => post(JSON.stringify({ query: distinctDocument(i, TENANT_BYTES) }), `Bearer ${token}`));
    loading = false;
    await health;

    expect(Object.keys(anonymous).every((s) => s === '401' || !/^\d+$/.test(s)), JSON.stringify(anonymous)).toBe(true);
    expect(anonymous['401'] ?? 0).toBeGreaterThan(ANONYMOUS_DOCUMENTS / 2);
    expect(tenant).toEqual({ 200: TENANT_DOCUMENTS });
    expect(healthChecks).toBeGreaterThan(0);
    expect(healthFailures).toBe(0);
    // The caches filled up to their budgets and no further.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const gauge = (name: string, cache: string) => Number(new RegExp(`^${name}\\{cache="${cache}"\\} (\\d+)`, 'm').exec(metrics)?.[1]);
    expect(gauge('gateway_cache_bytes', 'graphql_documents')).toBeGreaterThan(0);
    expect(gauge('gateway_cache_bytes', 'graphql_documents')).toBeLessThanOrEqual(gauge('gateway_cache_budget_bytes', 'graphql_documents'));
    expect(gauge('gateway_cache_bytes', 'verified_jwts')).toBeGreaterThan(0);
    expect(gauge('gateway_cache_bytes', 'verified_jwts')).toBeLessThanOrEqual(gauge('gateway_cache_budget_bytes', 'verified_jwts'));
    // Garbage from the load is returned to the system once the collector runs after it; what is
    // still held then is what the process keeps.
    await expect
      .poll(async () => (await residentBytes(pid)) - before, { timeout: 60_000, interval: 1_000, message: `resident growth from ${before} bytes` })
      .toBeLessThan(MARGIN_BYTES);
  }, 300_000);
});
