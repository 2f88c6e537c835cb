import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { killAll, startTsx, type RunningProcess } from '../helpers/processes.js';
import { startReceiver, type Receiver, type ReceivedRequest } from '../helpers/receiver.js';

const STARTUP_MS = 90_000;
// Beyond SHUTDOWN_TIMEOUT, what closing the pools and exiting may take on a busy machine: an outer
// limit that still tells a bounded shutdown from one that hangs.
const EXIT_SLACK_MS = 20_000;

function gatewayEnv(db: TestDatabase, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    JWT_SECRET: TEST_JWT_SECRET,
    WEBHOOK_ALLOW_INSECURE_URLS: 'true',
    SHUTDOWN_TIMEOUT: '3s',
    WORKER_POLL_INTERVAL: '50ms',
    RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'info',
    ...db.env,
    ...extra,
  };
}

async function startMain(env: Record<string, string>): Promise<{ proc: RunningProcess; url: string }> {
  const proc = startTsx('src/main.ts', [], env);
  const match = await proc.waitForStdout(/InfraAudit webhook gateway on (http:\/\/\S+)/, STARTUP_MS);
  return { proc, url: match[1]! };
}

/** Sends `signal` and resolves with the exit code and how long the process took to end. */
async function stopWith(proc: RunningProcess, signal: NodeJS.Signals): Promise<{ code: number | string; ms: number }> {
  const sent = Date.now();
  proc.child.kill(signal);
  const code = await proc.exited;
  return { code, ms: Date.now() - sent };
}

const lockFile = (db: TestDatabase) => path.join(db.dataDir, 'pgdata.lock');

