import { Migration } from '@mikro-orm/migrations';

// The claim now finds each webhook's queue head through delivery_pending_webhook_idx and counts
// its leased (in-flight) rows through delivery_leased_idx. Recording an attempt, cancelling and
// handing a lease back all clear lease_expires_at, so that index only ever holds the rows being
// sent right now (and leases a dead worker left behind until they are claimed again): counting
// them costs the same however long the queue behind them is. delivery_due_idx served the claim's
// old pass over every due row; nothing needs it any more, and every delivery written paid for it.
export class Migration20261128000200_leased_index extends Migration {
  override async up(): Promise<void> {
    this.addSql('create index delivery_leased_idx on delivery (webhook_id) where lease_expires_at is not null;');
    this.addSql('drop index if exists delivery_due_idx;');
  }

  override async down(): Promise<void> {
    this.addSql(`create index delivery_due_idx on delivery (next_attempt_at) where status = 'pending';`);
    this.addSql('drop index if exists delivery_leased_idx;');
  }
}
