// Fault tolerance of real gateway processes on real Postgres: a worker killed mid-send, two
// workers sharing one queue, and a Postgres restart under a running worker.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { freePort, uniqueTenant } from '../helpers/delivery.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { killAll, startTsx, type RunningProcess } from '../helpers/processes.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const FAULT_TEST_TIMEOUT = 60_000;

function gatewayEnv(databaseUrl: string, dataDir: string, extra: Record<string, string>): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DATA_DIR: dataDir,
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    JWT_SECRET: TEST_JWT_SECRET,
    WEBHOOK_ALLOW_INSECURE_URLS: 'true',
    RATE_LIMIT_PER_MINUTE: '0',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    WORKER_POLL_INTERVAL: '100ms',
    WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms,200ms,200ms',
    ...extra,
  };
}

const apis = new Set<TestGateway>();

/**
 * The API side runs in the test's process: the faults here are the worker's and the database's,
 * and the workers are the processes that get killed.
 */
async function startApi(env: Record<string, string>): Promise<{ url: string }> {
  const noDatabase: TestDatabase = { env: {}, url: env['DATABASE_URL'], dataDir: env['DATA_DIR']!, drop: () => Promise.resolve() };
  const api = await startTestGateway({ ...env, ROLE: 'api' }, noDatabase);
  apis.add(api);
  return { url: api.url };
}

/** Ends the worker processes and the API gateways started so far. */
async function stopAll(): Promise<void> {
  await killAll();
  for (const api of apis) await api.stop();
  apis.clear();
}

async function startWorker(env: Record<string, string>): Promise<RunningProcess> {
  const worker = startTsx('src/main.ts', [], { ...env, ROLE: 'worker' });
  await worker.waitForStdout(/"msg":"gateway started"/, 45_000);
  return worker;
}

function alive(p: RunningProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

async function publishAll(api: TestClient, count: number, data: (n: number) => Record<string, unknown>, parallel = 10): Promise<void> {
  for (let i = 0; i < count; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, count - i) }, (_, j) => i + j);
    const answers = await Promise.all(batch.map((n) => api.post('/api/v1/events', { event: 'drift.detected', data: data(n) })));
    for (const res of answers) expect(res.status, res.text).toBe(202);
  }
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

