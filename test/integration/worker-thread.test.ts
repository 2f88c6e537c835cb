// The worker on a thread of its own (ROLE=all on a real Postgres, WORKER_THREAD on by default):
// deliveries, their log lines and their metrics come through the process as before, the count of
// attempts in flight is the thread's, and a thread that exits is replaced. WORKER_THREAD=false and
// the embedded database keep the worker on the main thread.
import { afterEach, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { onRealPostgres } from '../helpers/database.js';
import { createWebhook, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { parsePrometheus, valueOf } from '../helpers/prometheus.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';
import type { WorkerThread } from '../../src/worker/worker-thread.js';

const EVENT = 'alert.created';

const receivers: Receiver[] = [];
const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
  for (const gw of gateways.splice(0)) await gw.close();
});

async function setup(extraEnv: Record<string, string> = {}) {
  const gw = await startTestGateway({ WORKER_POLL_INTERVAL: '100ms', WORKER_THREAD: 'true', ...extraEnv });
  gateways.push(gw);
  const receiver = await startReceiver();
  receivers.push(receiver);
  const api = client(gw.url, await userToken(uniqueTenant('thread')));
  const hook = await createWebhook(api, { url: `${receiver.url}/thread`, events: [EVENT] });
  return { gw, receiver, api, hook };
}

async function deliverOne(api: TestClient, receiver: Receiver, webhookId: string, n: number): Promise<ReceivedRequest> {
  expect((await api.post('/api/v1/events', { event: EVENT, data: { n } })).status).toBe(202);
  const [request] = await receiver.waitFor(1, { match: (r) => r.json?.event === EVENT && r.json?.data?.n === n && r.json?.webhook_id === webhookId });
  return request!;
}

const attemptsMetric = async (gw: TestGateway) => {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return valueOf(parsePrometheus(text), 'gateway_delivery_attempts_total', { outcome: 'success', error_class: 'none' }) ?? 0;
};

describe.skipIf(!onRealPostgres)('the worker on a thread of its own (needs a real Postgres: set DATABASE_URL)', () => {
  it('delivers, and its log lines and delivery metrics reach the process', async () => {
    const { gw, receiver, api, hook } = await setup();
    const thread = (gw.gateway.scheduler as WorkerThread).thread;
    expect(thread?.threadId).toBeGreaterThan(0);
    const request = await deliverOne(api, receiver, hook.id, 1);
    await expect
      .poll(() => gw.logs.some((line) => line.includes('"delivery attempt"') && line.includes(request.json.delivery_id)))
      .toBe(true);
    // Two attempts: the creation ping (sent by the thread too) and the event.
    await expect.poll(() => attemptsMetric(gw)).toBe(2);
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(2);
    expect(gw.gateway.scheduler?.inFlight).toBe(0);
  });

  it('a worker thread that exits is replaced, and the new one delivers', async () => {
    const { gw, receiver, api, hook } = await setup();
    const handle = gw.gateway.scheduler as WorkerThread;
    const first = handle.thread!;
    await deliverOne(api, receiver, hook.id, 1);
    await first.terminate();
    await expect.poll(() => gw.logs.some((line) => line.includes('worker thread exited; starting another'))).toBe(true);
    // Starting a thread compiles and loads the worker's modules: seconds on a busy machine.
    await expect.poll(() => handle.thread !== undefined && handle.thread !== first, { timeout: 60_000 }).toBe(true);
    await deliverOne(api, receiver, hook.id, 2);
    // The metrics of the thread that exited went with it; the new one's are there.
    await expect.poll(() => attemptsMetric(gw)).toBeGreaterThanOrEqual(1);
  });

  it('with WORKER_THREAD=false the worker runs on the main thread', async () => {
    const { gw, receiver, api, hook } = await setup({ WORKER_THREAD: 'false' });
    expect('thread' in gw.gateway.scheduler!).toBe(false);
    await deliverOne(api, receiver, hook.id, 1);
    await expect.poll(() => attemptsMetric(gw)).toBe(2);
  });
});

describe.skipIf(onRealPostgres)('the embedded database (one connection, on the main thread)', () => {
  it('keeps the worker on the main thread', async () => {
    const { gw, receiver, api, hook } = await setup();
    expect('thread' in gw.gateway.scheduler!).toBe(false);
    await deliverOne(api, receiver, hook.id, 1);
  });
});
