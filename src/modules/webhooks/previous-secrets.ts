// A webhook's previous signing secrets, the rule of which are live, and the statements that keep
// them: a rotation retires the current secret here for a grace period, the claim (and the test
// ping) read the live ones with the webhook, and expired ones are deleted, not only skipped: by
// the rotation, by the worker once it meets one, and by the worker's hourly sweep.
import type { EntityManager, Knex } from '@mikro-orm/postgresql';
import { runStatement } from '../../db/statements.js';

/** At most this many previous secrets stay live; a rotation past it drops the oldest. */
export const MAX_PREVIOUS_SECRETS = 10;
/** The longest grace period a rotation may give the secret it retires: 7 days. */
export const MAX_GRACE_PERIOD_SECONDS = 604_800;
export const DEFAULT_GRACE_PERIOD_SECONDS = 86_400;

/**
 * One row per webhook `webhook` (an SQL expression for its id): its live previous secrets, newest
 * first, and whether it still has expired ones to delete. A lateral subquery, so the claim reads a
 * webhook's secrets in its own statement, one index probe per row it claims.
 */
export const previousSecretsOf = (webhook: string) => `
  select coalesce(array_agg(p.secret_encrypted order by p.seq desc) filter (where p.expires_at > now()), '{}') as previous_secrets_encrypted,
         coalesce(bool_or(p.expires_at <= now()), false) as secrets_expired
  from webhook_previous_secret p
  where p.webhook_id = ${webhook}`;

export interface PreviousSecrets {
  /** Live previous secrets, encrypted, newest first. */
  previousSecretsEncrypted: string[];
  /** The webhook has expired previous secrets still stored. */
  secretsExpired: boolean;
}

interface PreviousSecretsRow {
  previous_secrets_encrypted: string[];
  secrets_expired: boolean;
}

export const toPreviousSecrets = (row: PreviousSecretsRow): PreviousSecrets => ({
  previousSecretsEncrypted: row.previous_secrets_encrypted,
  secretsExpired: row.secrets_expired,
});

export async function previousSecrets(em: EntityManager, webhookId: string): Promise<PreviousSecrets> {
  const [row] = await runStatement<PreviousSecretsRow>(em, previousSecretsOf('$1::text'), [webhookId]);
  return toPreviousSecrets(row!);
}

/**
 * In the rotation's transaction, which holds the webhook's row: keeps `encrypted` (the secret
 * being replaced) live for `graceSeconds`, then deletes the webhook's expired previous secrets and
 * those past the newest MAX_PREVIOUS_SECRETS. Answers when the retired secret expires (the
 * database's clock, which the claim compares with). With a grace of 0 it expires at once.
 */
export async function retireSecret(em: EntityManager, webhookId: string, encrypted: string, graceSeconds: number): Promise<Date> {
  const connection = em.getConnection();
  const transaction = em.getTransactionContext<Knex.Transaction>();
  const [retired] = await connection.execute<{ expires_at: Date }[]>(
    `insert into webhook_previous_secret (webhook_id, secret_encrypted, expires_at)
     values (?, ?, now() + ? * interval '1 second') returning expires_at`,
    [webhookId, encrypted, graceSeconds],
    'all',
    transaction,
  );
  await connection.execute(
    `delete from webhook_previous_secret
     where webhook_id = ?
       and (expires_at <= now()
            or seq <= (select seq from webhook_previous_secret where webhook_id = ? order by seq desc offset ? limit 1))`,
    [webhookId, webhookId, MAX_PREVIOUS_SECRETS],
    'run',
    transaction,
  );
  return new Date(retired!.expires_at);
}

/** Deletes expired previous secrets: of one webhook, or of every webhook (`null`). Answers how many. */
export async function deleteExpiredSecrets(em: EntityManager, webhookId: string | null): Promise<number> {
  const rows =
    webhookId === null
      ? await runStatement(em, 'delete from webhook_previous_secret where expires_at <= now() returning seq', [])
      : await runStatement(em, 'delete from webhook_previous_secret where webhook_id = $1 and expires_at <= now() returning seq', [webhookId]);
  return rows.length;
}
