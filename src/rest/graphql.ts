// The `graphql` function route-table rows write their operations with. gql.tada reads each
// document's result and variables types off graphql-env.d.ts, the introspection of schema.graphql
// that `npm run schema:print` writes (and `npm run schema:check` holds against it), so a row's
// `variables` and `result` are type-checked against the schema with no generated file per document.
import { initGraphQLTada } from 'gql.tada';
import type { introspection } from './graphql-env.js';

export const graphql = initGraphQLTada<{
  introspection: introspection;
  // As the executed result holds them: src/graphql/builder.ts serializes DateTime to ISO 8601.
  scalars: { DateTime: string; JSONObject: Record<string, unknown> };
  // Fragments share a selection between rows; their fields are part of the result type as written.
  disableMasking: true;
}>();
