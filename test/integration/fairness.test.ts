// The scheduler's fairness: no webhook ever has more than WORKER_MAX_IN_FLIGHT_PER_WEBHOOK
// attempts open at once (counted at a real receiver, and across gateway instances sharing one
// Postgres), and an endpoint that hangs does not hold up a healthy one.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, expectUnchangedFor, uniqueTenant } from '../helpers/delivery.js';
import { onRealPostgres } from '../helpers/database.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { countingReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const EVENT = 'drift.detected';
const isDrift = (r: ReceivedRequest) => r.json?.event === EVENT;
const holding = () => countingReceiver({ holding: true, hold: isDrift });

async function publishAll(api: TestClient, count: number): Promise<void> {
  const answers = await Promise.all(Array.from({ length: count }, (_, n) => api.post('/api/v1/events', { event: EVENT, data: { n } })));
  for (const res of answers) expect(res.status, res.text).toBe(202);
}

const range = (count: number) => Array.from({ length: count }, (_, n) => n);
const sortedNs = (requests: ReceivedRequest[]) => requests.map((r) => r.json.data.n as number).sort((a, b) => a - b);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Every test registers what it starts here; receivers close first (dropping any request still
// held, so no gateway waits out its shutdown grace on them), then the gateways, the database last.
const receivers: Receiver[] = [];
const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
  const [owner, ...others] = gateways.splice(0);
  for (const gw of others.reverse()) await gw.stop();
  await owner?.close();
});

const baseEnv = {
  WORKER_POLL_INTERVAL: '100ms',
  // Long enough that no held request times out during a test.
  WEBHOOK_TIMEOUT: '20s',
  SHUTDOWN_TIMEOUT: '2s',
};

describe('per-webhook in-flight cap and isolation between endpoints', () => {
  it(
    'a webhook never has more than WORKER_MAX_IN_FLIGHT_PER_WEBHOOK attempts open, and a hanging endpoint does not hold up a healthy one',
    async () => {
      const cap = 3;
      const gw = await startTestGateway({ ...baseEnv, WORKER_CONCURRENCY: '16', WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: String(cap) });
      gateways.push(gw);
      const hanging = await holding();
      const healthy = await countingReceiver({ holding: false, hold: isDrift });
      receivers.push(hanging.receiver, healthy.receiver);

      const api = client(gw.url, await userToken(uniqueTenant('fair')));
      const h = await createWebhook(api, { name: 'hanging', url: `${hanging.receiver.url}/hang`, events: [EVENT] });
      const ok = await createWebhook(api, { name: 'healthy', url: `${healthy.receiver.url}/ok`, events: [EVENT] });
      // The creation pings go through the same queue; they are answered at once.
      await hanging.receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });
      await healthy.receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

      const total = 20;
      await publishAll(api, total);

      // Every delivery reaches the healthy endpoint while the hanging one still holds its requests.
      const atOk = await healthy.receiver.waitFor(total, { match: isDrift, timeoutMs: 15_000 });
      expect(atOk.every((r) => r.json.webhook_id === ok.id)).toBe(true);
      expect(sortedNs(atOk)).toEqual(range(total));
      await expect.poll(() => hanging.held().length).toBeGreaterThanOrEqual(cap);

      // The hanging webhook has exactly `cap` attempts open, and it stays so: with 16 slots free
      // and 17 of its deliveries due, nothing else is sent to it.
      await expectUnchangedFor(500, () => ({ open: hanging.open(), held: hanging.held().length, sent: hanging.receiver.requests.filter(isDrift).length }), {
        open: cap,
        held: cap,
        sent: cap,
      });
      expect(hanging.maxOpen()).toBe(cap);
      expect(gw.gateway.scheduler?.inFlight).toBe(cap);
      expect(healthy.receiver.requests.filter(isDrift)).toHaveLength(total);

      // Released: the rest reaches it, each delivery once, still never more than `cap` at a time.
      hanging.release();
      const atH = await hanging.receiver.waitFor(total, { match: isDrift, timeoutMs: 15_000 });
      expect(atH.every((r) => r.json.webhook_id === h.id)).toBe(true);
      expect(sortedNs(atH)).toEqual(range(total));
      expect(new Set(atH.map((r) => r.json.delivery_id)).size).toBe(total);
      await expect.poll(() => gw.gateway.scheduler?.inFlight, { timeout: 5_000 }).toBe(0);
      expect(hanging.receiver.requests.filter(isDrift)).toHaveLength(total);
      expect(hanging.maxOpen()).toBe(cap);
      expect(healthy.maxOpen()).toBeLessThanOrEqual(cap);
      expect(healthy.receiver.requests.filter(isDrift)).toHaveLength(total);
    },
    60_000,
  );
});

describe.skipIf(!onRealPostgres)('the per-webhook cap across gateway instances (needs a real Postgres: set DATABASE_URL)', () => {
  it(
    'the cap is counted across instances',
    async () => {
      const cap = 2;
      const env = { ...baseEnv, WORKER_CONCURRENCY: '16', WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: String(cap) };
      const first = await startTestGateway(env);
      gateways.push(first);
      const second = await startTestGateway(env, first.database);
      gateways.push(second);
      const api = client(first.url, await userToken(uniqueTenant('fair-shared')));
      const inFlight = () => (first.gateway.scheduler?.inFlight ?? 0) + (second.gateway.scheduler?.inFlight ?? 0);
      // Claims racing each other is what could break the cap, and a race does not happen every
      // time: several rounds, each on a fresh webhook, give it many chances.
      for (let round = 1; round <= 5; round += 1) {
        const hanging = await holding();
        receivers.push(hanging.receiver);
        const h = await createWebhook(api, { name: `hanging ${round}`, url: `${hanging.receiver.url}/hang`, events: [EVENT] });
        await hanging.receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

        const total = 10;
        await publishAll(api, total);
        await expect.poll(() => hanging.open(), { timeout: 10_000 }).toBeGreaterThanOrEqual(cap);
        // Both workers are woken by every publish and poll every 100 ms: a second of that is many
        // claims each, and none of them may add an attempt while `cap` are open.
        await sleep(1_000);
        expect(hanging.maxOpen(), `round ${round}: most requests open at once, over both instances`).toBe(cap);
        expect(hanging.open()).toBe(cap);
        expect(hanging.receiver.requests.filter(isDrift)).toHaveLength(cap);
        expect(inFlight()).toBe(cap);
        // Leased: the `cap` requests open, and at most one spare row behind each of them (spares
        // are only given to a worker that holds every lease of the webhook, and are not sent
        // while the requests they follow stay open).
        const leased = await leasedCount(first.database.url!, h.id);
        expect(leased).toBeGreaterThanOrEqual(cap);
        expect(leased).toBeLessThanOrEqual(2 * cap);

        hanging.release();
        const atH = await hanging.receiver.waitFor(total, { match: isDrift, timeoutMs: 15_000 });
        expect(sortedNs(atH)).toEqual(range(total));
        expect(new Set(atH.map((r) => r.json.delivery_id)).size).toBe(total);
        await expect.poll(inFlight, { timeout: 5_000 }).toBe(0);
        expect(hanging.receiver.requests.filter(isDrift)).toHaveLength(total);
        expect(hanging.maxOpen()).toBe(cap);
      }
    },
    120_000,
  );
});

async function leasedCount(url: string, webhookId: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ n: string }>(
      `select count(*) as n from delivery where webhook_id = $1 and lease_expires_at > now()`,
      [webhookId],
    );
    return Number(rows[0]!.n);
  } finally {
    await c.end();
  }
}
