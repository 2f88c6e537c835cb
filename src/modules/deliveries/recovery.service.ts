// Bulk recover: the checks and the recovery record. The work itself is the workers'
// (src/worker/recovery.ts), in bounded batches after the answer.
import type { EntityManager } from '@mikro-orm/postgresql';
import { AppError, notFound } from '../../errors.js';
import { isId } from '../../ids.js';
import { createRecovery, findRecovery, type Recovery } from '../../worker/recovery.js';

/** The widest window one recover may cover. */
export const MAX_RECOVER_WINDOW_MS = 14 * 24 * 60 * 60 * 1000;

export interface RecoverInput {
  since: Date;
  /** Now when absent. */
  until?: Date | null;
  includeMissed?: boolean | null;
}

const invalid = (field: string, message: string) => new AppError('VALIDATION_ERROR', message, { field });

export class RecoveryService {
  constructor(
    private readonly em: EntityManager,
    /** Called after a recovery was written, to wake the workers that run it. */
    private readonly afterCreate?: (recovery: Recovery) => Promise<unknown>,
  ) {}

  /**
   * Starts a recover of the webhook's deliveries over [since, until): its failed ones, and with
   * includeMissed those it never got. Refused while the webhook is disabled.
   */
  async recover(tenantId: string, webhookId: string, input: RecoverInput): Promise<Recovery> {
    if (!isId('wh', webhookId)) throw notFound('webhook');
    const since = input.since;
    const until = input.until ?? new Date();
    if (Number.isNaN(since.getTime())) throw invalid('since', 'since must be a time (ISO 8601)');
    if (Number.isNaN(until.getTime())) throw invalid('until', 'until must be a time (ISO 8601)');
    if (since.getTime() >= until.getTime()) throw invalid('since', 'since must be before until');
    if (until.getTime() - since.getTime() > MAX_RECOVER_WINDOW_MS) {
      throw invalid('until', 'until - since must be at most 14 days');
    }
    const outcome = await createRecovery(this.em, { tenantId, webhookId, since, until, includeMissed: input.includeMissed ?? false });
    switch (outcome.kind) {
      case 'not-found':
        throw notFound('webhook');
      case 'disabled':
        throw new AppError('CONFLICT', 'the webhook is disabled; enable it first (enabled: true), then recover');
      case 'created':
        break;
    }
    if (outcome.recovery.status === 'running') await this.afterCreate?.(outcome.recovery);
    return outcome.recovery;
  }

  async get(tenantId: string, webhookId: string, id: string): Promise<Recovery> {
    if (!isId('wh', webhookId) || !isId('rcv', id)) throw notFound('recovery');
    const recovery = await findRecovery(this.em, { tenantId, webhookId, id });
    if (!recovery) throw notFound('recovery');
    return recovery;
  }
}
