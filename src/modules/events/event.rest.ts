import { z } from 'zod';
import type { RestRoute } from '../../rest/route.js';

export const eventRoutes: RestRoute[] = [
  {
    method: 'POST',
    path: '/api/v1/events',
    operation: `mutation PublishEvent($input: PublishEventInput!) {
      publishEvent(input: $input) { id event deliveries replayed }
    }`,
    body: z.object({
      event: z.string({ error: 'event is required and must be a string' }),
      data: z.record(z.string(), z.unknown(), { error: 'data is required and must be a JSON object' }),
      tenant_id: z.string({ error: 'tenant_id must be a string' }).optional(),
    }),
    maxBodyBytes: 'event',
    variables: ({ body }) => ({
      input: { event: body['event'], data: body['data'], tenantId: body['tenant_id'] ?? null },
    }),
    status: (data) => ((data['publishEvent'] as { replayed: boolean }).replayed ? 200 : 202),
    result: (data) => {
      const { id, event, deliveries } = data['publishEvent'] as { id: string; event: string; deliveries: number };
      return { id, event, deliveries };
    },
  },
];
