import { Migration } from '@mikro-orm/migrations';

// A resend starts the retry schedule again from its first step while the attempt count goes on,
// so a delivery keeps the count at which its current schedule started: the next retry's wait is
// the schedule's step number (attempts - schedule_start). A constant default makes the new column
// free to add on a large table (no rewrite).
export class Migration20261204163000_resend extends Migration {
  override async up(): Promise<void> {
    this.addSql('alter table delivery add column schedule_start integer not null default 0;');
  }

  override async down(): Promise<void> {
    this.addSql('alter table delivery drop column if exists schedule_start;');
  }
}