describe.skipIf(!onRealPostgres)('faults with real worker processes (needs real Postgres)', () => {
  const databases: TestDatabase[] = [];
  const receivers: Receiver[] = [];

  afterEach(async () => {
    await stopAll();
  });
  afterAll(async () => {
    await stopAll();
    for (const r of receivers.splice(0)) await r.close();
    for (const db of databases.splice(0)) await db.drop();
  });

  it(
    'a worker killed with SIGKILL mid-send loses nothing: a new worker sends every delivery (needs real Postgres)',
    async () => {
      const db = await createTestDatabase();
      databases.push(db);
      // A short lease so the dead worker's rows come back within the test.
      const env = gatewayEnv(db.url!, db.dataDir, { WEBHOOK_TIMEOUT: '1s', WORKER_LEASE_MARGIN: '1s' });
      const held: ServerResponse[] = [];
      let holding = true;
      const answered = new Set<string>();
      const receiver = await startReceiver((req, n, res) => {
        if (req.json?.event === 'drift.detected' && holding) {
          held.push(res);
          return;
        }
        if (req.json?.event === 'drift.detected') answered.add(req.json.delivery_id as string);
        answer(200)(req, n, res);
      });
      receivers.push(receiver);

      const { url } = await startApi(env);
      const first = await startWorker(env);
      const api = client(url, await userToken(uniqueTenant('kill')));
      const created = await api.post('/api/v1/webhooks', { name: 'r', url: `${receiver.url}/kill`, events: ['drift.detected'] });
      expect(created.status, created.text).toBe(201);
      await receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

      const total = 20;
      await publishAll(api, total, (n) => ({ n }));
      // The per-webhook cap (4) is in flight, held open by the receiver: kill the worker now.
      const inFlight = await receiver.waitFor(4, { match: (r) => r.json?.event === 'drift.detected' });
      const inFlightIds = new Set(inFlight.map((r) => r.json.delivery_id as string));
      first.child.kill('SIGKILL');
      expect(await first.exited).toBe('SIGKILL');
      holding = false;
      for (const res of held.splice(0)) res.destroy();

      const second = await startWorker(env);
      await expect.poll(() => answered.size, { timeout: 30_000, interval: 100 }).toBe(total);
      const drifts = receiver.requests.filter((r) => r.json?.event === 'drift.detected');
      expect(new Set(drifts.map((r) => r.json.data.n)).size).toBe(total);
      // The rows that were in flight at the kill were sent again (at least once, never lost).
      for (const id of inFlightIds) {
        expect(drifts.filter((r) => r.json.delivery_id === id).length, id).toBeGreaterThanOrEqual(2);
        expect(answered.has(id)).toBe(true);
      }
      await expect
        .poll(async () => query<{ status: string; n: string }>(db.url!, `select status, count(*) as n from delivery where event_type = 'drift.detected' group by status`), { timeout: 10_000 })
        .toEqual([{ status: 'success', n: String(total) }]);
      expect(alive(second)).toBe(true);
    },
    FAULT_TEST_TIMEOUT,
  );

  it(
    'two workers on one Postgres deliver everything and never send the same attempt twice (needs real Postgres)',
    async () => {
      const db = await createTestDatabase();
      databases.push(db);
      const env = gatewayEnv(db.url!, db.dataDir, {
        WEBHOOK_TIMEOUT: '5s',
        // Each worker alone cannot fill both webhooks' caps, so both always find work.
        WORKER_CONCURRENCY: '8',
        WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '16',
      });
      const receiver = await startReceiver(async (req, n, res) => {
        await new Promise((resolve) => setTimeout(resolve, 3));
        answer(200)(req, n, res);
      });
      receivers.push(receiver);

      const { url } = await startApi(env);
      const [w1, w2] = await Promise.all([startWorker(env), startWorker(env)]);
      const api = client(url, await userToken(uniqueTenant('pair')));
      const hooks: string[] = [];
      for (const name of ['one', 'two']) {
        const res = await api.post('/api/v1/webhooks', { name, url: `${receiver.url}/${name}`, events: ['drift.detected'] });
        expect(res.status).toBe(201);
        hooks.push(res.body.id as string);
      }
      const events = 200;
      await publishAll(api, events, (n) => ({ n }));
      const isDrift = (r: ReceivedRequest) => r.json?.event === 'drift.detected';
      await receiver.waitFor(events * hooks.length, { match: isDrift, timeoutMs: 40_000 });

      const drifts = receiver.requests.filter(isDrift);
      const pairs = new Set(drifts.map((r) => `${r.json.webhook_id}/${r.json.data.n}`));
      expect(pairs.size).toBe(events * hooks.length);
      const sends = new Map<string, number>();
      for (const r of receiver.requests) {
        const key = `${r.json?.delivery_id}#${String(r.headers['x-infraaudit-attempt'])}`;
        sends.set(key, (sends.get(key) ?? 0) + 1);
      }
      expect([...sends.entries()].filter(([, count]) => count > 1)).toEqual([]);

      const attemptsBy = (p: RunningProcess) => p.stdout().split('\n').filter((l) => l.includes('"msg":"delivery attempt"')).length;
      // Every request the receiver got was logged by exactly one of the two (logs reach stdout a little later).
      await expect.poll(() => attemptsBy(w1) + attemptsBy(w2)).toBe(receiver.requests.length);
      expect(attemptsBy(w1)).toBeGreaterThan(0);
      expect(attemptsBy(w2)).toBeGreaterThan(0);
      expect(alive(w1) && alive(w2)).toBe(true);
      await expect
        .poll(async () => query<{ status: string; n: string }>(db.url!, `select status, count(*) as n from delivery group by status`))
        .toEqual([{ status: 'success', n: String(events * hooks.length + hooks.length) }]);
    },
    FAULT_TEST_TIMEOUT,
  );
});

// --- A private, throwaway Postgres cluster: the shared server is never restarted. ---

function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')) && existsSync(path.join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

const isRoot = process.getuid?.() === 0;
const pgBin = postgresBinDir();
const runuser = ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser'].find((p) => existsSync(p));
const postgresUser = (() => {
  try {
    return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
  } catch {
    return undefined;
  }
})();
const canRunPrivateCluster = pgBin !== undefined && (!isRoot || (runuser !== undefined && postgresUser !== undefined));

