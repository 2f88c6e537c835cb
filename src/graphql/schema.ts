import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.js';
import '../modules/webhooks/webhook.graphql.js';
import '../modules/webhooks/webhook-health.graphql.js';
import '../modules/api-keys/api-key.graphql.js';
import '../modules/events/event.graphql.js';
import '../modules/deliveries/delivery.graphql.js';
import '../modules/deliveries/recovery.graphql.js';

export const schema: GraphQLSchema = builder.toSchema();

export function printSchemaText(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
