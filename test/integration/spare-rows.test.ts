// Spare rows end to end: a claim leases the worker one spare row per request it opens to a
// webhook, and the worker sends a spare the moment one of those requests ends, in its place. The
// spares never raise the number of requests open (fairness.test.ts counts those), and they are
// handed back, never sent, when their webhook is disabled or moved, and at shutdown.
import { afterEach, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, expectUnchangedFor, uniqueTenant, type CreatedWebhook } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { countingReceiver, startReceiver, type CountingReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const EVENT = 'drift.detected';
const CAP = 2;
const isDrift = (r: ReceivedRequest) => r.json?.event === EVENT;

// A request held by the test never times out, and the leases are far longer than any wait here:
// a row sent at once is leased for 20 s + 30 s, a spare for 20 s longer.
const env = {
  WORKER_POLL_INTERVAL: '100ms',
  WEBHOOK_TIMEOUT: '20s',
  WORKER_LEASE_MARGIN: '30s',
  SHUTDOWN_TIMEOUT: '1s',
  WORKER_CONCURRENCY: '16',
  WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: String(CAP),
  // The worker logs each hand-back of spares at debug level; the tests wait for that line.
  LOG_LEVEL: 'debug',
};

const receivers: Receiver[] = [];
const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
  for (const gw of gateways.splice(0)) await gw.close();
});

interface LeasedRow {
  id: string;
  /** Seconds of lease left. */
  left: number;
}

/** The webhook's rows that are leased now, read from the database. */
async function leased(gw: TestGateway, webhookId: string): Promise<LeasedRow[]> {
  const rows = await gw.gateway.db.orm.em
    .fork()
    .getConnection()
    .execute<{ id: string; left: number }[]>(
      `select id, extract(epoch from lease_expires_at - now())::float8 as left
       from delivery where webhook_id = ? and lease_expires_at > now() order by id`,
      [webhookId],
    );
  return rows.map((r) => ({ id: r.id, left: Number(r.left) }));
}

/** The spares among them: leased for the request timeout longer than a row sent at once. */
const sparesOf = (rows: LeasedRow[]) => rows.filter((r) => r.left > 55).map((r) => r.id);

interface Setup {
  gw: TestGateway;
  api: TestClient;
  hook: CreatedWebhook;
  receiver: CountingReceiver;
  /** The spare rows leased while the first CAP requests are held. */
  spares: string[];
}

/** A webhook with 6 events queued, its first CAP requests held open and CAP spares behind them. */
async function heldWithSpares(): Promise<Setup> {
  const gw = await startTestGateway(env);
  gateways.push(gw);
  const receiver = await countingReceiver({ holding: true, hold: isDrift });
  receivers.push(receiver.receiver);
  const api = client(gw.url, await userToken(uniqueTenant('spares')));
  const hook = await createWebhook(api, { url: `${receiver.receiver.url}/hook`, events: [EVENT] });
  await receiver.receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });
  for (let n = 0; n < 6; n += 1) expect((await api.post('/api/v1/events', { event: EVENT, data: { n } })).status).toBe(202);
  await expect.poll(() => receiver.held().length, { timeout: 10_000 }).toBe(CAP);
  await expect.poll(async () => sparesOf(await leased(gw, hook.id)).length, { timeout: 10_000 }).toBe(CAP);
  const rows = await leased(gw, hook.id);
  expect(rows).toHaveLength(2 * CAP);
  const spares = sparesOf(rows);
  // The held requests are the rows sent at once, not the spares.
  expect(receiver.held().map((r) => r.json.delivery_id).filter((id: string) => spares.includes(id))).toEqual([]);
  return { gw, api, hook, receiver, spares };
}

/**
 * Waits until the worker has dropped the spares of a webhook that changed. From then on it cannot
 * send them as they were claimed; once their leases are cleared they may be claimed again (as
 * spares too), with the webhook as it is now.
 */
async function handedBack(gw: TestGateway): Promise<void> {
  await expect
    .poll(() => gw.logs.some((line) => line.includes('spare deliveries handed back') && line.includes('webhook changed')), { timeout: 10_000 })
    .toBe(true);
}

describe('spare rows', () => {
  it('when a request ends, the next one sent in its place is a spare the claim leased beside it', async () => {
    const { receiver, spares } = await heldWithSpares();
    // Still CAP open, with spares waiting: nothing more is sent while no request ends.
    await expectUnchangedFor(300, () => receiver.receiver.requests.filter(isDrift).length, CAP);
    receiver.releaseOne();
    const [, , next] = await receiver.receiver.waitFor(CAP + 1, { match: isDrift });
    expect(spares).toContain(next!.json.delivery_id);
    expect(receiver.maxOpen()).toBe(CAP);
    receiver.release();
    const all = await receiver.receiver.waitFor(6, { match: isDrift });
    expect(new Set(all.map((r) => r.json.data.n))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    expect(receiver.maxOpen()).toBe(CAP);
  });

  it('the spares of a webhook that is disabled are handed back and never sent', async () => {
    const { gw, api, hook, receiver } = await heldWithSpares();
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
    await handedBack(gw);
    receiver.release();
    await expectUnchangedFor(500, () => receiver.receiver.requests.filter(isDrift).length, CAP);
    const pending = await gw.gateway.db.orm.em
      .fork()
      .getConnection()
      .execute<{ n: string }[]>(`select count(*) as n from delivery where webhook_id = ? and status = 'pending'`, [hook.id]);
    expect(Number(pending[0]!.n)).toBe(0);
  });

  it('the spares of a webhook that moves go to its new URL', async () => {
    const { gw, api, hook, receiver, spares } = await heldWithSpares();
    const moved = await startReceiver();
    receivers.push(moved);
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { url: `${moved.url}/moved` })).status).toBe(200);
    await handedBack(gw);
    receiver.release();
    const there = await moved.waitFor(4, { match: isDrift });
    expect(there.map((r) => r.json.delivery_id).filter((id: string) => spares.includes(id)).sort()).toEqual([...spares].sort());
    await expectUnchangedFor(300, () => receiver.receiver.requests.filter(isDrift).length, CAP);
  });

  it('at shutdown the spares are handed back at once, so a restart sends them without waiting for their leases', async () => {
    const { gw, receiver, spares } = await heldWithSpares();
    // The held requests are cut at the end of the grace; their leases are handed back with the
    // spares'. A lease left behind would hold its row for 50 s or more, past the wait below.
    await gw.stop();
    receiver.release();
    const restarted = await gw.restart();
    gateways[gateways.indexOf(gw)] = restarted;
    const all = await receiver.receiver.waitFor(6 + CAP, { match: isDrift, timeoutMs: 10_000 });
    expect(new Set(all.map((r) => r.json.data.n))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    expect(all.map((r) => r.json.delivery_id)).toEqual(expect.arrayContaining(spares));
  });
});
