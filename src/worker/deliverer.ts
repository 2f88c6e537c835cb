// One attempt of one claimed delivery, end to end: build the envelope, sign and send it, record
// the outcome durably, and announce it. The scheduler and the synchronous /test endpoint share it.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { SecretBox } from '../crypto/secrets.js';
import type { Metrics } from '../observability/metrics.js';
import type { Notifier } from '../db/notifier.js';
import { newId } from '../ids.js';
import { deleteExpiredSecrets } from '../modules/webhooks/previous-secrets.js';
import { CHANNEL_WEBHOOKS_CHANGED } from '../db/notifier.js';
import { announce, announceCancelled, noticeInStatement, type DeliveryUpdateNotice } from '../subscriptions/delivery-update-notice.js';
import type { ClaimedDelivery } from './claim.js';
import { cancelDelivery, disableWebhook, type RecordedAttempt } from './queue.js';
import { createAttemptRecorder } from './recorder.js';
import { retryWaitMs } from './retry-wait.js';
import { announceHealth, markFailing, markRecovered, type HealthChange } from './webhook-health.js';
import type { Sender, SendResult } from './sender.js';

export interface DeliveryOutcome {
  result: SendResult | null;
  recorded: RecordedAttempt | null;
}

export interface DeliverOptions {
  noRetry?: boolean;
  /**
   * Aborted when the caller has stopped waiting and handed the lease back (shutdown): an outcome
   * that arrives after that is not recorded, since another worker may already be sending it.
   */
  abandoned?: AbortSignal;
  /** Called once the request is over (answered, failed or timed out), before the outcome is recorded. */
  onSent?: () => void;
}

export interface Deliverer {
  deliver(claimed: ClaimedDelivery, options?: DeliverOptions): Promise<DeliveryOutcome>;
}

export function buildEnvelope(claimed: Pick<ClaimedDelivery, 'eventType' | 'publishedAt' | 'webhookId' | 'id' | 'data'>): string {
  return JSON.stringify({
    event: claimed.eventType,
    timestamp: claimed.publishedAt.toISOString(),
    webhook_id: claimed.webhookId,
    delivery_id: claimed.id,
    data: claimed.data,
  });
}

const SECRET_CACHE_SIZE = 10_000;

