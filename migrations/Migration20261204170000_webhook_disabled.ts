import { Migration } from '@mikro-orm/migrations';

// Why a webhook is disabled and since when, and what the auto-disable rule reads: the time of the
// webhook's newest successful attempt (kept by the attempt record) and of its last enabling
// (creation, or a PUT that enabled it again), so a webhook enabled again gets a full window.
export class Migration20261204170000_webhook_disabled extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table webhook
      add column disabled_reason text null,
      add column disabled_at timestamptz null,
      add column last_success_at timestamptz null,
      add column enabled_at timestamptz not null default now();`);
    this.addSql(`update webhook set enabled_at = created_at;`);
    this.addSql(`update webhook set disabled_reason = 'manual', disabled_at = updated_at where not enabled;`);
    this.addSql(`update webhook w set last_success_at = (
      select max(a.created_at) from delivery_attempt a where a.webhook_id = w.id and a.status = 'success');`);
    this.addSql(`alter table webhook add constraint webhook_disabled_reason_check
      check (disabled_reason in ('manual', 'failing', 'gone') and not enabled and disabled_at is not null
             or disabled_reason is null and enabled and disabled_at is null);`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table webhook drop constraint webhook_disabled_reason_check;`);
    this.addSql(`alter table webhook drop column disabled_reason, drop column disabled_at, drop column last_success_at, drop column enabled_at;`);
  }
}
