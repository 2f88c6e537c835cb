// Subscription management. The only place that decides what a valid webhook is: GraphQL
// resolvers and the REST routes both land here.
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { generateWebhookSecret, isWebhookSecret, type SecretBox } from '../../crypto/secrets.js';
import { AppError, notFound } from '../../errors.js';
import { isId, newId } from '../../ids.js';
import { isStorableText } from '../../db/storable-text.js';
import { cancelPendingForWebhook } from '../../worker/queue.js';
import { isEventType } from '../events/event-types.js';
import {
  DEFAULT_GRACE_PERIOD_SECONDS,
  MAX_GRACE_PERIOD_SECONDS,
  previousSecrets,
  retireSecret,
  type PreviousSecrets,
} from './previous-secrets.js';
import { checkWebhookUrl } from './url-policy.js';
import { WebhookSchema, type Webhook } from './webhook.entity.js';

export interface WebhookInput {
  name?: string | null;
  url?: string | null;
  events?: readonly string[] | null;
  enabled?: boolean | null;
  secret?: string | null;
}

export interface CreatedWebhook {
  webhook: Webhook;
  secret: string;
}

export interface RotateSecretInput {
  secret?: string | null;
  gracePeriodSeconds?: number | null;
}

export interface RotatedSecret {
  /** The new signing secret, shown this once. */
  secret: string;
  /** Until when the replaced secret still signs every attempt. */
  previousSecretExpiresAt: Date;
}

export interface WebhookServiceDeps {
  secretBox: SecretBox;
  allowInsecureUrls: boolean;
  /** MAX_WEBHOOKS_PER_TENANT. */
  maxWebhooksPerTenant?: number;
  /** Called inside the create transaction so the verification ping is queued with the webhook. */
  onCreated?: (em: EntityManager, webhook: Webhook) => Promise<void>;
  /** Called after a commit that queued something to send. */
  afterCommit?: (webhook: Webhook) => Promise<unknown>;
  /** Called after a commit that cancelled pending deliveries (the webhook was disabled). */
  afterCancel?: (webhook: Webhook, deliveryIds: string[]) => Promise<unknown>;
  /**
   * Called after a commit that changed where or whether the webhook is sent to (its URL, enabled,
   * or its deletion), so workers drop what they hold of it as it was.
   */
  afterChange?: (webhookId: string) => Promise<unknown>;
}

const NAME_MAX = 255;

const required = (field: string) => new AppError('BAD_REQUEST', `${field} is required`, { field });
const invalid = (field: string, message: string) => new AppError('VALIDATION_ERROR', message, { field });

function checkName(name: string): string {
  if (name.trim() === '') throw required('name');
  if (!isStorableText(name)) throw invalid('name', 'name must not contain NUL characters or unpaired surrogates');
  if ([...name].length > NAME_MAX) throw invalid('name', `name must be at most ${NAME_MAX} characters`);
  return name;
}

function checkUrl(url: string, allowInsecure: boolean): string {
  if (url.trim() === '') throw required('url');
  const result = checkWebhookUrl(url, allowInsecure);
  if (!result.ok) throw invalid('url', result.message);
  return result.url;
}

function checkSecret(secret: string): string {
  if (!isWebhookSecret(secret)) throw invalid('secret', 'secret must be "whsec_" followed by the base64 of 24 bytes (32 characters)');
  return secret;
}

/** A rotation's grace period in seconds: a whole number from 0 to 7 days, 1 day when absent. */
export function checkGracePeriod(seconds: number | null | undefined): number {
  if (seconds === undefined || seconds === null) return DEFAULT_GRACE_PERIOD_SECONDS;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_GRACE_PERIOD_SECONDS) {
    throw invalid('grace_period_seconds', `grace_period_seconds must be a whole number from 0 to ${MAX_GRACE_PERIOD_SECONDS}`);
  }
  return seconds;
}

