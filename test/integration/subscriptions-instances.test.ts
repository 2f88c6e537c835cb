import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_DELIVERY_UPDATES } from '../../src/db/notifier.js';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { killAll, startTsx, type RunningProcess } from '../helpers/processes.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';
import { sseSubscribe, until, wsClient, wsSubscribe, type Feed, type UpdateMessage } from '../helpers/subscriptions.js';

const URL_LINE = /gateway on (http:\/\/\S+)/;

const story = (updates: UpdateMessage[]) =>
  updates.map((u) => [u.kind, u.delivery.status, u.attempt?.attempt ?? null, u.attempt?.status ?? null]);

describe.skipIf(!onRealPostgres)('live delivery updates across processes: ROLE=api and ROLE=worker on one Postgres (needs DATABASE_URL)', () => {
  let db: TestDatabase;
  let receiver: Receiver;
  let worker: RunningProcess;
  const apis: { process: RunningProcess; url: string }[] = [];
  const feeds: Feed[] = [];
  const wsClients: ReturnType<typeof wsClient>[] = [];

  const env = (role: string) => ({
    ...db.env,
    ROLE: role,
    PORT: '0',
    HOST: '127.0.0.1',
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    JWT_SECRET: TEST_JWT_SECRET,
    WEBHOOK_ALLOW_INSECURE_URLS: 'true',
    WEBHOOK_RETRY_SCHEDULE: '100ms,200ms',
    WORKER_POLL_INTERVAL: '50ms',
    RATE_LIMIT_PER_MINUTE: '0',
    LOG_LEVEL: 'info',
  });

  /** Pids of the connections LISTENing for delivery updates: one per api process. */
  const updateListeners = async (): Promise<number[]> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const r = await c.query<{ pid: number }>(
        `select pid from pg_stat_activity where datname = current_database() and query = $1 order by pid`,
        [`listen "${CHANNEL_DELIVERY_UPDATES}"`],
      );
      return r.rows.map((row) => row.pid);
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    receiver = await startReceiver();
    // The worker migrates the database first; the api processes then find nothing to apply.
    worker = startTsx('src/main.ts', [], env('worker'));
    await worker.waitForStdout(/"msg":"gateway started"/, 90_000);
    const started = [startTsx('src/main.ts', [], env('api')), startTsx('src/main.ts', [], env('api'))];
    for (const p of started) apis.push({ process: p, url: (await p.waitForStdout(URL_LINE, 90_000))[1]! });
  }, 180_000);
  afterAll(async () => {
    for (const f of feeds) f.close();
    for (const c of wsClients) await Promise.resolve(c.dispose()).catch(() => undefined);
    await killAll();
    await receiver?.close();
    await db?.drop();
  });

  it('attempts recorded by the worker reach subscribers on every api instance, and survive a dropped LISTEN', async () => {
    const [one, two] = apis as [(typeof apis)[number], (typeof apis)[number]];
    const tenant = uniqueTenant();
    const token = await userToken(tenant);
    const api = client(one.url, token);
    const webhook = await createWebhook(api, { url: `${receiver.url}/hook`, events: ['drift.detected'] });
    await receiver.waitFor(1);

    const onOne = sseSubscribe(one.url, token, { webhookId: webhook.id });
    const ws = wsClient(two.url, { authorization: `Bearer ${token}` });
    wsClients.push(ws);
    const onTwo = wsSubscribe(ws);
    feeds.push(onOne, onTwo);

    // Both instances are listening once a test ping made on instance one shows up on both.
    const seenOnBoth = (attemptId: string) => (f: Feed) => f.updates.some((u) => u.attempt?.id === attemptId);
    let ready = false;
    for (let probe = 0; probe < 10 && !ready; probe++) {
      const tested = await api.graphql<{ testWebhook: { id: string } }>('mutation($id: ID!) { testWebhook(id: $id) { id } }', { id: webhook.id });
      const attemptId = tested.body.data!.testWebhook.id;
      ready = await Promise.all([onOne, onTwo].map((f) => f.waitFor(seenOnBoth(attemptId), 1_500).then(() => true, () => false))).then(
        (r) => r.every(Boolean),
      );
    }
    expect(ready).toBe(true);
    expect(await updateListeners()).toHaveLength(2);

    let drifts = 0;
    receiver.respond((r, n, res) => answer(r.json?.event === 'drift.detected' && ++drifts <= 2 ? 500 : 200)(r, n, res));
    const published = await client(two.url, await serviceToken()).post('/api/v1/events', {
      event: 'drift.detected',
      data: { resource: 'i-1' },
      tenant_id: tenant,
    });
    expect(published.status, published.text).toBe(202);
    const drift = (u: UpdateMessage) => u.delivery.eventType === 'drift.detected';
    for (const feed of [onOne, onTwo]) {
      await feed.waitForUpdates((u) => drift(u) && u.delivery.status === 'success', 1);
      expect(story(feed.updates.filter(drift))).toEqual([
        ['created', 'pending', null, null],
        ['attempt', 'pending', 1, 'failed'],
        ['attempt', 'pending', 2, 'failed'],
        ['attempt', 'success', 3, 'success'],
      ]);
    }
    // Only the worker process sends published events: the api processes have no scheduler.
    const deliveryId = onOne.updates.find(drift)!.delivery.id;
    expect(worker.stdout()).toContain(deliveryId);
    for (const a of apis) expect(a.process.stdout()).not.toMatch(new RegExp(`"deliveryId":"${deliveryId}"[^\\n]*"msg":"delivery attempt"`));

    // Drop both LISTEN connections from the server side; each instance must listen again.
    const dropped = await updateListeners();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [dropped]);
    } finally {
      await admin.end();
    }
    await until(
      async () => {
        const now = await updateListeners();
        return now.length === 2 && now.every((pid) => !dropped.includes(pid));
      },
      15_000,
      'both instances to LISTEN again',
    );
    receiver.respond(answer(200));
    const again = await client(one.url, await serviceToken()).post('/api/v1/events', {
      event: 'drift.detected',
      data: { resource: 'i-2' },
      tenant_id: tenant,
    });
    expect(again.status).toBe(202);
    for (const feed of [onOne, onTwo]) {
      await feed.waitForUpdates((u) => drift(u) && u.delivery.eventId === again.body.id && u.kind === 'attempt', 1);
      const attemptIds = feed.updates.flatMap((u) => (u.attempt ? [u.attempt.id] : []));
      expect(new Set(attemptIds).size, 'no attempt is sent twice').toBe(attemptIds.length);
    }
  }, 120_000);
});

