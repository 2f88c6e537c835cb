import { Migration } from '@mikro-orm/migrations';

// The whole first schema. `seq` columns give a total order for "newest first" listings, which
// timestamps alone cannot (two rows can share a microsecond).
export class Migration20261128000000_initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table webhook (
        id text primary key,
        seq bigint generated always as identity,
        tenant_id text not null,
        name text not null,
        url text not null,
        events text[] not null,
        enabled boolean not null default true,
        secret_encrypted text not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        last_delivery_status text null check (last_delivery_status in ('success', 'failed')),
        last_delivery_at timestamptz null
      );`);
    this.addSql(`create index webhook_tenant_seq_idx on webhook (tenant_id, seq desc);`);

    this.addSql(`
      create table api_key (
        id text primary key,
        seq bigint generated always as identity,
        tenant_id text not null,
        name text not null,
        prefix text not null,
        key_hash text not null unique,
        created_at timestamptz not null default now(),
        last_used_at timestamptz null,
        revoked_at timestamptz null
      );`);
    this.addSql(`create index api_key_tenant_seq_idx on api_key (tenant_id, seq desc);`);

    this.addSql(`
      create table event (
        id text primary key,
        tenant_id text not null,
        type text not null,
        data jsonb not null,
        published_at timestamptz not null default now(),
        idempotency_key text null,
        delivery_count integer not null default 0
      );`);
    // Idempotency is per tenant: two tenants may use the same key.
    this.addSql(
      `create unique index event_tenant_idempotency_uq on event (tenant_id, idempotency_key) where idempotency_key is not null;`,
    );

    this.addSql(`
      create table delivery (
        id text primary key,
        event_id text not null references event (id) on delete cascade,
        webhook_id text not null references webhook (id) on delete cascade,
        tenant_id text not null,
        event_type text not null,
        status text not null check (status in ('pending', 'success', 'failed', 'cancelled')),
        attempts integer not null default 0,
        next_attempt_at timestamptz null,
        lease_expires_at timestamptz null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );`);
    // The scheduler only ever looks at pending rows by due time; keeping the index partial keeps it
    // small however much history piles up.
    this.addSql(
      `create index delivery_due_idx on delivery (next_attempt_at) where status = 'pending';`,
    );
    // Per-webhook heads of the queue: the claim takes the oldest due rows of each webhook and
    // counts each webhook's leased rows, both through this index.
    this.addSql(
      `create index delivery_pending_webhook_idx on delivery (webhook_id, next_attempt_at) where status = 'pending';`,
    );
    this.addSql(`create index delivery_webhook_idx on delivery (webhook_id);`);
    this.addSql(`create index delivery_event_idx on delivery (event_id);`);

    this.addSql(`
      create table delivery_attempt (
        id text primary key,
        seq bigint generated always as identity,
        delivery_id text not null references delivery (id) on delete cascade,
        webhook_id text not null references webhook (id) on delete cascade,
        tenant_id text not null,
        event_type text not null,
        attempt integer not null,
        status text not null check (status in ('success', 'failed')),
        response_code integer null,
        duration_ms integer not null,
        request_headers jsonb not null,
        request_body text not null,
        response_headers jsonb null,
        response_body text null,
        response_body_truncated boolean not null default false,
        error text null,
        error_class text null,
        created_at timestamptz not null default now(),
        next_retry_at timestamptz null
      );`);
    this.addSql(
      `create index delivery_attempt_webhook_seq_idx on delivery_attempt (webhook_id, seq desc);`,
    );
    this.addSql(`create index delivery_attempt_delivery_idx on delivery_attempt (delivery_id);`);
    this.addSql(`create index delivery_attempt_created_idx on delivery_attempt (created_at);`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists delivery_attempt, delivery, event, api_key, webhook cascade;`);
  }
}