function checkEvents(events: readonly string[]): string[] {
  if (events.length === 0) throw required('events');
  const seen = new Set<string>();
  for (const [i, name] of events.entries()) {
    if (!isEventType(name)) {
      throw new AppError('VALIDATION_ERROR', `events[${i}] is not a known event type: ${JSON.stringify(name)}`, {
        field: 'events',
        index: i,
      });
    }
    seen.add(name);
  }
  return [...seen];
}

/** The columns that say whether a webhook is enabled and why not, as of `now`, for a change by its owner. */
function enabledState(enabled: boolean, now: Date): Pick<Webhook, 'enabled' | 'disabledReason' | 'disabledAt' | 'enabledAt'> {
  return enabled
    ? { enabled: true, disabledReason: null, disabledAt: null, enabledAt: now }
    : { enabled: false, disabledReason: 'manual', disabledAt: now, enabledAt: now };
}

export class WebhookService {
  constructor(
    private readonly em: EntityManager,
    private readonly deps: WebhookServiceDeps,
  ) {}

  async list(tenantId: string): Promise<Webhook[]> {
    return this.em.find(WebhookSchema, { tenantId }, { orderBy: { seq: 'desc' } });
  }

  /** Another tenant's id, an unknown id and a malformed id are all the same NOT_FOUND. */
  async get(tenantId: string, id: string): Promise<Webhook> {
    if (!isId('wh', id)) throw notFound('webhook');
    const webhook = await this.em.findOne(WebhookSchema, { id, tenantId });
    if (!webhook) throw notFound('webhook');
    return webhook;
  }

  /**
   * Refuses a webhook past the tenant's quota. Two creates of one tenant at once are serialized
   * by a transaction-scoped advisory lock on the tenant, so both cannot count the same free slot.
   */
  private async reserveWebhookSlot(em: EntityManager, tenantId: string): Promise<void> {
    const max = this.deps.maxWebhooksPerTenant;
    if (max === undefined) return;
    const connection = em.getConnection();
    await connection.execute(`select pg_advisory_xact_lock(hashtext('webhooks of ' || ?))`, [tenantId], 'all', em.getTransactionContext());
    const count = await em.count(WebhookSchema, { tenantId });
    if (count >= max) {
      throw new AppError('CONFLICT', `this tenant already has ${count} webhooks, the most MAX_WEBHOOKS_PER_TENANT (${max}) allows`, {
        limit: 'MAX_WEBHOOKS_PER_TENANT',
        max,
      });
    }
  }

  async create(tenantId: string, input: WebhookInput): Promise<CreatedWebhook> {
    if (input.name === undefined || input.name === null) throw required('name');
    if (input.url === undefined || input.url === null) throw required('url');
    if (input.events === undefined || input.events === null) throw required('events');
    const name = checkName(input.name);
    const url = checkUrl(input.url, this.deps.allowInsecureUrls);
    const events = checkEvents(input.events);
    const secret = input.secret === undefined || input.secret === null ? generateWebhookSecret() : checkSecret(input.secret);
    const now = new Date();
    const created = await this.em.transactional(async (em) => {
      await this.reserveWebhookSlot(em, tenantId);
      const webhook = em.create(WebhookSchema, {
        id: newId('wh'),
        tenantId,
        name,
        url,
        events,
        secretEncrypted: this.deps.secretBox.encrypt(secret),
        createdAt: now,
        updatedAt: now,
        lastDeliveryStatus: null,
        lastDeliveryAt: null,
        ...enabledState(input.enabled ?? true, now),
        lastSuccessAt: null,
      });
      await em.flush();
      await this.deps.onCreated?.(em, webhook);
      return { webhook, secret };
    });
    await this.deps.afterCommit?.(created.webhook);
    return created;
  }

