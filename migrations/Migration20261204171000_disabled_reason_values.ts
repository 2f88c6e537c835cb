import { Migration } from '@mikro-orm/migrations';

// The check on disabled_reason holds its values only: tying it to `enabled` refused a plain
// `update webhook set enabled = true` by an operator, which the API's own changes never need.
export class Migration20261204171000_disabled_reason_values extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table webhook drop constraint webhook_disabled_reason_check;`);
    this.addSql(`alter table webhook add constraint webhook_disabled_reason_check check (disabled_reason in ('manual', 'failing', 'gone'));`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table webhook drop constraint webhook_disabled_reason_check;`);
    this.addSql(`alter table webhook add constraint webhook_disabled_reason_check
      check (disabled_reason in ('manual', 'failing', 'gone') and not enabled and disabled_at is not null
             or disabled_reason is null and enabled and disabled_at is null);`);
  }
}