describe('live delivery updates after a lost notification connection', () => {
  let gw: TestGateway;
  /** Subscriptions open on this gateway, over every transport. */
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;
  let receiver: Receiver;
  beforeAll(async () => {
    gw = await startTestGateway({ WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('replays the attempts recorded meanwhile, once, and none from before the subscription', async () => {
    const tenant = uniqueTenant();
    const token = await userToken(tenant);
    const webhook = await createWebhook(client(gw.url, token), { url: `${receiver.url}/hook`, events: ['alert.created'] });
    await receiver.waitFor(1);
    const before = openSubscriptions();
    const feed = sseSubscribe(gw.url, token, { webhookId: webhook.id });
    await until(() => openSubscriptions() === before + 1, 5_000, 'the subscription');
    const published = await client(gw.url, await serviceToken()).post('/api/v1/events', { event: 'alert.created', data: {}, tenant_id: tenant });
    expect(published.status).toBe(202);
    const [sent] = await feed.waitForUpdates((u) => u.kind === 'attempt' && u.delivery.eventType === 'alert.created', 1);

    // Attempts whose announcements never arrived: one recorded just now, one long before the
    // subscriber existed.
    const em = gw.gateway.db.orm.em.fork();
    const missed = `att_${randomBytes(15).toString('base64url')}`;
    const ancient = `att_${randomBytes(15).toString('base64url')}`;
    for (const [id, age] of [[missed, '0 seconds'], [ancient, '1 hour']] as const) {
      await em.getConnection().execute(
        `insert into delivery_attempt (id, delivery_id, webhook_id, tenant_id, event_type, attempt, status, response_code,
           duration_ms, request_headers, request_body, created_at)
         values (?, ?, ?, ?, 'alert.created', 9, 'failed', 502, 1, '{}'::jsonb, '{}', now() - ?::interval)`,
        [id, sent!.delivery.id, webhook.id, tenant, age],
      );
    }
    // What the Postgres notifier tells its listeners after it has listened again.
    await gw.gateway.notifier.notify(CHANNEL_DELIVERY_UPDATES, '');
    await feed.waitForUpdates((u) => u.attempt?.id === missed, 1);
    // A second reconnect replays nothing new: the next update is the next attempt made.
    await gw.gateway.notifier.notify(CHANNEL_DELIVERY_UPDATES, '');
    const tested = await client(gw.url, token).graphql('mutation($id: ID!) { testWebhook(id: $id) { id } }', { id: webhook.id });
    const testId = tested.body.data.testWebhook.id as string;
    await feed.waitForUpdates((u) => u.attempt?.id === testId, 1);
    const attemptIds = feed.updates.flatMap((u) => (u.attempt ? [u.attempt.id] : []));
    expect(new Set(attemptIds).size).toBe(attemptIds.length);
    expect(attemptIds).not.toContain(ancient);
    const ofDelivery = feed.updates.filter((u) => u.delivery.id === sent!.delivery.id && u.attempt).map((u) => u.attempt!.id);
    expect(ofDelivery).toEqual([sent!.attempt!.id, missed]);
    expect(attemptIds.at(-1)).toBe(testId);
    feed.close();
  });
});
