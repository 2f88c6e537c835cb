import { Migration } from '@mikro-orm/migrations';

// Per-tenant request counters shared by every api instance (the layout rate-limiter-flexible's
// Postgres store expects). Created here rather than by the library at run time, so the gateway
// never needs DDL rights after migrating.
export class Migration20261128000100_rate_limit extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table rate_limit (
        key varchar(255) primary key,
        points integer not null default 0,
        expire bigint
      );`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists rate_limit;');
  }
}
