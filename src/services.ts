// The per-request service set: built once per request (and per job) around one EntityManager fork.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from './config.js';
import type { SecretBox } from './crypto/secrets.js';
import { ApiKeyService } from './modules/api-keys/api-key.service.js';
import { WebhookService } from './modules/webhooks/webhook.service.js';

export interface ServiceDeps {
  config: Config;
  secretBox: SecretBox;
}

export interface Services {
  webhooks: WebhookService;
  apiKeys: ApiKeyService;
}

export function createServices(em: EntityManager, deps: ServiceDeps): Services {
  return {
    webhooks: new WebhookService(em, {
      secretBox: deps.secretBox,
      allowInsecureUrls: deps.config.allowInsecureUrls,
    }),
    apiKeys: new ApiKeyService(em),
  };
}
