import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { printSchemaText } from '../../src/graphql/schema.js';
import { repoRoot } from '../helpers/processes.js';

describe('schema.graphql', () => {
  it('is identical to the running schema', async () => {
    const committed = await readFile(path.join(repoRoot, 'schema.graphql'), 'utf8');
    expect(committed).toBe(printSchemaText());
  });

  it('exposes the documented webhook and API key operations', () => {
    const text = printSchemaText();
    for (const field of [
      'webhooks: [Webhook!]!',
      'webhook(id: ID!): Webhook!',
      'webhookEventTypes: [WebhookEventType!]!',
      'createWebhook(input: CreateWebhookInput!): CreateWebhookPayload!',
      'updateWebhook(id: ID!, input: UpdateWebhookInput!): Webhook!',
      'deleteWebhook(id: ID!): Boolean!',
      'apiKeys: [ApiKey!]!',
      'createApiKey(name: String!): CreateApiKeyPayload!',
      'revokeApiKey(id: ID!): Boolean!',
    ]) {
      expect(text).toContain(field);
    }
    const webhookType = /type Webhook \{([^}]*)\}/.exec(text)?.[1] ?? '';
    expect(webhookType).toContain('lastDeliveryStatus');
    expect(webhookType).not.toMatch(/\bsecret\b/);
  });
});
