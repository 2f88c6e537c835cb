import { z } from 'zod';
import { graphql } from '../../rest/graphql.js';
import { dateTime, prefixedId, responseBodies } from '../../rest/response-body.js';
import { restRoute, type RestRoute } from '../../rest/route.js';

const ApiKeyFields = graphql(`fragment ApiKeyFields on ApiKey { id name prefix createdAt lastUsedAt }`);

const apiKeyFields = {
  id: prefixedId('key'),
  name: z.string(),
  prefix: z.string().describe('The first characters of the key, to tell keys apart.'),
  created_at: dateTime(),
  last_used_at: dateTime().nullable(),
};

const apiKeyBody = z
  .object(apiKeyFields)
  .describe('A tenant-bound API key. Only its prefix is shown after creation.')
  .register(responseBodies, { id: 'ApiKey' });

const apiKeyListBody = z.array(apiKeyBody).register(responseBodies, { id: 'ApiKeyList' });

const createdApiKeyBody = z
  .object({ ...apiKeyFields, key: z.string().regex(/^ia_live_/).describe('The key itself, shown in this answer only.') })
  .describe('The new API key, with the key itself.')
  .register(responseBodies, { id: 'CreatedApiKey' });

export const apiKeyRoutes: RestRoute[] = [
  restRoute({
    method: 'GET',
    path: '/api/v1/settings/api-keys',
    operation: graphql(`query ListApiKeys { apiKeys { ...ApiKeyFields } }`, [ApiKeyFields]),
    status: 200,
    result: (data) => data.apiKeys,
    doc: { summary: "List the tenant's active API keys", tag: 'API keys', response: apiKeyListBody },
  }),
  restRoute({
    method: 'POST',
    path: '/api/v1/settings/api-keys',
    operation: graphql(
      `mutation CreateApiKey($name: String!) { createApiKey(name: $name) { key apiKey { ...ApiKeyFields } } }`,
      [ApiKeyFields],
    ),
    body: z.object({ name: z.string({ error: 'name is required and must be a string' }).describe('1 to 255 characters.') }),
    variables: ({ body }) => ({ name: body.name }),
    status: 201,
    result: ({ createApiKey }) => ({ ...createApiKey.apiKey, key: createApiKey.key }),
    doc: {
      summary: 'Create an API key',
      description: 'The answer carries the `key` itself, shown this once only.',
      tag: 'API keys',
      response: createdApiKeyBody,
      errors: [422],
    },
  }),
  restRoute({
    method: 'DELETE',
    path: '/api/v1/settings/api-keys/:id',
    operation: graphql(`mutation RevokeApiKey($id: ID!) { revokeApiKey(id: $id) }`),
    variables: ({ params }) => ({ id: params.id }),
    status: 204,
    doc: { summary: 'Revoke an API key', description: 'Requests with the key are refused (401) at once.', tag: 'API keys' },
  }),
];
