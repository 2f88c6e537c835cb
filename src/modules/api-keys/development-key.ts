import type { EntityManager } from '@mikro-orm/postgresql';
import { ApiKeySchema } from './api-key.entity.js';
import { ApiKeyService } from './api-key.service.js';

export const DEVELOPMENT_TENANT = 'local';

/**
 * On the very first start of the embedded default (no identity provider configured) one key is
 * created so the quick start works; it is returned only that once, since only its hash is kept.
 */
export async function ensureDevelopmentApiKey(em: EntityManager): Promise<string | undefined> {
  const existing = await em.count(ApiKeySchema, {});
  if (existing > 0) return undefined;
  const { key } = await new ApiKeyService(em).create(DEVELOPMENT_TENANT, 'development');
  return key;
}
