import { Migration } from '@mikro-orm/migrations';

// Bulk recover. A recovery is a row that workers move on in bounded batches, each in a short
// transaction that locks the row (for update skip locked), so a recovery survives a restart and
// two processes never run the same batch; `cursor_*` is where the next batch starts.
// - One delivery per (event, webhook), by a unique index: a recover that creates the deliveries a
//   webhook missed inserts `on conflict do nothing`, so a second recover (or a batch run again)
//   never makes a second copy. It also serves every lookup by event, which the plain index did.
// - The failed deliveries of a webhook, in id order (the order a recovery walks them), without
//   reading the webhook's whole history; partial, so it holds only failed rows.
// - A tenant's events by publish time, for the deliveries a webhook missed in a window.
export class Migration20261204180000_recovery extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create unique index delivery_event_webhook_uq on delivery (event_id, webhook_id);`);
    this.addSql(`drop index if exists delivery_event_idx;`);
    this.addSql(`create index delivery_failed_webhook_idx on delivery (webhook_id, id) where status = 'failed';`);
    this.addSql(`create index event_tenant_published_idx on event (tenant_id, published_at, id);`);
    this.addSql(`
      create table recovery (
        id text primary key,
        tenant_id text not null,
        webhook_id text not null references webhook (id) on delete cascade,
        since timestamptz not null,
        until timestamptz not null,
        include_missed boolean not null,
        status text not null check (status in ('running', 'completed')),
        phase text not null check (phase in ('failed', 'missed', 'done')),
        cursor_id text null,
        cursor_at timestamptz null,
        total integer not null,
        queued integer not null default 0,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        completed_at timestamptz null
      );`);
    this.addSql(`create index recovery_webhook_idx on recovery (webhook_id);`);
    this.addSql(`create index recovery_running_idx on recovery (created_at) where status = 'running';`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists recovery;`);
    this.addSql(`drop index if exists event_tenant_published_idx;`);
    this.addSql(`drop index if exists delivery_failed_webhook_idx;`);
    this.addSql(`create index if not exists delivery_event_idx on delivery (event_id);`);
    this.addSql(`drop index if exists delivery_event_webhook_uq;`);
  }
}
