import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';

const FIELDS = 'id name url events enabled createdAt updatedAt lastDeliveryStatus lastDeliveryAt';
const CREATE = `mutation ($input: CreateWebhookInput!) { createWebhook(input: $input) { secret webhook { ${FIELDS} } } }`;
const UPDATE = `mutation ($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) { ${FIELDS} } }`;
const GET = `query ($id: ID!) { webhook(id: $id) { ${FIELDS} } }`;
const LIST = `{ webhooks { ${FIELDS} } }`;

const input = (overrides: Record<string, unknown> = {}) => ({
  name: 'GraphQL receiver',
  url: 'https://receiver.example.com/graphql-hook',
  events: ['drift.detected', 'ping', 'drift.detected'],
  ...overrides,
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('webhooks over GraphQL', () => {
  let gw: TestGateway;
  let gql: TestClient;

  beforeAll(async () => {
    gw = await startTestGateway();
    gql = client(gw.url, await userToken('tenant-graphql'));
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('createWebhook returns the webhook in camelCase and its secret', async () => {
    const res = await gql.graphql(CREATE, { input: input() });
    expect(res.status).toBe(200);
    expect(res.body.errors).toBeUndefined();
    const { secret, webhook } = res.body.data.createWebhook;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(webhook).toEqual({
      id: expect.stringMatching(/^wh_/),
      name: 'GraphQL receiver',
      url: 'https://receiver.example.com/graphql-hook',
      events: ['drift.detected', 'ping'],
      enabled: true,
      createdAt: expect.any(String),
      updatedAt: webhook.createdAt,
      lastDeliveryStatus: null,
      lastDeliveryAt: null,
    });
  });

  it('createWebhook keeps a caller-supplied secret', async () => {
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const res = await gql.graphql(CREATE, { input: input({ secret, enabled: false }) });
    expect(res.body.data.createWebhook.secret).toBe(secret);
    expect(res.body.data.createWebhook.webhook.enabled).toBe(false);
  });

  it('the Webhook type has no secret field', async () => {
    const res = await gql.graphql(`{ webhooks { id secret } }`);
    expect(res.body.errors?.[0]?.message).toMatch(/Cannot query field "secret" on type "Webhook"/);
    expect(res.body.errors?.[0]?.extensions?.['code']).toBe('BAD_REQUEST');
    expect(res.body.data).toBeUndefined();
    const one = await gql.graphql(`query ($id: ID!) { webhook(id: $id) { secret } }`, { id: 'wh_AAAAAAAAAAAAAAAAAAAA' });
    expect(one.body.errors?.[0]?.message).toMatch(/Cannot query field "secret"/);
  });

  it('webhook(id) and webhooks answer what REST answers, newest first', async () => {
    const tenant = client(gw.url, await userToken('tenant-graphql-list'));
    const ids: string[] = [];
    for (const name of ['one', 'two', 'three']) {
      const res = await tenant.graphql(CREATE, { input: input({ name }) });
      ids.push(res.body.data.createWebhook.webhook.id);
    }
    const list = await tenant.graphql(LIST);
    expect(list.body.data.webhooks.map((w: { id: string }) => w.id)).toEqual([...ids].reverse());

    const rest = await tenant.get('/api/v1/webhooks');
    expect(
      list.body.data.webhooks.map((w: Record<string, unknown>) => ({
        id: w['id'],
        name: w['name'],
        url: w['url'],
        events: w['events'],
        enabled: w['enabled'],
        created_at: w['createdAt'],
        updated_at: w['updatedAt'],
      })),
    ).toEqual(
      rest.body.map((w: Record<string, unknown>) => ({
        id: w['id'],
        name: w['name'],
        url: w['url'],
        events: w['events'],
        enabled: w['enabled'],
        created_at: w['created_at'],
        updated_at: w['updated_at'],
      })),
    );

    const one = await tenant.graphql(GET, { id: ids[1] });
    expect(one.body.data.webhook.name).toBe('two');
    const withoutOutcome = (w: Record<string, unknown>) => ({ ...w, lastDeliveryStatus: null, lastDeliveryAt: null });
    expect(withoutOutcome(one.body.data.webhook)).toEqual(withoutOutcome(list.body.data.webhooks[1]));
  });

  it('webhookEventTypes lists the twelve event types', async () => {
    const res = await gql.graphql(`{ webhookEventTypes { event description } }`);
    const types = res.body.data.webhookEventTypes as { event: string; description: string }[];
    expect(types.map((t) => t.event).sort()).toEqual(
      [
        'alert.created',
        'compliance.violation',
        'cost.anomaly',
        'drift.detected',
        'drift.resolved',
        'job.completed',
        'ping',
        'remediation.completed',
        'vulnerability.found',
        'webhook.disabled',
        'webhook.failing',
        'webhook.recovered',
      ],
    );
    for (const t of types) expect(t.description.length).toBeGreaterThan(0);
    const rest = await gql.get('/api/v1/webhooks/events');
    expect(rest.body.events).toEqual(types);
  });

  it('updateWebhook is partial and moves updatedAt only', async () => {
    const created = (await gql.graphql(CREATE, { input: input() })).body.data.createWebhook.webhook;
    await sleep(20);
    const res = await gql.graphql(UPDATE, { id: created.id, input: { enabled: false, events: ['cost.anomaly', 'cost.anomaly'] } });
    expect(res.body.errors).toBeUndefined();
    const updated = res.body.data.updateWebhook;
    expect(updated).toMatchObject({
      id: created.id,
      name: created.name,
      url: created.url,
      events: ['cost.anomaly'],
      enabled: false,
      createdAt: created.createdAt,
    });
    expect(Date.parse(updated.updatedAt)).toBeGreaterThan(Date.parse(created.updatedAt));
    const rest = await gql.get(`/api/v1/webhooks/${created.id}`);
    expect(rest.body).toMatchObject({ enabled: false, events: ['cost.anomaly'], updated_at: updated.updatedAt });
  });

  it('deleteWebhook returns true, then the webhook is NOT_FOUND', async () => {
    const created = (await gql.graphql(CREATE, { input: input() })).body.data.createWebhook.webhook;
    const res = await gql.graphql(`mutation ($id: ID!) { deleteWebhook(id: $id) }`, { id: created.id });
    expect(res.body).toEqual({ data: { deleteWebhook: true } });
    const after = await gql.graphql(GET, { id: created.id });
    expect(after.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect((await gql.get(`/api/v1/webhooks/${created.id}`)).status).toBe(404);
    const again = await gql.graphql(`mutation ($id: ID!) { deleteWebhook(id: $id) }`, { id: created.id });
    expect(again.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
  });

  it('errors carry a message and a code, and nothing internal', async () => {
    const res = await gql.graphql(CREATE, { input: input({ url: 'ftp://example.com' }) });
    const error = res.body.errors?.[0];
    expect(error?.extensions).toEqual({ code: 'VALIDATION_ERROR', details: { field: 'url' } });
    expect(res.text).not.toMatch(/stack|at [A-Za-z]+ \(|node_modules|select |insert /i);
  });

  it('a syntax error in the query is BAD_REQUEST', async () => {
    const res = await gql.graphql(`{ webhooks { id `);
    expect(res.body.errors?.[0]?.extensions?.['code']).toBe('BAD_REQUEST');
  });
});
