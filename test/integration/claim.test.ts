// The claim statement itself (CLAIM_SQL through claimDue), on seeded rows: what it sends now, which
// spare rows it leases beside them, and how the leases of other workers and the claiming worker's
// own requests and spares bound both. Each test seeds webhooks of its own.
import { randomBytes } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connections.js';
import { migrate } from '../../src/db/orm.js';
import { claimDue, type Claimed, type HeldShare } from '../../src/worker/claim.js';
import { releaseLeases } from '../../src/worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

const LEASE_MS = 40_000;
const SPARE_LEASE_MS = 50_000;
const CAP = 2;

let database: TestDatabase;
let db: Database;
const em = (): EntityManager => db.orm.em.fork();

beforeAll(async () => {
  database = await createTestDatabase();
  db = await openDatabase({ databaseUrl: database.env['DATABASE_URL'], dataDir: database.dataDir });
  await migrate(db);
});

afterAll(async () => {
  await db?.close();
  await database?.drop();
});

/**
 * Webhooks with `due` pending deliveries each, due a minute ago, oldest first in the given order;
 * owned by `tenants[i]` (one tenant when left out).
 */
async function seed(due: number[], tenants: string[] = []): Promise<string[]> {
  const tag = randomBytes(6).toString('hex');
  // Ids in the gateway's shape (the claim checks the ids it is given): 20 characters after the prefix.
  const hooks = due.map((_, i) => `wh_claimx${tag}x${i}`);
  const conn = em().getConnection();
  // The claim looks at every webhook: each test starts from an empty queue.
  await conn.execute('delete from webhook');
  await conn.execute('delete from event');
  for (const [i, id] of hooks.entries()) {
    const tenant = tenants[i] ?? 'claim-tests';
    await conn.execute(
      `insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
       values (?, ?, ?, 'https://receiver.example/hook', 'x', array['drift.detected'], true, now(), now())`,
      [id, tenant, `hook ${i}`],
    );
    // One event per delivery, as publishing makes them (a webhook gets one delivery of an event).
    await conn.execute(
      `insert into event (id, tenant_id, type, data, delivery_count, published_at)
       select 'evt_cl${tag}x' || ? || 'n' || lpad(n::text, 3, '0'), ?, 'drift.detected', '{}', 1, now() from generate_series(1, ?) n`,
      [i, tenant, due[i]],
    );
    await conn.execute(
      `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, created_at, updated_at)
       select 'del_cl${tag}x' || ? || 'n' || lpad(n::text, 3, '0'), 'evt_cl${tag}x' || ? || 'n' || lpad(n::text, 3, '0'), ?, ?, 'drift.detected', 'pending', 0,
              now() - interval '1 minute' + (? * interval '1 second') + (n * interval '1 millisecond'), now(), now()
       from generate_series(1, ?) n`,
      [i, i, id, tenant, i, due[i]],
    );
  }
  return hooks;
}

/** One worker's view of what it holds, as the scheduler keeps it. */
class Worker {
  readonly open = new Map<string, string[]>();
  readonly spares = new Map<string, string[]>();
  /** Requests that ended and whose record is being written: still leased, no longer open. */
  readonly recording: string[] = [];

  /** `slots`: the worker's slots, free or not (by default `limit`, a worker holding nothing). */
  async claim(limit: number, slots?: number): Promise<Claimed> {
    const shares: HeldShare[] = [...new Set([...this.open.keys(), ...this.spares.keys()])].map((webhookId) => ({
      webhookId,
      open: this.open.get(webhookId)?.length ?? 0,
      spares: this.spares.get(webhookId)?.length ?? 0,
    }));
    const heldIds = [...this.open.values(), ...this.spares.values(), this.recording].flat();
    const claimed = await claimDue(em(), { limit, slots, perWebhookCap: CAP, leaseMs: LEASE_MS, spareLeaseMs: SPARE_LEASE_MS, heldIds, shares });
    for (const d of claimed.send) this.open.set(d.webhookId, [...(this.open.get(d.webhookId) ?? []), d.id]);
    for (const d of claimed.spares) this.spares.set(d.webhookId, [...(this.spares.get(d.webhookId) ?? []), d.id]);
    return claimed;
  }

