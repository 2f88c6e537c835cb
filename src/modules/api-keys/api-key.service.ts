import type { EntityManager } from '@mikro-orm/postgresql';
import { apiKeyPrefix, generateApiKey, hashApiKey } from '../../crypto/api-key-token.js';
import { CHANNEL_API_KEYS_REVOKED, type Notifier } from '../../db/notifier.js';
import { isStorableText } from '../../db/storable-text.js';
import { AppError, notFound } from '../../errors.js';
import { isId, newId } from '../../ids.js';
import { ApiKeySchema, type ApiKey } from './api-key.entity.js';

// last_used_at is a hint for humans; writing it at most once a minute keeps authentication from
// turning every request into a write.
const LAST_USED_RESOLUTION_MS = 60_000;

/** Looks a presented key up by hash; revoked keys are not found. */
export async function findActiveApiKey(em: EntityManager, key: string): Promise<ApiKey | null> {
  const found = await em.findOne(ApiKeySchema, { keyHash: hashApiKey(key), revokedAt: null });
  if (found) {
    const now = new Date();
    if (!found.lastUsedAt || now.getTime() - found.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      await em.nativeUpdate(ApiKeySchema, { id: found.id }, { lastUsedAt: now });
    }
  }
  return found;
}

export interface CreatedApiKey {
  apiKey: ApiKey;
  key: string;
}

export class ApiKeyService {
  constructor(
    private readonly em: EntityManager,
    /** Announces revocations to this process when SQL's NOTIFY does not reach it (embedded). */
    private readonly notifier?: Notifier,
  ) {}

  async list(tenantId: string): Promise<ApiKey[]> {
    return this.em.find(ApiKeySchema, { tenantId, revokedAt: null }, { orderBy: { seq: 'desc' } });
  }

  async create(tenantId: string, name: string): Promise<CreatedApiKey> {
    const trimmed = name.trim();
    if (trimmed === '') throw new AppError('BAD_REQUEST', 'name is required', { field: 'name' });
    if (!isStorableText(trimmed)) {
      throw new AppError('VALIDATION_ERROR', 'name must not contain NUL characters or unpaired surrogates', { field: 'name' });
    }
    if (trimmed.length > 255) {
      throw new AppError('VALIDATION_ERROR', 'name must be at most 255 characters', { field: 'name' });
    }
    const key = generateApiKey();
    const now = new Date();
    const apiKey = this.em.create(ApiKeySchema, {
      id: newId('key'),
      tenantId,
      name: trimmed,
      prefix: apiKeyPrefix(key),
      keyHash: hashApiKey(key),
      createdAt: now,
      lastUsedAt: null,
      revokedAt: null,
    });
    await this.em.flush();
    return { apiKey, key };
  }

  async revoke(tenantId: string, id: string): Promise<void> {
    if (!isId('key', id)) throw notFound('API key');
    // The announcement travels with the update and is delivered at its commit, whoever revokes
    // (the API or the command line): every api instance then ends the streams opened with it.
    const revoked = await this.em.getConnection().execute<{ id: string }[]>(
      `with revoked as (
         update api_key set revoked_at = now() where id = ? and tenant_id = ? and revoked_at is null returning id
       )
       select id, pg_notify(?, id) from revoked`,
      [id, tenantId, CHANNEL_API_KEYS_REVOKED],
      'all',
      this.em.getTransactionContext(),
    );
    if (revoked.length === 0) throw notFound('API key');
    if (this.notifier && !this.notifier.viaSql) await this.notifier.notify(CHANNEL_API_KEYS_REVOKED, id).catch(() => undefined);
  }
}