/** Runs a Postgres tool as the postgres user (initdb refuses root). Resolves on exit. */
function pgTool(tool: string, args: string[]): Promise<void> {
  const command = path.join(pgBin!, tool);
  const [file, argv] = isRoot ? [runuser!, ['-u', 'postgres', '--', command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    // 'exit', not 'close': a server started by pg_ctl must not keep this waiting on a pipe.
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} ${args.join(' ')} exited ${code}: ${stderr}`))));
    child.once('error', reject);
  });
}

describe.skipIf(!onRealPostgres || !canRunPrivateCluster)(
  'a Postgres restart under a running worker (needs real Postgres and initdb, on a private cluster)',
  () => {
    let dir: string | undefined;
    let started = false;
    let receiver: Receiver | undefined;

    afterAll(async () => {
      await stopAll();
      await receiver?.close();
      if (dir && started) await pgTool('pg_ctl', ['-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it(
      'the worker survives the restart without restarting, and every delivery arrives (needs real Postgres)',
      async () => {
        dir = mkdtempSync(path.join(tmpdir(), 'gateway-pg-'));
        if (isRoot) chownSync(dir, postgresUser!.uid, postgresUser!.gid);
        const data = path.join(dir, 'data');
        const port = await freePort();
        await pgTool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
        const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
        await pgTool('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-o', serverOptions, '-w', '-t', '30', 'start']);
        started = true;
        const databaseUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
        const env = gatewayEnv(databaseUrl, dir, { WEBHOOK_TIMEOUT: '3s', WORKER_LEASE_MARGIN: '2s' });

        const answered = new Set<number>();
        receiver = await startReceiver(async (req, n, res) => {
          // Slow answers, so attempts are in flight while the server goes away.
          if (req.json?.event === 'drift.detected') await new Promise((resolve) => setTimeout(resolve, 400));
          if (req.json?.event === 'drift.detected') answered.add(req.json.data.n as number);
          answer(200)(req, n, res);
        });

        const { url } = await startApi(env);
        const worker = await startWorker(env);
        const pid = worker.child.pid;
        const api = client(url, await userToken(uniqueTenant('restart')));
        const created = await api.post('/api/v1/webhooks', { name: 'r', url: `${receiver.url}/restart`, events: ['drift.detected'] });
        expect(created.status, created.text).toBe(201);

        const before = 12;
        await publishAll(api, before, (n) => ({ n }));
        await receiver.waitFor(2, { match: (r) => r.json?.event === 'drift.detected' });

        // The outage: a fast stop, the server gone for a while, then back on the same port.
        await pgTool('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        await pgTool('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-o', serverOptions, '-w', '-t', '30', 'start']);

        // Published after the restart through the same API process. The Idempotency-Key keeps a
        // retried publish (the API's pool may still hold a dropped connection) from doubling it.
        const after = 8;
        for (let n = before; n < before + after; n += 1) {
          for (let tries = 0; ; tries += 1) {
            const res = await api.post('/api/v1/events', { event: 'drift.detected', data: { n } }, { headers: { 'idempotency-key': `after-${n}` } });
            if (res.status === 202 || res.status === 200) break;
            expect(tries, `publish ${n} after the restart: ${res.status} ${res.text}`).toBeLessThan(5);
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }

        await expect.poll(() => answered.size, { timeout: 30_000, interval: 100 }).toBe(before + after);
        expect([...answered].sort((a, b) => a - b)).toEqual(Array.from({ length: before + after }, (_, n) => n));
        await expect
          .poll(async () => query<{ status: string; n: string }>(databaseUrl, `select status, count(*) as n from delivery where event_type = 'drift.detected' group by status`), { timeout: 15_000 })
          .toEqual([{ status: 'success', n: String(before + after) }]);
        // The worker did see the outage (its claims failed meanwhile) and carried on.
        expect(worker.stdout()).toMatch(/"msg":"claiming deliveries failed; retrying"/);
        expect(worker.child.pid).toBe(pid);
        expect(alive(worker)).toBe(true);
        // Attempts in flight during the outage were recorded once it was back, not given up on.
        expect(worker.stdout()).not.toMatch(/"msg":"delivery attempt could not be completed"/);
      },
      FAULT_TEST_TIMEOUT,
    );
  },
);