  /** A request ends and, as the scheduler does, the next spare of that webhook is sent in its place. */
  endRequest(webhookId: string): void {
    const open = this.open.get(webhookId)!;
    this.recording.push(open.shift()!);
    const spare = this.spares.get(webhookId)?.shift();
    if (spare) open.push(spare);
  }
}

const byHook = (claimed: Claimed, hook: string) => ({
  send: claimed.send.filter((d) => d.webhookId === hook).length,
  spares: claimed.spares.filter((d) => d.webhookId === hook).length,
});

/** The attempt's record committed: the delivery is done and its lease gone. */
async function recorded(id: string): Promise<void> {
  await em().getConnection().execute(`update delivery set status = 'success', lease_expires_at = null where id = ?`, [id]);
}

async function leaseSeconds(ids: string[]): Promise<number[]> {
  const rows = await em()
    .getConnection()
    .execute<{ s: number }[]>(
      `select extract(epoch from lease_expires_at - now())::float8 as s from delivery where id in (select jsonb_array_elements_text(?::jsonb)) order by id`,
      [JSON.stringify(ids)],
    );
  return rows.map((r) => Number(r.s));
}

describe('claiming due deliveries, with spare rows', () => {
  it('a fresh claim sends up to the cap on each webhook and leases one spare behind each request, for longer', async () => {
    const [a, b] = await seed([6, 6]);
    const claimed = await new Worker().claim(10);
    expect(byHook(claimed, a!)).toEqual({ send: CAP, spares: CAP });
    expect(byHook(claimed, b!)).toEqual({ send: CAP, spares: CAP });
    // The oldest rows are sent, the next ones held.
    const idsOfA = (list: { id: string; webhookId: string }[]) => list.filter((d) => d.webhookId === a).map((d) => d.id.slice(-3));
    expect(idsOfA(claimed.send).sort()).toEqual(['001', '002']);
    expect(idsOfA(claimed.spares).sort()).toEqual(['003', '004']);
    for (const s of await leaseSeconds(claimed.send.map((d) => d.id))) expect(s).toBeCloseTo(LEASE_MS / 1000, -1);
    for (const s of await leaseSeconds(claimed.spares.map((d) => d.id))) expect(s).toBeCloseTo(SPARE_LEASE_MS / 1000, -1);
  });

  it('another worker gets nothing of a webhook whose requests and spares reach the cap, and no spares beside another worker', async () => {
    const [a] = await seed([8]);
    const first = new Worker();
    const second = new Worker();
    expect(byHook(await first.claim(10), a!)).toEqual({ send: CAP, spares: CAP });
    expect(byHook(await second.claim(10), a!)).toEqual({ send: 0, spares: 0 });
    // The first worker's spares handed back: its requests still hold the cap.
    await releaseLeases(em(), first.spares.get(a!)!);
    first.spares.delete(a!);
    expect(byHook(await second.claim(10), a!)).toEqual({ send: 0, spares: 0 });
    // One of its requests ends and is recorded: the second worker may open one, with no spare,
    // since the first still holds a lease of the webhook.
    await recorded(first.open.get(a!)!.shift()!);
    expect(byHook(await second.claim(10), a!)).toEqual({ send: 1, spares: 0 });
    expect(byHook(await first.claim(10), a!)).toEqual({ send: 0, spares: 0 });
  });

  it('the claiming worker tops its spares up while its own requests hold the cap, never past one per request', async () => {
    const [a] = await seed([10]);
    const worker = new Worker();
    expect(byHook(await worker.claim(10), a!)).toEqual({ send: CAP, spares: CAP });
    // Nothing ended: requests and spares are both full.
    expect(byHook(await worker.claim(10), a!)).toEqual({ send: 0, spares: 0 });
    // Both requests end and the spares take their place: the cap is still held by requests, and
    // the claim leases new spares behind them instead of sending anything.
    worker.endRequest(a!);
    worker.endRequest(a!);
    expect(byHook(await worker.claim(10), a!)).toEqual({ send: 0, spares: CAP });
    worker.endRequest(a!);
    expect(byHook(await worker.claim(10), a!)).toEqual({ send: 0, spares: 1 });
  });

  it('free worker slots go to the oldest-waiting webhooks, and only a webhook given a request gets spares', async () => {
    const [older, newer] = await seed([5, 5]);
    const claimed = await new Worker().claim(1);
    expect(byHook(claimed, older!)).toEqual({ send: 1, spares: 1 });
    expect(byHook(claimed, newer!)).toEqual({ send: 0, spares: 0 });
  });

  it('spares never outnumber the rows due', async () => {
    const [a] = await seed([3]);
    const claimed = await new Worker().claim(10);
    expect(byHook(claimed, a!)).toEqual({ send: CAP, spares: 1 });
  });
});

