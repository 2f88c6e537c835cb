import { apiKeyRoutes } from '../modules/api-keys/api-key.rest.js';
import { deliveryRoutes } from '../modules/deliveries/delivery.rest.js';
import { recoveryRoutes } from '../modules/deliveries/recovery.rest.js';
import { eventRoutes } from '../modules/events/event.rest.js';
import { webhookRoutes } from '../modules/webhooks/webhook.rest.js';
import type { RestRoute } from './route.js';

/** Every documented /api/v1 path; a test holds this table against the contract. */
export const restRoutes: RestRoute[] = [...webhookRoutes, ...deliveryRoutes, ...recoveryRoutes, ...eventRoutes, ...apiKeyRoutes];
