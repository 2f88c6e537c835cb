import { Migration } from '@mikro-orm/migrations';

// When a webhook's current run of failures began: set when one of its deliveries reaches
// `failed` while it is null, cleared by its next successful attempt. The operational events
// (webhook.failing, webhook.recovered) fire on these two changes, so each fires once per
// transition, however many deliveries fail meanwhile.
export class Migration20261204181000_webhook_failing_since extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table webhook add column failing_since timestamptz null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table webhook drop column failing_since;`);
  }
}