describe('claiming due deliveries, shared between tenants', () => {
  const sendsOf = (claimed: Claimed, hooks: string[]) => claimed.send.filter((d) => hooks.includes(d.webhookId)).length;
  const tenantsOf = (count: number, tenant: string) => Array.from({ length: count }, () => tenant);

  it("a lone tenant gets every slot but the reserved one, and its webhooks take turns in them", async () => {
    // Ten webhooks with five rows due each: far more than the worker's 12 slots could take. A
    // sixteenth of 12 slots, rounded up, is one slot kept for another tenant.
    const hooks = await seed(Array<number>(10).fill(5));
    const claimed = await new Worker().claim(12, 12);
    expect(claimed.send).toHaveLength(11);
    // One request to each webhook first, rather than the cap to the first ones.
    expect(new Set(claimed.send.map((d) => d.webhookId))).toEqual(new Set(hooks));
  });

  it("the reserved slot starts another tenant's work at once, and a tenant over its new share gets nothing more", async () => {
    const hog = await seed(Array<number>(10).fill(5), tenantsOf(10, 'hog'));
    const worker = new Worker();
    expect(sendsOf(await worker.claim(12, 12), hog)).toBe(11);
    // Another tenant's rows come due while the hog's eleven requests hang: the one slot left goes
    // to it. Two tenants with work now share the 12 slots, 6 each: the hog is over its share.
    const calm = await addWebhook('calm', 3);
    const claimed = await worker.claim(1, 12);
    expect(sendsOf(claimed, hog)).toBe(0);
    expect(sendsOf(claimed, [calm])).toBe(1);
    // Five of the hog's requests end and are recorded: it is down to its share (6), not under it,
    // so the free slots go to the other tenant, up to its webhook's cap.
    for (const id of hog.slice(0, 5)) await recorded(worker.open.get(id)!.shift()!);
    const after = await worker.claim(5, 12);
    expect(sendsOf(after, hog)).toBe(0);
    expect(sendsOf(after, [calm])).toBe(CAP - 1);
  });

  it('free slots go round-robin over tenants, the longest-waiting tenant first', async () => {
    // The hog's rows are all older, yet each tenant gets every other slot: with 6 free of 32
    // (2 reserved), the hog's first and second rows and the other tenant's first and second.
    const hooks = await seed([5, 5, 5, 5], ['hog', 'hog', 'hog', 'calm']);
    const claimed = await new Worker().claim(6, 32);
    expect(sendsOf(claimed, hooks.slice(0, 3))).toBe(2);
    expect(sendsOf(claimed, [hooks[3]!])).toBe(2);
    // With one free slot, the tenant waiting longest.
    const [older] = await seed([5, 5], ['hog', 'calm']);
    const one = await new Worker().claim(1, 32);
    expect(one.send.map((d) => d.webhookId)).toEqual([older]);
  });
});

/** A webhook of `tenant` with `due` rows due now (newer than every seeded row), added to the queue as it is. */
async function addWebhook(tenant: string, due: number): Promise<string> {
  const tag = randomBytes(6).toString('hex');
  const id = `wh_claimy${tag}x0`;
  const conn = em().getConnection();
  await conn.execute(
    `insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
     values (?, ?, 'added', 'https://receiver.example/hook', 'x', array['drift.detected'], true, now(), now())`,
    [id, tenant],
  );
  await conn.execute(
    `insert into event (id, tenant_id, type, data, delivery_count, published_at)
     select 'evt_cy${tag}x' || lpad(n::text, 5, '0'), ?, 'drift.detected', '{}', 1, now() from generate_series(1, ?) n`,
    [tenant, due],
  );
  await conn.execute(
    `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, created_at, updated_at)
     select 'del_cy${tag}x' || lpad(n::text, 5, '0'), 'evt_cy${tag}x' || lpad(n::text, 5, '0'), ?, ?, 'drift.detected', 'pending', 0,
            now() - interval '1 second', now(), now()
     from generate_series(1, ?) n`,
    [id, tenant, due],
  );
  return id;
}
