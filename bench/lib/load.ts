// Load generators: publishing events through the gateway's REST API, creating webhooks, and the
// bare got POST loop that is the limit the delivery pipeline is measured against.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { got } from 'got';
import { expectStatus, requestJson } from './http-client.js';

/** Milliseconds on the wall clock, fractional; the receiver process uses the same clock. */
export const now = () => performance.timeOrigin + performance.now();

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `count` tasks with at most `concurrency` at a time, in order of index. */
export async function runPool(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

export async function createWebhooks(gatewayUrl: string, token: string, urls: string[], event = 'drift.detected'): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, url] of urls.entries()) {
    const body = await expectStatus(
      requestJson(`${gatewayUrl}/api/v1/webhooks`, { method: 'POST', token, body: { name: `bench ${i}`, url, events: [event] } }),
      201,
      'create webhook',
    );
    ids.push(body.id as string);
  }
  return ids;
}

export async function deleteWebhooks(gatewayUrl: string, token: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    await expectStatus(requestJson(`${gatewayUrl}/api/v1/webhooks/${id}`, { method: 'DELETE', token }), 204, 'delete webhook');
  }
}

export interface PublishTiming {
  startedAt: number;
  finishedAt: number;
}

/**
 * Publishes `count` drift.detected events for `tenant`, `concurrency` at a time, each stamped with
 * its run tag and the time just before its POST (`sentAt`), which the receiver subtracts.
 */
export async function publishEvents(options: {
  gatewayUrl: string;
  token: string;
  tenant: string;
  run: string;
  count: number;
  concurrency: number;
}): Promise<PublishTiming> {
  const startedAt = now();
  await runPool(options.count, options.concurrency, async (seq) => {
    const body = { event: 'drift.detected', tenant_id: options.tenant, data: { run: options.run, seq, sentAt: now() } };
    await expectStatus(
      requestJson(`${options.gatewayUrl}/api/v1/events`, { method: 'POST', token: options.token, body }),
      202,
      'publish event',
    );
  });
  return { startedAt, finishedAt: now() };
}

/**
 * The limit: the same number of POSTs, with a body of the same shape and the same set of headers
 * a delivery carries, sent by got over keep-alive at the worker's concurrency, nothing else.
 */
export async function bareGotLoop(options: { url: string; run: string; total: number; concurrency: number }): Promise<PublishTiming> {
  const agent = { http: new http.Agent({ keepAlive: true, maxSockets: 256 }) };
  const startedAt = now();
  try {
    await runPool(options.total, options.concurrency, async (seq) => {
      const id = `del_${String(seq).padStart(24, '0')}`;
      const body = JSON.stringify({
        event: 'drift.detected',
        timestamp: new Date().toISOString(),
        webhook_id: 'wh_000000000000000000000000',
        delivery_id: id,
        data: { run: options.run, seq, sentAt: now() },
      });
      const res = await got.post(options.url, {
        body,
        agent,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'InfraAudit-Webhooks/bench',
          'x-infraaudit-signature': `sha256=${'0'.repeat(64)}`,
          'x-infraaudit-event': 'drift.detected',
          'x-infraaudit-delivery': id,
          'x-infraaudit-attempt': '1',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
          'webhook-signature': `v1,${'A'.repeat(43)}=`,
        },
        timeout: { request: 10_000 },
        followRedirect: false,
        retry: { limit: 0 },
        throwHttpErrors: false,
        responseType: 'buffer',
      });
      if (res.statusCode !== 200) throw new Error(`bare POST answered ${res.statusCode}`);
    });
  } finally {
    agent.http.destroy();
  }
  return { startedAt, finishedAt: now() };
}
