// The per-request service set: built once per request (and per job) around one EntityManager fork.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from './config.js';
import type { SecretBox } from './crypto/secrets.js';
import { CHANNEL_DELIVERIES_DUE, type Notifier } from './db/notifier.js';
import type { Deliverer } from './delivery/deliverer.js';
import { ApiKeyService } from './modules/api-keys/api-key.service.js';
import { DeliveryService, queuePing } from './modules/deliveries/delivery.service.js';
import { EventService } from './modules/events/event.service.js';
import { WebhookService } from './modules/webhooks/webhook.service.js';

export interface ServiceDeps {
  config: Config;
  secretBox: SecretBox;
  notifier: Notifier;
  deliverer: Deliverer;
}

export interface Services {
  webhooks: WebhookService;
  apiKeys: ApiKeyService;
  events: EventService;
  deliveries: DeliveryService;
}

export function createServices(em: EntityManager, deps: ServiceDeps): Services {
  const wakeWorkers = () => deps.notifier.notify(CHANNEL_DELIVERIES_DUE, '').catch(() => undefined);
  return {
    webhooks: new WebhookService(em, {
      secretBox: deps.secretBox,
      allowInsecureUrls: deps.config.allowInsecureUrls,
      onCreated: queuePing,
      afterCommit: wakeWorkers,
    }),
    apiKeys: new ApiKeyService(em),
    events: new EventService(em, deps.notifier),
    deliveries: new DeliveryService(em, deps.deliverer),
  };
}
