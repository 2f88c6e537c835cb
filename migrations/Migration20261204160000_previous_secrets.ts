import { Migration } from '@mikro-orm/migrations';

// A webhook's previous signing secrets, each live until its expires_at: while one is, every
// attempt is signed with it too, so receivers can move to a rotated secret without a gap. They
// are encrypted like webhook.secret_encrypted. `seq` orders them newest first (the signature
// header lists them so). The claim loads a webhook's secrets with its rows through
// webhook_previous_secret_webhook_idx; the worker's sweep of expired ones uses
// webhook_previous_secret_expires_idx.
export class Migration20261204160000_previous_secrets extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table webhook_previous_secret (
        seq bigint generated always as identity primary key,
        webhook_id text not null references webhook (id) on delete cascade,
        secret_encrypted text not null,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null
      );`);
    this.addSql('create index webhook_previous_secret_webhook_idx on webhook_previous_secret (webhook_id, seq);');
    this.addSql('create index webhook_previous_secret_expires_idx on webhook_previous_secret (expires_at);');
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists webhook_previous_secret;');
  }
}
