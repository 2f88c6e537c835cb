import { ApiKeySchema } from '../modules/api-keys/api-key.entity.js';
import { DeliveryAttemptSchema } from '../modules/deliveries/delivery-attempt.entity.js';
import { DeliverySchema } from '../modules/deliveries/delivery.entity.js';
import { EventSchema } from '../modules/events/event.entity.js';
import { WebhookSchema } from '../modules/webhooks/webhook.entity.js';

export const entities = [WebhookSchema, ApiKeySchema, EventSchema, DeliverySchema, DeliveryAttemptSchema];