export function createDeliverer(deps: {
  orm: MikroORM;
  sender: Sender;
  secretBox: SecretBox;
  notifier: Notifier;
  retryScheduleMs: number[];
  /** WEBHOOK_RETRY_AFTER_MAX. */
  retryAfterMaxMs: number;
  /** WEBHOOK_DISABLE_AFTER: a webhook failing this long is disabled (0: never). */
  disableAfterMs?: number;
  logger: Logger;
  metrics?: Pick<Metrics, 'attempts' | 'attemptDuration' | 'deliveriesFinished'>;
}): Deliverer {
  const { logger } = deps;
  const recorder = createAttemptRecorder(deps.orm, logger);
  // Decrypting a secret costs an AES-GCM setup per attempt; the same few webhooks are sent to again
  // and again. Keyed by the stored ciphertext, so a rotated secret is a new entry.
  const secrets = new Map<string, string>();
  const secretOf = (encrypted: string): string => {
    let secret = secrets.get(encrypted);
    if (secret === undefined) {
      secret = deps.secretBox.decrypt(encrypted);
      if (secrets.size >= SECRET_CACHE_SIZE) secrets.delete(secrets.keys().next().value!);
      secrets.set(encrypted, secret);
    }
    return secret;
  };

  // Expired previous secrets are deleted once an attempt meets them (after it is recorded, so
  // the send never waits for it); the worker's hourly sweep takes those of idle webhooks.
  const dropExpiredSecrets = async (webhookId: string) => {
    try {
      await deleteExpiredSecrets(deps.orm.em.fork(), webhookId);
    } catch (err) {
      logger.warn({ err, webhookId }, 'deleting expired webhook secrets failed');
    }
  };

  /**
   * After a delivery of the webhook failed for good, or its endpoint answered 410 Gone: disables
   * the webhook when the rule says so, and tells the subscribers and the workers.
   */
  async function disableIfDue(claimed: ClaimedDelivery, reason: 'failing' | 'gone'): Promise<void> {
    const disabled = await disableWebhook(deps.orm.em.fork(), claimed, reason, deps.disableAfterMs ?? 0);
    if (disabled === null) return;
    const { cancelled } = disabled;
    logger.warn({ webhookId: claimed.webhookId, tenantId: claimed.tenantId, reason, cancelled: cancelled.length }, 'webhook disabled');
    if (cancelled.length > 0) {
      deps.metrics?.deliveriesFinished.inc({ status: 'cancelled' }, cancelled.length);
      await announceCancelled(deps.notifier, claimed.tenantId, claimed.webhookId, cancelled, logger);
    }
    await deps.notifier.notify(CHANNEL_WEBHOOKS_CHANGED, claimed.webhookId).catch(() => undefined);
    await announceHealth(deps.notifier, disabled.health, logger);
  }

  /**
   * Applies a health transition (webhook-health.ts) and announces it. The attempt is recorded
   * either way; a transition not made now is made at the webhook's next failure or success.
   */
  async function changeHealth(claimed: ClaimedDelivery, transition: () => Promise<HealthChange | null>): Promise<void> {
    try {
      const change = await transition();
      if (!change) return;
      logger.warn({ webhookId: change.webhookId, tenantId: change.tenantId, change: change.kind, eventId: change.eventId, deliveries: change.deliveries }, 'webhook health changed');
      await announceHealth(deps.notifier, change, logger);
    } catch (err) {
      logger.error({ err, webhookId: claimed.webhookId }, 'could not record a webhook health change');
    }
  }

  return {
    async deliver(claimed, options = {}) {
      const base = { deliveryId: claimed.id, webhookId: claimed.webhookId, tenantId: claimed.tenantId };
      if (!claimed.enabled) {
        // Disabled after this delivery was queued: it is never sent.
        if (await cancelDelivery(deps.orm.em.fork(), claimed.id)) {
          deps.metrics?.deliveriesFinished.inc({ status: 'cancelled' });
          await announce(deps.notifier, { kind: 'status', tenantId: claimed.tenantId, webhookId: claimed.webhookId, deliveryIds: [claimed.id] }, logger);
        }
        return { result: null, recorded: null };
      }
      const attempt = claimed.attempts + 1;
      const result = await deps.sender.send({
        deliveryId: claimed.id,
        webhookId: claimed.webhookId,
        url: claimed.url,
        secrets: [secretOf(claimed.secretEncrypted), ...claimed.previousSecretsEncrypted.map(secretOf)],
        eventType: claimed.eventType,
        body: buildEnvelope(claimed),
        attempt,
      });
      options.onSent?.();
      if (options.abandoned?.aborted) {
        logger.info({ ...base, attempt, eventType: claimed.eventType }, 'delivery attempt abandoned at shutdown');
        return { result, recorded: null };
      }
      // 410 Gone: the endpoint says it will not take deliveries again, so none is retried, and its
      // webhook is disabled before this outcome is recorded, so no more are taken up meanwhile.
      const gone = result.responseCode === 410;
      if (gone) await changeHealth(claimed, () => markFailing(deps.orm.em.fork(), claimed, result.responseCode, null));
      if (gone) await disableIfDue(claimed, 'gone').catch((err: unknown) => logger.error({ err, webhookId: claimed.webhookId }, 'could not disable a gone webhook'));
      // The schedule's step for this attempt (a resend starts the schedule again from its first
      // step), stretched by a Retry-After on 429 or 503.
      const step = options.noRetry || gone ? undefined : deps.retryScheduleMs[claimed.attempts - claimed.scheduleStart];
      const retryInMs = retryWaitMs(step, result, deps.retryAfterMaxMs, Date.now());
      const attemptId = newId('att');
      const notice: DeliveryUpdateNotice = { kind: 'attempt', ...base, attemptId };
      const inStatement = deps.notifier.viaSql ? noticeInStatement(notice) : undefined;
      // Durable before it is announced; the recorder waits out Postgres blips (a restart, a
      // failover) within the lease, since losing the record would mean sending again later.
      const recorded = await recorder.record({ attemptId, delivery: claimed, result, retryInMs, notice: inStatement });
      const outcome = result.ok ? 'success' : 'failed';
      deps.metrics?.attempts.inc({ outcome, error_class: result.errorClass ?? 'none' });
      deps.metrics?.attemptDuration.observe({ outcome }, result.durationMs / 1000);
      if (recorded && recorded.deliveryStatus !== 'pending') {
        deps.metrics?.deliveriesFinished.inc({ status: recorded.deliveryStatus });
      }
      logger.info(
        {
          ...base,
          attemptId,
          attempt,
          eventType: claimed.eventType,
          ok: result.ok,
          responseCode: result.responseCode,
          errorClass: result.errorClass,
          durationMs: result.durationMs,
          deliveryStatus: recorded?.deliveryStatus,
        },
        'delivery attempt',
      );
      if (recorded && !inStatement) await announce(deps.notifier, notice, logger);
      if (claimed.secretsExpired) await dropExpiredSecrets(claimed.webhookId);
      if (recorded?.endsFailingSince) {
        const succeededAt = recorded.recordedAt;
        await changeHealth(claimed, () => markRecovered(deps.orm.em.fork(), claimed.webhookId, succeededAt));
      }
      if (!gone && recorded?.deliveryStatus === 'failed') {
        const failedAt = recorded.recordedAt;
        await changeHealth(claimed, () => markFailing(deps.orm.em.fork(), claimed, result.responseCode, failedAt));
        // The attempt is recorded either way; a rule not applied now is applied at the next failure.
        await disableIfDue(claimed, 'failing').catch((err: unknown) => logger.error({ err, webhookId: claimed.webhookId }, 'could not disable a failing webhook'));
      }
      return { result, recorded };
    },
  };
}
