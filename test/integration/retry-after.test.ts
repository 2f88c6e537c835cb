import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const STEP_MS = 100;
const MAX_MS = 3_000;

/** What the receiver answers at /<code>?retry-after=<value>: that code, with that header. */
const at = (code: number, retryAfter?: string) =>
  `/${code}${retryAfter === undefined ? '' : `?retry-after=${encodeURIComponent(retryAfter)}`}`;

/** At /<code>?date-in=<ms>: that code, with an HTTP-date (IMF-fixdate) that far from the answer, rounded up to a whole second. */
const dateIn = (code: number, ms: number) => `/${code}?date-in=${ms}`;
const httpDate = (ms: number) => new Date(Math.ceil((Date.now() + ms) / 1000) * 1000).toUTCString();

describe('Retry-After on 429 and 503', () => {
  let gw: TestGateway;
  let receiver: Receiver;

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_RETRY_SCHEDULE: `${STEP_MS}ms`,
      WEBHOOK_RETRY_AFTER_MAX: `${MAX_MS}ms`,
      WORKER_POLL_INTERVAL: '50ms',
      WEBHOOK_TIMEOUT: '10s',
    });
    receiver = await startReceiver((req, _n, res) => {
      if (req.json?.event === 'ping') {
        res.writeHead(200);
        res.end();
        return;
      }
      const url = new URL(req.path, 'http://receiver');
      const dateInMs = url.searchParams.get('date-in');
      const retryAfter = dateInMs === null ? url.searchParams.get('retry-after') : httpDate(Number(dateInMs));
      res.writeHead(Number(url.pathname.slice(1)), retryAfter === null ? {} : { 'retry-after': retryAfter });
      res.end('busy');
    });
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  /** A webhook answering at `path`, one event published to it, and its first attempt's history entry. */
  async function firstAttempt(path: string): Promise<{ api: TestClient; hookId: string; entry: any }> {
    const api = client(gw.url, await userToken(uniqueTenant('retry-after')));
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected'] });
    const published = await api.post('/api/v1/events', { event: 'drift.detected', data: {} });
    expect(published.status, published.text).toBe(202);
    let entry: any;
    await expect
      .poll(async () => {
        entry = (await historyOf(api, hook.id)).find((a) => a.event_type === 'drift.detected' && a.attempt === 1);
        return entry !== undefined;
      })
      .toBe(true);
    return { api, hookId: hook.id, entry };
  }

  /** The wait the history entry shows: from the attempt to the next_retry_at chosen. */
  const waitOf = (entry: any) => Date.parse(entry.next_retry_at) - Date.parse(entry.created_at);

  it('delay-seconds longer than the step is the wait, and the retry comes no earlier', async () => {
    const { entry } = await firstAttempt(at(503, '1'));
    expect(entry).toMatchObject({ status: 'failed', response_code: 503 });
    expect(entry.response_headers['retry-after']).toBe('1');
    expect(waitOf(entry)).toBe(1_000);

    const [, retry] = await receiver.waitFor(2, { match: (r: ReceivedRequest) => r.json?.delivery_id === entry.delivery_id });
    expect(retry!.at).toBeGreaterThanOrEqual(Date.parse(entry.next_retry_at));
  });

  it('delay-seconds beyond WEBHOOK_RETRY_AFTER_MAX wait the maximum', async () => {
    const { entry } = await firstAttempt(at(429, '3600'));
    expect(entry.response_code).toBe(429);
    expect(waitOf(entry)).toBe(MAX_MS);
  });

  it('an HTTP-date is honoured: the retry is due at that time, not before', async () => {
    const { entry } = await firstAttempt(dateIn(429, 1_000));
    const date = entry.response_headers['retry-after'] as string;
    expect(date).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    const due = Date.parse(entry.next_retry_at);
    expect(due).toBeGreaterThanOrEqual(Date.parse(date));
    // Counted from when the answer arrived, so only the time to record the attempt comes on top.
    expect(due - Date.parse(date)).toBeLessThan(1_000);
    expect(waitOf(entry)).toBeGreaterThan(STEP_MS);
    expect(waitOf(entry)).toBeLessThanOrEqual(MAX_MS);
  });

  it('an HTTP-date beyond WEBHOOK_RETRY_AFTER_MAX waits the maximum', async () => {
    const { entry } = await firstAttempt(dateIn(503, 60 * 60_000));
    expect(waitOf(entry)).toBe(MAX_MS);
  });

  it('never shortens the schedule: zero, a past date, and a Retry-After on other codes leave the step', async () => {
    const cases = await Promise.all([
      firstAttempt(at(503, '0')),
      firstAttempt(dateIn(429, -60_000)),
      firstAttempt(at(500, '1')),
      firstAttempt(at(502, '1')),
      firstAttempt(at(503)),
    ]);
    for (const { entry } of cases) expect(waitOf(entry), entry.response_headers['retry-after']).toBe(STEP_MS);
  });

  it('ignores a Retry-After it cannot read', async () => {
    const garbage = ['soon', '-5', '1.5', '1e3', 'soon 1', '2026-12-04T12:00:00Z', 'Fri, 04 Dec 2026 12:00:00 CET'];
    const cases = await Promise.all(garbage.map((value) => firstAttempt(at(503, value))));
    for (const [i, { entry }] of cases.entries()) {
      expect(entry.response_headers['retry-after']).toBe(garbage[i]);
      expect(waitOf(entry), garbage[i]).toBe(STEP_MS);
    }
  });

  it('adds no attempt: after the last step the delivery fails whatever the header asks', async () => {
    const { api, hookId, entry } = await firstAttempt(at(503, '1'));
    let last: any;
    await expect
      .poll(async () => {
        last = (await historyOf(api, hookId)).find((a) => a.delivery_id === entry.delivery_id && a.attempt === 2);
        return last !== undefined;
      })
      .toBe(true);
    expect(last).toMatchObject({ status: 'failed', response_code: 503, next_retry_at: null });
  });
});
