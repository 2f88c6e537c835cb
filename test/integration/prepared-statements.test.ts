// The delivery path's prepared statements (src/db/statements.ts): they run on connections whose
// planner may only use index probes and nested loops, with generic plans, so that a plan made on
// a fresh, empty database stays an index plan as the tables grow. Real Postgres only: the
// embedded database plans them per call.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/connections.js';
import { migrate } from '../../src/db/orm.js';
import { PREPARED_PLANNER_SETTINGS } from '../../src/db/statements.js';
import { claimDue, CLAIM_SQL } from '../../src/worker/claim.js';
import { RECORD_SQL } from '../../src/worker/queue.js';
import { PUBLISH_MANY, PUBLISH_TO_SUBSCRIBERS } from '../../src/modules/events/event.service.js';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { createWebhook, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

/** The nodes of the plan that `explain (format json)` (with `analyze`, when asked) gives for `statement`. */
async function planNodes(c: pg.Client, statement: string, options: { analyze?: boolean } = {}): Promise<PlanNode[]> {
  const explain = options.analyze ? 'explain (analyze, format json)' : 'explain (format json)';
  const [row] = (await c.query(`${explain} ${statement}`)).rows as { 'QUERY PLAN': [{ Plan: PlanNode }] }[];
  return nodesOf(row!['QUERY PLAN'][0].Plan);
}

type Value = string | number | null;

/** Values as SQL literals, for an EXECUTE's argument list. */
const literals = (values: Value[]) =>
  values.map((v) => (v === null ? 'null' : pg.Client.prototype.escapeLiteral(String(v)))).join(', ');

type Name = 'publish' | 'publish_many' | 'claim' | 'record';
const statements: Record<Name, { text: string; values: Value[] }> = {
  publish: {
    text: PUBLISH_TO_SUBSCRIBERS,
    values: ['evt_plan', 'tenant-0', 'drift.detected', '{}', null, null, '[]'],
  },
  publish_many: {
    text: PUBLISH_MANY,
    values: [
      JSON.stringify(
        ['evt_plan_a', 'evt_plan_b'].map((id) => ({ id, tenant_id: 'tenant-0', type: 'drift.detected', data: {}, idempotency_key: null, notices: [] })),
      ),
    ],
  },
  // 64 slots in all, 36 of them free: with the 4 kept for other tenants, 32 to send.
  claim: { text: CLAIM_SQL, values: [4, 36, 40_000, 50_000, '{}', '{}', '{}', '{}', 64] },
  record: { text: RECORD_SQL, values: ['[]'] },
};

/** Prepares every statement on `c` (the first execution makes the generic plan) and answers a plan reader. */
async function prepareAll(c: pg.Client) {
  for (const [name, s] of Object.entries(statements)) {
    await c.query('begin');
    await c.query({ name, text: s.text, values: s.values });
    await c.query('rollback');
  }
  return async (name: Name): Promise<PlanNode[]> => {
    await c.query('begin');
    try {
      return await planNodes(c, `execute ${name}(${literals(statements[name].values)})`);
    } finally {
      await c.query('rollback');
    }
  };
}

const scans = (nodes: PlanNode[]) => nodes.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name']);
const joins = (nodes: PlanNode[]) => nodes.filter((n) => ['Hash Join', 'Merge Join'].includes(n['Node Type'])).map((n) => n['Node Type']);
const indexes = (nodes: PlanNode[]) => new Set(nodes.map((n) => n['Index Name']).filter(Boolean));

describe.skipIf(!onRealPostgres)('prepared delivery statements (real Postgres)', () => {
  let database: TestDatabase;
  let db: Database;
  const clients: pg.Client[] = [];

  async function connect(settings: boolean): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    clients.push(c);
    if (settings) for (const [name, value] of Object.entries(PREPARED_PLANNER_SETTINGS)) await c.query(`set ${name} = ${value}`);
    else await c.query('set plan_cache_mode = force_generic_plan');
    return c;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ databaseUrl: database.url, dataDir: database.dataDir });
    await migrate(db);
  });

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    await db?.close();
    await database?.drop();
  });

  it('the statement pool prepares the claim once per connection and reuses its generic plan', async () => {
    const em = db.orm.em.fork();
    for (let i = 0; i < 3; i += 1) await claimDue(em, { limit: 8, perWebhookCap: 4, leaseMs: 40_000 });
    const c = await db.statements!.connect();
    try {
      for (const [name, value] of Object.entries(PREPARED_PLANNER_SETTINGS)) {
        expect((await c.query(`select current_setting($1) as v`, [name])).rows[0].v, name).toBe(value);
      }
      // pg-pool hands out the connection released last, so this is the one the claims ran on.
      // The claim is PREPAREd in SQL (it runs in one simple-protocol query with its lock).
      const { rows } = await c.query(
        'select generic_plans, custom_plans from pg_prepared_statements where from_sql and position($1 in statement) > 0',
        [CLAIM_SQL],
      );
      expect(rows).toHaveLength(1);
      expect(Number(rows[0].generic_plans)).toBeGreaterThanOrEqual(3);
      expect(Number(rows[0].custom_plans)).toBe(0);
    } finally {
      c.release();
    }
  });

  it('a connection the server drops while it is checked out fails quietly and is replaced', async () => {
    const c = await db.statements!.connect();
    const { pid } = (await c.query('select pg_backend_pid() as pid')).rows[0] as { pid: number };
    const admin = await connect(false);
    const ended = new Promise((resolve) => c.once('end', resolve));
    await admin.query('select pg_terminate_backend($1)', [pid]);
    await ended;
    c.release();
    // The next claim gets a fresh connection; the dropped one raised no uncaught error.
    await expect(claimDue(db.orm.em.fork(), { limit: 8, perWebhookCap: 4, leaseMs: 40_000 })).resolves.toEqual({ send: [], spares: [] });
  });

  it('plans made on empty tables stay index probes as the tables grow', async () => {
    const tuned = await prepareAll(await connect(true));
    const plain = await prepareAll(await connect(false));

    // The trap the settings avoid: on empty tables the default planner's generic plans scan whole tables.
    const plainScans: (string | undefined)[] = [];
    for (const name of ['publish', 'publish_many', 'claim', 'record'] as const) plainScans.push(...scans(await plain(name)));
    expect(plainScans.length).toBeGreaterThan(0);

    const admin = await connect(false);
    await admin.query(`
      insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
      select 'wh_plan_' || i, 'tenant-' || (i % 20), 'hook ' || i, 'https://example.test/' || i, 'x',
             array['drift.detected'], true, now(), now()
      from generate_series(1, 200) i`);
    await admin.query(`
      insert into event (id, tenant_id, type, data, delivery_count, published_at)
      select 'evt_plan_' || i, 'tenant-' || (i % 20), 'drift.detected', '{}', 1, now()
      from generate_series(1, 20000) i`);
    await admin.query(`
      insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, created_at, updated_at)
      select 'del_plan_' || i, 'evt_plan_' || i, 'wh_plan_' || (1 + i % 200), 'tenant-' || (i % 20), 'drift.detected',
             case when i % 2 = 0 then 'pending' else 'success' end, 0,
             case when i % 2 = 0 then now() - interval '1 minute' end, now(), now()
      from generate_series(1, 20000) i`);

    for (const name of ['publish', 'publish_many', 'claim', 'record'] as const) {
      const nodes = await tuned(name);
      expect({ name, scans: scans(nodes), joins: joins(nodes) }).toEqual({ name, scans: [], joins: [] });
    }
    const claim = indexes(await tuned('claim'));
    expect(claim).toContain('delivery_pending_webhook_idx');
    expect(claim).toContain('delivery_leased_idx');
    expect(indexes(await tuned('publish'))).toContain('webhook_tenant_seq_idx');
    expect(indexes(await tuned('publish_many'))).toContain('webhook_tenant_seq_idx');

    // The record finds its rows by id, never by reading a webhook's whole history in its index.
    const record = indexes(await tuned('record'));
    expect(record).toContain('delivery_pkey');
    expect(record).not.toContain('delivery_webhook_idx');
  });

  it('publishing probes each event tenant’s webhooks, even when statistics show one tenant', async () => {
    // Planned while every webhook belongs to one tenant, a join would read them all at once and
    // keep doing so for every batch once there are many tenants. Done in a transaction that is
    // rolled back (ANALYZE included), so the other tests' tables stay as they are.
    const c = await connect(true);
    await c.query('begin');
    try {
      await c.query('delete from webhook');
      await c.query(`
        insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
        select 'wh_solo_' || i, 'tenant-solo', 'hook ' || i, 'https://example.test/' || i, 'x', array['drift.detected'], true, now(), now()
        from generate_series(1, 10) i`);
      await c.query('analyze webhook');
      for (const name of ['publish', 'publish_many'] as const) {
        const s = statements[name];
        await c.query(`prepare solo_${name} as ${s.text}`);
        const probes = (await planNodes(c, `execute solo_${name}(${literals(s.values)})`)).filter((n) => n['Relation Name'] === 'webhook');
        expect(probes.length, name).toBeGreaterThan(0);
        // An index scan's Index Cond, or a bitmap heap scan's Recheck Cond (its index scan's).
        for (const probe of probes) expect(probe['Index Cond'] ?? probe['Recheck Cond'] ?? '', name).toContain('tenant_id');
      }
    } finally {
      await c.query('rollback');
    }
  });

  it('a batched publish does work in proportion to its deliveries, not to events times deliveries', async () => {
    // 20 events to 40 webhooks: 800 deliveries. Counted from EXPLAIN ANALYZE (rows read from the
    // statement's own intermediate results, and rows looked at and dropped by a filter), so the
    // check is on the work done, not on time. Rolled back like the test above.
    const c = await connect(true);
    await c.query('begin');
    try {
      await c.query(`
        insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
        select 'wh_wide_' || i, 'tenant-wide', 'hook ' || i, 'https://example.test/' || i, 'x', array['drift.detected'], true, now(), now()
        from generate_series(1, 40) i`);
      const input = Array.from({ length: 20 }, (_, i) => ({
        id: `evt_wide_${i}`,
        tenant_id: 'tenant-wide',
        type: 'drift.detected',
        data: { i },
        idempotency_key: null,
        notices: [],
      }));
      await c.query(`prepare wide_publish(json) as ${PUBLISH_MANY}`);
      await c.query(`prepare wide_publish_one as ${PUBLISH_TO_SUBSCRIBERS}`);
      const work = async (execute: string) => {
        const nodes = await planNodes(c, execute, { analyze: true });
        const loops = (n: PlanNode) => n['Actual Loops'] ?? 1;
        const cteRowsRead = nodes.filter((n) => n['Node Type'] === 'CTE Scan').reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) * loops(n), 0);
        const rowsDropped = nodes.reduce(
          (sum, n) => sum + ((n['Rows Removed by Filter'] ?? 0) + (n['Rows Removed by Join Filter'] ?? 0)) * loops(n),
          0,
        );
        return cteRowsRead + rowsDropped;
      };
      const batch = await work(`execute wide_publish(${c.escapeLiteral(JSON.stringify(input))})`);
      // The single-event statement likewise: one event, 40 deliveries.
      const one = await work(`execute wide_publish_one('evt_wide_one', 'tenant-wide', 'drift.detected', '{}', null, null, '[]')`);
      const delivered = await c.query(`select count(*)::int as n from delivery where event_id like 'evt_wide_%'`);
      expect(delivered.rows[0].n).toBe(840);
      expect(batch).toBeLessThan(10 * 800);
      expect(one).toBeLessThan(10 * 40);
    } finally {
      await c.query('rollback');
    }
  });

  it('a claim reads the leases once, however many webhooks have rows due', async () => {
    // 50 webhooks with due rows, two of each leased to another worker. Counted from EXPLAIN
    // ANALYZE: the lease count is one pass over delivery_leased_idx, not one per webhook (a CTE
    // inlined into the per-webhook join would run once per head). Rolled back like the tests above.
    const c = await connect(true);
    await c.query('begin');
    try {
      await c.query('delete from delivery');
      await c.query(`
        insert into webhook (id, tenant_id, name, url, secret_encrypted, events, enabled, created_at, updated_at)
        select 'wh_lease_' || i, 'tenant-lease', 'hook ' || i, 'https://example.test/' || i, 'x', array['drift.detected'], true, now(), now()
        from generate_series(1, 50) i`);
      await c.query(`
        insert into event (id, tenant_id, type, data, delivery_count, published_at)
        select 'evt_lease_' || i, 'tenant-lease', 'drift.detected', '{}', 50, now() from generate_series(1, 5) i`);
      await c.query(`
        insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, lease_expires_at, created_at, updated_at)
        select 'del_lease_' || w || '_' || e, 'evt_lease_' || e, 'wh_lease_' || w, 'tenant-lease', 'drift.detected', 'pending', 0,
               now() - interval '1 minute', case when e <= 2 then now() + interval '1 minute' end, now(), now()
        from generate_series(1, 50) w, generate_series(1, 5) e`);
      await c.query(`prepare lease_claim as ${CLAIM_SQL}`);
      const nodes = await planNodes(c, `execute lease_claim(${literals(statements.claim.values)})`, { analyze: true });
      const leaseScans = nodes.filter((n) => n['Index Name'] === 'delivery_leased_idx');
      expect(leaseScans.length).toBeGreaterThan(0);
      for (const scan of leaseScans) expect(scan['Actual Loops']).toBe(1);
      // And it counted them: with two leased of each, a cap of 4 leaves room for two more per webhook.
      const leased = await c.query(`
        select webhook_id, count(*)::int as n from delivery where lease_expires_at > now() group by webhook_id order by n desc`);
      expect(leased.rows.length).toBe(50);
      expect(leased.rows[0].n).toBeLessThanOrEqual(4);
      expect(leased.rows.reduce((sum, r) => sum + r.n, 0)).toBe(100 + 32);
    } finally {
      await c.query('rollback');
    }
  });
});

describe.skipIf(!onRealPostgres)('DATABASE_PREPARED_STATEMENTS=false (real Postgres)', () => {
  let gw: TestGateway;
  let receiver: Receiver;

  beforeAll(async () => {
    gw = await startTestGateway({ DATABASE_PREPARED_STATEMENTS: 'false', WORKER_POLL_INTERVAL: '100ms' });
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await gw?.close();
  });

  it('publishes, claims and records on the ORM pool', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('unprepared')));
    const hook = await createWebhook(api, { name: 'unprepared', url: `${receiver.url}/unprepared`, events: ['drift.detected'] });
    const res = await api.post('/api/v1/events', { event: 'drift.detected', data: { n: 1 } });
    expect(res.status, res.text).toBe(202);
    await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id && r.json?.event === 'drift.detected', timeoutMs: 10_000 });
    await expect
      .poll(async () => (await historyOf(api, hook.id, '&status=success')).filter((a) => a.event_type === 'drift.detected').length, {
        timeout: 10_000,
      })
      .toBe(1);
    // No statement pool: everything ran on the ORM's pool, planned per call.
    expect(gw.gateway.db.statements).toBeUndefined();
  });
});
