// The per-request service set: built once per request (and per job) around one EntityManager fork.
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { SecretBox } from './crypto/secrets.js';
import { CHANNEL_DELIVERIES_DUE, CHANNEL_RECOVERIES, CHANNEL_WEBHOOKS_CHANGED, type Notifier } from './db/notifier.js';
import type { Deliverer } from './worker/deliverer.js';
import { ApiKeyService } from './modules/api-keys/api-key.service.js';
import { DeliveryService, queuePing } from './modules/deliveries/delivery.service.js';
import { RecoveryService } from './modules/deliveries/recovery.service.js';
import { EventService, type EventPublisher } from './modules/events/event.service.js';
import { WebhookService } from './modules/webhooks/webhook.service.js';
import type { DeliveryUpdateHub } from './subscriptions/delivery-update-hub.js';
import { announce, announceCancelled } from './subscriptions/delivery-update-notice.js';
import { DeliveryUpdatesService } from './subscriptions/delivery-updates.service.js';

export interface ServiceDeps {
  config: Config;
  secretBox: SecretBox;
  notifier: Notifier;
  deliverer: Deliverer;
  orm: MikroORM;
  logger?: Logger;
  /** The gateway's live delivery updates (api role). */
  deliveryUpdates: DeliveryUpdateHub;
  /** The gateway's one group commit of published events. */
  eventPublisher: EventPublisher;
}

export interface Services {
  webhooks: WebhookService;
  apiKeys: ApiKeyService;
  events: EventService;
  deliveries: DeliveryService;
  recoveries: RecoveryService;
  deliveryUpdates: DeliveryUpdatesService;
}

export function createServices(em: EntityManager, deps: ServiceDeps): Services {
  const wakeWorkers = () => deps.notifier.notify(CHANNEL_DELIVERIES_DUE, '').catch(() => undefined);
  const webhooks = new WebhookService(em, {
    secretBox: deps.secretBox,
    allowInsecureUrls: deps.config.allowInsecureUrls,
    maxWebhooksPerTenant: deps.config.maxWebhooksPerTenant,
    onCreated: queuePing,
    afterCommit: async (webhook) => {
      // Announced before the workers wake, so watchers hear of the ping before its attempt.
      if (webhook.enabled) await announce(deps.notifier, { kind: 'ping', tenantId: webhook.tenantId, webhookId: webhook.id }, deps.logger);
      await wakeWorkers();
    },
    afterCancel: (webhook, ids) => announceCancelled(deps.notifier, webhook.tenantId, webhook.id, ids, deps.logger),
    // A hint, like every notice: a lost one leaves a spare to be sent as claimed, as a request
    // already open when the change committed is.
    afterChange: (webhookId) => deps.notifier.notify(CHANNEL_WEBHOOKS_CHANGED, webhookId).catch(() => undefined),
  });
  return {
    webhooks,
    apiKeys: new ApiKeyService(em, deps.notifier),
    events: new EventService(em, deps.notifier, deps.config.maxEventBytes, deps.eventPublisher),
    deliveries: new DeliveryService(em, deps.deliverer, webhooks, deps.config.webhookTimeoutMs + deps.config.workerLeaseMarginMs, async (delivery) => {
      // Announced before the workers wake, so watchers see the delivery pending before its attempt.
      const { tenantId, webhookId, id: deliveryId, attempts } = delivery;
      const at = (delivery.nextAttemptAt ?? delivery.updatedAt).toISOString();
      await announce(deps.notifier, { kind: 'resent', tenantId, webhookId, deliveryId, attempts, at }, deps.logger);
      await wakeWorkers();
    }),
    // A hint: workers also look for recoveries to run on every poll.
    recoveries: new RecoveryService(em, () => deps.notifier.notify(CHANNEL_RECOVERIES, '').catch(() => undefined)),
    deliveryUpdates: new DeliveryUpdatesService(webhooks, deps.deliveryUpdates),
  };
}
