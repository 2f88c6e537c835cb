import { execute, GraphQLError, parse, subscribe } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { schema } from '../../src/graphql/schema.js';
import { serviceToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';

// One operation per root field, with arguments the field's service would refuse (malformed ids,
// invalid inputs): a caller refused for who it is hears that, and never about its arguments.
const ROOT_FIELDS: Record<string, { operation: string; needs: 'viewer' | 'tenant' }> = {
  webhooks: { operation: '{ webhooks { id } }', needs: 'tenant' },
  webhook: { operation: '{ webhook(id: "not-an-id") { id } }', needs: 'tenant' },
  webhookEventTypes: { operation: '{ webhookEventTypes { event } }', needs: 'viewer' },
  deliveryAttempts: {
    operation: '{ deliveryAttempts(webhookId: "not-an-id", perPage: 1000) { pagination { total } } }',
    needs: 'tenant',
  },
  delivery: { operation: '{ delivery(id: "not-an-id") { id } }', needs: 'tenant' },
  apiKeys: { operation: '{ apiKeys { id } }', needs: 'tenant' },
  createWebhook: {
    operation: 'mutation { createWebhook(input: { name: "", url: "ftp://x", events: ["no.such.event"] }) { secret } }',
    needs: 'tenant',
  },
  updateWebhook: { operation: 'mutation { updateWebhook(id: "not-an-id", input: { url: "ftp://x" }) { id } }', needs: 'tenant' },
  deleteWebhook: { operation: 'mutation { deleteWebhook(id: "not-an-id") }', needs: 'tenant' },
  rotateWebhookSecret: { operation: 'mutation { rotateWebhookSecret(id: "not-an-id") { secret } }', needs: 'tenant' },
  testWebhook: { operation: 'mutation { testWebhook(id: "not-an-id") { id } }', needs: 'tenant' },
  resendDelivery: { operation: 'mutation { resendDelivery(webhookId: "not-an-id", deliveryId: "not-an-id") { id } }', needs: 'tenant' },
  recoverWebhook: {
    operation: 'mutation { recoverWebhook(webhookId: "not-an-id", input: { since: "2024-01-01T00:00:00Z" }) { id } }',
    needs: 'tenant',
  },
  recovery: { operation: '{ recovery(webhookId: "not-an-id", id: "not-an-id") { id } }', needs: 'tenant' },
  publishEvent: { operation: 'mutation { publishEvent(input: { event: "no.such.event", data: {} }) { id } }', needs: 'viewer' },
  createApiKey: { operation: 'mutation { createApiKey(name: "") { key } }', needs: 'tenant' },
  revokeApiKey: { operation: 'mutation { revokeApiKey(id: "not-an-id") }', needs: 'tenant' },
  deliveryUpdates: { operation: 'subscription { deliveryUpdates(webhookId: "not-an-id") { kind } }', needs: 'tenant' },
  webhookHealth: { operation: 'subscription { webhookHealth(webhookId: "not-an-id") { kind } }', needs: 'tenant' },
};

const NOT_BOUND = { message: 'this token is not bound to a tenant', extensions: { code: 'FORBIDDEN' } };

describe('who may call each root field', () => {
  it('the table above names every root field of the schema', () => {
    const rootFields = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].flatMap((type) =>
      Object.keys(type?.getFields() ?? {}),
    );
    expect(Object.keys(ROOT_FIELDS).sort()).toEqual(rootFields.sort());
  });

  it('every root field refuses a caller without credentials as UNAUTHORIZED before anything runs', async () => {
    // Nothing but the viewer: a resolver that ran would fail on the missing services instead.
    const contextValue = { viewer: null, requestId: 'anonymous' };
    for (const [field, { operation }] of Object.entries(ROOT_FIELDS)) {
      const document = parse(operation);
      const result = operation.startsWith('subscription')
        ? await subscribe({ schema, document, contextValue })
        : await execute({ schema, document, contextValue });
      if (Symbol.asyncIterator in result) throw new Error(`${field}: subscribed without credentials`);
      expect(result.data ?? null, field).toBeNull();
      expect(result.errors, field).toHaveLength(1);
      const error = result.errors?.[0];
      expect(error, field).toBeInstanceOf(GraphQLError);
      const original = error?.originalError;
      expect(original, `${field}: ${String(original)}`).toBeInstanceOf(AppError);
      expect(original, field).toMatchObject({ code: 'UNAUTHORIZED', message: 'authentication required' });
    }
  });

  describe('a service token bound to no tenant', () => {
    let gw: TestGateway;
    let service: TestClient;
    beforeAll(async () => {
      gw = await startTestGateway();
      service = client(gw.url, await serviceToken());
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('is FORBIDDEN, not bound to a tenant, on every tenant field over GraphQL, whatever the arguments', async () => {
      for (const [field, { operation, needs }] of Object.entries(ROOT_FIELDS)) {
        if (needs !== 'tenant' || operation.startsWith('subscription')) continue;
        const res = await service.graphql(operation);
        expect(res.status, field).toBe(200);
        expect(res.body.data ?? null, field).toBeNull();
        expect(res.body.errors, `${field}: ${res.text}`).toEqual([expect.objectContaining(NOT_BOUND)]);
      }
    });

    it('is 403 with the same message on the REST rows of those fields', async () => {
      const id = 'wh_AAAAAAAAAAAAAAAAAAAA';
      const webhook = { name: 'x', url: 'https://receiver.example.com/hook', events: ['drift.detected'] };
      for (const res of [
        await service.get('/api/v1/webhooks'),
        await service.post('/api/v1/webhooks', webhook),
        await service.get(`/api/v1/webhooks/${id}`),
        await service.put(`/api/v1/webhooks/${id}`, { name: 'y' }),
        await service.delete(`/api/v1/webhooks/${id}`),
        await service.post(`/api/v1/webhooks/${id}/test`),
        await service.get(`/api/v1/webhooks/${id}/deliveries`),
        await service.get('/api/v1/settings/api-keys'),
        await service.post('/api/v1/settings/api-keys', { name: 'k' }),
        await service.delete('/api/v1/settings/api-keys/key_AAAAAAAAAAAAAAAAAAAA'),
      ]) {
        expect(res.status, res.text).toBe(403);
        expect(res.body).toEqual({ error: 'this token is not bound to a tenant', code: 'FORBIDDEN' });
      }
    });

    it('may read the event types and reach publishEvent, whose own rules then apply', async () => {
      const types = await service.graphql<{ webhookEventTypes: unknown[] }>(ROOT_FIELDS['webhookEventTypes']!.operation);
      expect(types.body.errors).toBeUndefined();
      expect(types.body.data?.webhookEventTypes.length).toBeGreaterThan(0);
      expect((await service.get('/api/v1/webhooks/events')).status).toBe(200);
      const publish = await service.graphql('mutation { publishEvent(input: { event: "drift.detected", data: {} }) { id } }');
      expect(publish.body.errors).toEqual([
        expect.objectContaining({ message: 'tenant_id is required with a service token', extensions: expect.objectContaining({ code: 'BAD_REQUEST' }) }),
      ]);
    });
  });
});
