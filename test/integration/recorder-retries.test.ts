// The recorder tries a record again only after an error a retry can fix, a few times, and logs a
// record it gives up on once. The errors come from the database itself: a trigger on
// delivery_attempt fails the insert with a chosen SQLSTATE for the first N tries.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { createAttemptRecorder } from '../../src/worker/recorder.js';
import type { AttemptRecord } from '../../src/worker/queue.js';
import { newId } from '../../src/ids.js';
import { userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';

describe('the recorder’s retries', () => {
  let gw: TestGateway;
  let api: TestClient;
  let webhookId: string;

  beforeAll(async () => {
    // No worker: the deliveries stay pending for the recorder under test.
    gw = await startTestGateway({ ROLE: 'api' });
    api = client(gw.url, await userToken(uniqueTenant('recorder-retries')));
    webhookId = (await createWebhook(api, { url: 'http://127.0.0.1:9/unused', events: ['drift.detected'] })).id;
  });
  afterAll(async () => {
    await gw?.close();
  });

  const knex = () => gw.gateway.db.orm.em.fork().getConnection().getKnex();

  /** Fails inserts into delivery_attempt with `state` for the next `times` tries. */
  async function failInserts(state: string, times: number): Promise<void> {
    await knex().raw(`create sequence if not exists recorder_test_tries`);
    await knex().raw(`select setval('recorder_test_tries', 1, false)`);
    await knex().raw(`create or replace function recorder_test_fail() returns trigger language plpgsql as $$
      begin
        if nextval('recorder_test_tries') <= ${times} then
          raise exception 'injected failure' using errcode = '${state}';
        end if;
        return new;
      end $$`);
    await knex().raw(`drop trigger if exists recorder_test_fail on delivery_attempt`);
    await knex().raw(`create trigger recorder_test_fail before insert on delivery_attempt for each row execute function recorder_test_fail()`);
  }

  async function pendingDelivery(): Promise<AttemptRecord['delivery']> {
    const res = await api.post('/api/v1/events', { event: 'drift.detected', data: {} });
    expect(res.status, res.text).toBe(202);
    const rows = await knex().raw<{ rows: { id: string; webhook_id: string; tenant_id: string; attempts: number; type: string }[] }>(
      `select id, webhook_id, tenant_id, attempts, event_type as type from delivery where event_id = ?`,
      [res.body.id],
    );
    const row = rows.rows[0]!;
    expect(row.webhook_id).toBe(webhookId);
    return { id: row.id, webhookId: row.webhook_id, tenantId: row.tenant_id, eventType: row.type, attempts: row.attempts };
  }

  function recorderWithLog() {
    const lines: string[] = [];
    const logger = createLogger('info', new Writable({ write: (chunk, _e, done) => (lines.push(String(chunk)), done()) }));
    const recorder = createAttemptRecorder(gw.gateway.db.orm, logger);
    const gaveUp = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'recording a delivery attempt failed');
    return { recorder, gaveUp };
  }

  const record = (delivery: AttemptRecord['delivery']): AttemptRecord => ({
    attemptId: newId('att'),
    delivery,
    retryInMs: 60_000,
    result: {
      ok: true,
      responseCode: 200,
      durationMs: 5,
      requestHeaders: {},
      requestBody: '{}',
      responseHeaders: {},
      responseBody: 'ok',
      responseBodyTruncated: false,
      error: null,
      errorClass: null,
    },
  });

  it('a serialization failure is tried again, and the record lands', async () => {
    const delivery = await pendingDelivery();
    await failInserts('40001', 2);
    const { recorder, gaveUp } = recorderWithLog();
    const recorded = await recorder.record(record(delivery));
    expect(recorded).toMatchObject({ deliveryStatus: 'success' });
    expect(gaveUp()).toEqual([]);
    // Two failed tries, then the one that landed.
    expect(Number((await knex().raw<{ rows: { last_value: string }[] }>(`select last_value from recorder_test_tries`)).rows[0]!.last_value)).toBe(3);
  });

  it('an error a retry cannot fix fails the record at once, logged once', async () => {
    const delivery = await pendingDelivery();
    await failInserts('22012', 100);
    const { recorder, gaveUp } = recorderWithLog();
    await expect(recorder.record(record(delivery))).rejects.toMatchObject({ code: '22012' });
    expect(gaveUp()).toHaveLength(1);
    expect(gaveUp()[0]).toMatchObject({ deliveryId: delivery.id, tries: 1 });
  });

  it('a retryable error that lasts is given up after a few tries, logged once', async () => {
    const delivery = await pendingDelivery();
    await failInserts('40P01', 100);
    const { recorder, gaveUp } = recorderWithLog();
    await expect(recorder.record(record(delivery))).rejects.toMatchObject({ code: '40P01' });
    expect(gaveUp()).toHaveLength(1);
    expect(gaveUp()[0]).toMatchObject({ deliveryId: delivery.id, tries: 5 });
  }, 30_000);
});
