import { z } from 'zod';
import type { RestRoute } from '../../rest/route.js';

const API_KEY_FIELDS = 'id name prefix createdAt lastUsedAt';

export const apiKeyRoutes: RestRoute[] = [
  {
    method: 'GET',
    path: '/api/v1/settings/api-keys',
    operation: `query ListApiKeys { apiKeys { ${API_KEY_FIELDS} } }`,
    status: 200,
    result: (data) => data['apiKeys'],
    doc: { summary: "List the tenant's active API keys", tag: 'API keys', response: 'ApiKeyList' },
  },
  {
    method: 'POST',
    path: '/api/v1/settings/api-keys',
    operation: `mutation CreateApiKey($name: String!) { createApiKey(name: $name) { key apiKey { ${API_KEY_FIELDS} } } }`,
    body: z.object({ name: z.string({ error: 'name is required and must be a string' }).describe('1 to 255 characters.') }),
    variables: ({ body }) => ({ name: body['name'] }),
    status: 201,
    result: (data) => {
      const payload = data['createApiKey'] as { apiKey: Record<string, unknown>; key: string };
      return { ...payload.apiKey, key: payload.key };
    },
    doc: {
      summary: 'Create an API key',
      description: 'The answer carries the `key` itself, shown this once only.',
      tag: 'API keys',
      response: 'CreatedApiKey',
      errors: [422],
    },
  },
  {
    method: 'DELETE',
    path: '/api/v1/settings/api-keys/:id',
    operation: `mutation RevokeApiKey($id: ID!) { revokeApiKey(id: $id) }`,
    variables: ({ params }) => ({ id: params['id'] }),
    status: 204,
    doc: { summary: 'Revoke an API key', description: 'Requests with the key are refused (401) at once.', tag: 'API keys' },
  },
];