  async update(tenantId: string, id: string, input: WebhookInput): Promise<Webhook> {
    if (input.secret !== undefined) {
      throw invalid('secret', 'secret cannot be changed here; rotate it with POST /api/v1/webhooks/{id}/secret/rotate');
    }
    const changes: Partial<Pick<Webhook, 'name' | 'url' | 'events' | 'enabled' | 'disabledReason' | 'disabledAt' | 'enabledAt'>> = {};
    if (input.name !== undefined) {
      if (input.name === null) throw required('name');
      changes.name = checkName(input.name);
    }
    if (input.url !== undefined) {
      if (input.url === null) throw required('url');
      changes.url = checkUrl(input.url, this.deps.allowInsecureUrls);
    }
    if (input.events !== undefined) {
      if (input.events === null) throw required('events');
      changes.events = checkEvents(input.events);
    }
    if (input.enabled !== undefined) {
      if (input.enabled === null) throw new AppError('BAD_REQUEST', 'enabled must be a boolean', { field: 'enabled' });
      changes.enabled = input.enabled;
    }
    const now = new Date();
    // Values are judged before the id is looked up (README: 422 before 404).
    const webhook = await this.get(tenantId, id);
    if (Object.keys(changes).length > 0) {
      // Enabling clears why it was disabled and starts a new auto-disable window; disabling by hand
      // says so, whatever had disabled it before.
      if (changes.enabled === true && !webhook.enabled) Object.assign(changes, enabledState(true, now));
      if (changes.enabled === false) Object.assign(changes, enabledState(false, now), { enabledAt: webhook.enabledAt });
      const cancelled = await this.em.transactional(async (em) => {
        em.assign(webhook, { ...changes, updatedAt: now });
        await em.flush();
        // Disabling stops pending retries; events published while disabled never reach it.
        return changes.enabled === false ? cancelPendingForWebhook(em, webhook.id) : [];
      });
      if (cancelled.length > 0) await this.deps.afterCancel?.(webhook, cancelled);
      if (changes.url !== undefined || changes.enabled !== undefined) await this.deps.afterChange?.(webhook.id);
    }
    return webhook;
  }

  async delete(tenantId: string, id: string): Promise<void> {
    const webhook = await this.get(tenantId, id);
    // Deliveries and attempts go with the webhook (on delete cascade), which also takes every
    // pending retry out of the queue in the same statement.
    await this.em.nativeDelete(WebhookSchema, { id: webhook.id, tenantId });
    await this.deps.afterChange?.(webhook.id);
  }

  /**
   * Replaces the webhook's signing secret with `input.secret` (or a new one). The replaced secret
   * keeps signing every attempt, beside the new one, for the grace period. Two rotations of one
   * webhook at once are serialized by its row lock, so neither retires a secret the other has
   * already replaced (the loser's new secret would never sign anything).
   */
  async rotateSecret(tenantId: string, id: string, input: RotateSecretInput): Promise<RotatedSecret> {
    // Values are judged before the id is looked up (README: 422 before 404).
    const secret = input.secret === undefined || input.secret === null ? generateWebhookSecret() : checkSecret(input.secret);
    const graceSeconds = checkGracePeriod(input.gracePeriodSeconds);
    if (!isId('wh', id)) throw notFound('webhook');
    const previousSecretExpiresAt = await this.em.transactional(async (em) => {
      const webhook = await em.findOne(WebhookSchema, { id, tenantId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!webhook) throw notFound('webhook');
      if (!webhook.enabled) {
        throw new AppError('CONFLICT', 'the webhook is disabled: enable it first, then rotate its secret');
      }
      const expiresAt = await retireSecret(em, webhook.id, webhook.secretEncrypted, graceSeconds);
      em.assign(webhook, { secretEncrypted: this.deps.secretBox.encrypt(secret), updatedAt: new Date() });
      await em.flush();
      return expiresAt;
    });
    // Workers hand back the spares they hold, claimed with the secrets as they were.
    await this.deps.afterChange?.(id);
    return { secret, previousSecretExpiresAt };
  }

  /** The webhook's live previous secrets (encrypted), as an attempt is signed with them. */
  previousSecrets(webhook: Webhook): Promise<PreviousSecrets> {
    return previousSecrets(this.em, webhook.id);
  }

  decryptSecret(webhook: Webhook): string {
    return this.deps.secretBox.decrypt(webhook.secretEncrypted);
  }
}
