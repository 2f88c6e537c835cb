// Small building blocks for the delivery suites: webhooks through the REST API, the GraphQL view
// of a delivery, a free loopback port, and a bounded "nothing more happens" observation.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import type { TestClient } from './http.js';

/** A tenant name no other test uses, so fan-out in one gateway never crosses tests. */
export function uniqueTenant(prefix = 'tenant'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** A webhook signing secret in the documented format: whsec_ + base64 of 24 random bytes. */
export function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export interface CreatedWebhook {
  id: string;
  secret: string;
  body: Record<string, unknown>;
}

export async function createWebhook(
  api: TestClient,
  input: { url: string; events: string[]; name?: string; enabled?: boolean; secret?: string },
): Promise<CreatedWebhook> {
  const res = await api.post('/api/v1/webhooks', { name: input.name ?? 'receiver', ...input });
  expect(res.status, res.text).toBe(201);
  return { id: res.body.id as string, secret: res.body.secret as string, body: res.body };
}

/** A loopback port with nothing listening on it: bound once, then released. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface DeliveryView {
  id: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  attempts: { id: string; attempt: number; status: string; responseCode: number | null; errorClass: string | null; nextRetryAt: string | null }[];
}

export async function deliveryById(api: TestClient, id: string): Promise<DeliveryView | null> {
  const res = await api.graphql<{ delivery: DeliveryView }>(
    `query($id: ID!) { delivery(id: $id) { id status attemptCount nextAttemptAt
      attempts { id attempt status responseCode errorClass nextRetryAt } } }`,
    { id },
  );
  return res.body.data?.delivery ?? null;
}

/** Every attempt in the REST history of a webhook (at most the 100 the API keeps in reach). */
export async function historyOf(api: TestClient, webhookId: string, query = ''): Promise<any[]> {
  const res = await api.get(`/api/v1/webhooks/${webhookId}/deliveries?per_page=100${query}`);
  expect(res.status, res.text).toBe(200);
  return res.body.data as any[];
}

/**
 * Checks `read` keeps returning `expected` for `windowMs` (sampled every 25 ms): the bounded way
 * to show that something does NOT happen, such as a retry after a webhook was deleted.
 */
export async function expectUnchangedFor<T>(windowMs: number, read: () => T | Promise<T>, expected: T): Promise<void> {
  const until = Date.now() + windowMs;
  for (;;) {
    expect(await read()).toEqual(expected);
    if (Date.now() >= until) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