describe('graceful shutdown of the real server process', () => {
  const databases: TestDatabase[] = [];
  const receivers: Receiver[] = [];

  afterEach(async () => {
    await killAll();
  });
  afterAll(async () => {
    await killAll();
    for (const r of receivers) await r.close();
    for (const db of databases) await db.drop();
  });

  async function freshDatabase() {
    const db = await createTestDatabase();
    databases.push(db);
    return db;
  }

  it('exits 0 on SIGTERM with deliveries in flight, and a restart delivers every one of them', { timeout: 240_000 }, async () => {
    const db = await freshDatabase();
    let inFlight = 0;
    const receiver = await startReceiver((_r, _n, res) => {
      inFlight += 1;
      setTimeout(() => {
        inFlight -= 1;
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      }, 200);
    });
    receivers.push(receiver);
    const env = gatewayEnv(db, { WORKER_CONCURRENCY: '4' });

    const first = await startMain(env);
    const tenant = uniqueTenant('shutdown');
    const api = client(first.url, await userToken(tenant));
    const hooks = [
      await createWebhook(api, { url: `${receiver.url}/a`, events: ['drift.detected'] }),
      await createWebhook(api, { url: `${receiver.url}/b`, events: ['drift.detected'] }),
    ];
    const EVENTS = 50;
    const publisher = client(first.url, await serviceToken());
    const next = { seq: 0 };
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let seq = next.seq++; seq < EVENTS; seq = next.seq++) {
          const res = await publisher.post('/api/v1/events', { event: 'drift.detected', data: { seq }, tenant_id: tenant });
          expect(res.status, res.text).toBe(202);
          expect(res.body.deliveries).toBe(2);
        }
      }),
    );

    const drifts = () => receiver.requests.filter((r) => r.json?.event === 'drift.detected');
    const pairs = (list: ReceivedRequest[]) => new Set(list.map((r) => `${r.json.webhook_id}/${r.json.data.seq}`));
    await receiver.waitFor(10, { match: (r) => r.json?.event === 'drift.detected', timeoutMs: 30_000 });
    await expect.poll(() => inFlight, { interval: 5, message: 'attempts in flight when the signal is sent' }).toBeGreaterThan(0);
    const before = pairs(drifts()).size;
    expect(before, 'deliveries left for the restart').toBeLessThan(2 * EVENTS);

    const stopped = await stopWith(first.proc, 'SIGTERM');
    expect(stopped.code, first.proc.stderr()).toBe(0);
    expect(stopped.ms).toBeLessThan(3_000 + EXIT_SLACK_MS);
    // Every attempt in flight at the signal was allowed to finish.
    expect(inFlight).toBe(0);
    expect(first.proc.stdout()).toContain('"msg":"shutting down"');
    if (!onRealPostgres) expect(existsSync(lockFile(db)), 'pgdata.lock after exit').toBe(false);
    const afterFirst = drifts().length;

    const second = await startMain(env);
    await receiver.waitFor(2 * EVENTS, { match: (r) => r.json?.event === 'drift.detected', timeoutMs: 90_000 }).catch(() => undefined);
    const got = drifts();
    const seen = pairs(got);
    const missing: string[] = [];
    for (const h of hooks) for (let seq = 0; seq < EVENTS; seq += 1) if (!seen.has(`${h.id}/${seq}`)) missing.push(`${h.id}/${seq}`);
    expect(missing, 'deliveries never received').toEqual([]);
    expect(got.length, 'the restart had work left to do').toBeGreaterThan(afterFirst);

    // One delivery id per (event, webhook), kept across processes; the attempts that finished
    // during the grace were recorded, so nothing was sent twice.
    const idsByPair = new Map<string, Set<string>>();
    for (const r of got) {
      const key = `${r.json.webhook_id}/${r.json.data.seq}`;
      if (!idsByPair.has(key)) idsByPair.set(key, new Set());
      idsByPair.get(key)!.add(r.json.delivery_id);
      expect(r.headers['x-infraaudit-delivery']).toBe(r.json.delivery_id);
    }
    expect([...idsByPair.values()].every((ids) => ids.size === 1)).toBe(true);
    expect(new Set(got.map((r) => r.json.delivery_id)).size).toBe(2 * EVENTS);
    expect(got.length, 'duplicate sends').toBe(2 * EVENTS);

    const api2 = client(second.url, await userToken(tenant));
    for (const h of hooks) {
      const failed = await api2.get(`/api/v1/webhooks/${h.id}/deliveries?status=failed`);
      expect(failed.body.pagination.total).toBe(0);
    }
    const stoppedAgain = await stopWith(second.proc, 'SIGTERM');
    expect(stoppedAgain.code, second.proc.stderr()).toBe(0);
  });

  it('hands back the leases of attempts still running when the grace runs out', { timeout: 240_000 }, async () => {
    const db = await freshDatabase();
    const held: ServerResponse[] = [];
    // Hangs until the first process is gone; then answers at once.
    const receiver = await startReceiver((_r, _n, res) => {
      held.push(res);
    });
    receivers.push(receiver);
    // The lease (WEBHOOK_TIMEOUT + WORKER_LEASE_MARGIN = 60 s) is far beyond this test's wait:
    // only a lease handed back lets the restarted process send again.
    const env = gatewayEnv(db, { SHUTDOWN_TIMEOUT: '1s', WEBHOOK_TIMEOUT: '30s', WORKER_LEASE_MARGIN: '30s' });
    const first = await startMain(env);
    const tenant = uniqueTenant('leases');
    const hook = await createWebhook(client(first.url, await userToken(tenant)), { url: `${receiver.url}/slow`, events: ['drift.detected'] });
    const publisher = client(first.url, await serviceToken());
    for (let i = 0; i < 3; i += 1) {
      expect((await publisher.post('/api/v1/events', { event: 'drift.detected', data: { i }, tenant_id: tenant })).status).toBe(202);
    }
    const hanging = await receiver.waitFor(4, { timeoutMs: 30_000 });
    const hangingIds = new Set(hanging.map((r) => r.json.delivery_id as string));
    expect(hangingIds.size).toBe(4);

    const stopped = await stopWith(first.proc, 'SIGTERM');
    expect(stopped.code, first.proc.stderr()).toBe(0);
    expect(stopped.ms, 'waited for the grace').toBeGreaterThanOrEqual(900);
    expect(stopped.ms).toBeLessThan(1_000 + EXIT_SLACK_MS);
    expect(first.proc.stdout()).toContain('attempts still in flight at shutdown; releasing their leases');
    if (!onRealPostgres) expect(existsSync(lockFile(db))).toBe(false);

    receiver.respond((_r, _n, res) => {
      res.writeHead(204).end();
    });
    for (const res of held) res.destroy();
    const restartedAt = Date.now();
    const second = await startMain(env);
    const again = await receiver.waitFor(8, { timeoutMs: 30_000 });
    const resent = again.slice(4);
    expect(new Set(resent.map((r) => r.json.delivery_id))).toEqual(hangingIds);
    // The unfinished attempt was never recorded, so it is attempt 1 once more.
    expect(resent.map((r) => r.headers['x-infraaudit-attempt'])).toEqual(['1', '1', '1', '1']);
    expect(resent.every((r) => r.json.webhook_id === hook.id)).toBe(true);
    expect(Date.now() - restartedAt).toBeLessThan(60_000);

    // The requests cut off by the first process's exit are not recorded as failed attempts: the
    // history holds exactly the four successful ones.
    const api2 = client(second.url, await userToken(tenant));
    await expect
      .poll(async () => (await api2.get(`/api/v1/webhooks/${hook.id}/deliveries?per_page=100`)).body.pagination.total, { timeout: 10_000 })
      .toBe(4);
    const history = (await api2.get(`/api/v1/webhooks/${hook.id}/deliveries?per_page=100`)).body.data as any[];
    expect(history.map((a) => [a.status, a.attempt, a.response_code])).toEqual(Array.from({ length: 4 }, () => ['success', 1, 204]));
    expect(new Set(history.map((a) => a.delivery_id))).toEqual(hangingIds);
    expect((await stopWith(second.proc, 'SIGTERM')).code).toBe(0);
  });

  it('exits 0 on SIGINT after finishing a request that was in progress', { timeout: 120_000 }, async () => {
    const db = await freshDatabase();
    const { proc, url } = await startMain(gatewayEnv(db));
    const token = await userToken(uniqueTenant('sigint'));
    const { port } = new URL(url);

    // A keep-alive connection with nothing in progress must not hold the shutdown up.
    const idle = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => idle.once('connect', () => resolve()));
    idle.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise<void>((resolve) => idle.once('data', () => resolve()));

    // The request is under way: its head is half sent when the signal arrives.
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      answer += chunk;
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`GET /api/v1/webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n`);
    await new Promise((resolve) => setTimeout(resolve, 100));

    const sent = Date.now();
    proc.child.kill('SIGINT');
    await proc.waitForStdout(/"signal":"SIGINT".*"msg":"shutting down"/, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proc.child.exitCode, 'still serving the request in progress').toBeNull();

    socket.write('Accept: application/json\r\n\r\n');
    await closed;
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(body!)).toEqual([]);

    const code = await proc.exited;
    expect(code, proc.stderr()).toBe(0);
    expect(Date.now() - sent).toBeLessThan(3_000 + EXIT_SLACK_MS);
    if (!onRealPostgres) expect(existsSync(lockFile(db))).toBe(false);
    idle.destroy();
  });

  it.skipIf(onRealPostgres)('refuses a second process on the same embedded DATA_DIR, naming the lock holder (embedded only)', { timeout: 120_000 }, async () => {
    const db = await freshDatabase();
    const env = gatewayEnv(db);
    const first = await startMain(env);
    expect(existsSync(lockFile(db))).toBe(true);

    const second = startTsx('src/main.ts', [], env);
    const code = await second.exited;
    expect(code).toBe(1);
    const message = second.stderr();
    expect(message).toContain('could not start');
    expect(message).toContain(`in use by process ${first.proc.child.pid}`);
    expect(message).toContain(path.resolve(db.dataDir));
    expect(second.stdout()).not.toContain('InfraAudit webhook gateway on');

    // The first one is unharmed, and still owns the lock.
    const health = await fetch(`${first.url}/readyz`);
    expect(health.status).toBe(200);
    expect(existsSync(lockFile(db))).toBe(true);
    expect((await stopWith(first.proc, 'SIGTERM')).code).toBe(0);
    expect(existsSync(lockFile(db))).toBe(false);
  });
});
