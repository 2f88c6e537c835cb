import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { createWebhook, newSecret, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { cli } from '../helpers/cli.js';
import { killAll, repoRoot, runTsx } from '../helpers/processes.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

describe('command line without a database', { timeout: 120_000 }, () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'gateway-cli-'));
  });
  afterAll(async () => {
    await killAll();
    await rm(scratch, { recursive: true, force: true });
  });

  it('--help lists every command and exits 0', async () => {
    const variants = [['--help'], ['-h'], ['help'], []];
    const results = await Promise.all(variants.map((args) => cli(args)));
    for (const [i, args] of variants.entries()) {
      const result = results[i]!;
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      for (const command of ['migrate', 'api-key create', 'api-key list', 'api-key revoke', 'schema print', 'schema check', 'publish', 'verify']) {
        expect(result.stdout, `${args.join(' ')} lists ${command}`).toContain(command);
      }
    }
  });

  it('runs as a process (`npm run cli`): the output on its streams, the exit code as its status', async () => {
    const [help, usage, stale] = await Promise.all([
      runTsx('src/cli.ts', ['--help'], {}),
      runTsx('src/cli.ts', ['frobnicate'], {}),
      runTsx('src/cli.ts', ['schema', 'check', '--file', path.join(scratch, 'missing.graphql')], {}),
    ]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: gateway-cli');
    expect(help.stderr).toBe('');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('unknown command "frobnicate"');
    expect(usage.stdout).toBe('');
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('is stale');
  });

  it('exits 2 with the usage on a usage error', async () => {
    const cases = [
      ['frobnicate'],
      ['api-key', 'rotate'],
      ['schema'],
      ['api-key', 'create', '--name', 'no tenant'],
      ['publish', '--tenant', 't', '--event', 'drift.detected', '--data', '{not json'],
      ['verify', '--secret', newSecret()],
      ['verify', '--secret', newSecret(), '--body', '{}'],
      ['migrate', '--no-such-option'],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    for (const [i, args] of cases.entries()) {
      const result = results[i]!;
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr, args.join(' ')).toContain('Usage: gateway-cli');
      expect(result.stdout, args.join(' ')).toBe('');
    }
    expect(results[0]!.stderr).toContain('unknown command "frobnicate"');
    expect(results[7]!.stderr).toContain('no-such-option');
  });

  it('`schema print` is the committed schema.graphql; `schema check` passes it and fails a modified copy', async () => {
    const committed = await readFile(path.join(repoRoot, 'schema.graphql'), 'utf8');
    const printed = await cli(['schema', 'print']);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toBe(committed);
    expect(printed.stdout).toContain('type Query');

    const out = path.join(scratch, 'printed.graphql');
    const toFile = await cli(['schema', 'print', '--out', out]);
    expect(toFile.code, toFile.stderr).toBe(0);
    expect(await readFile(out, 'utf8')).toBe(committed);

    const check = await cli(['schema', 'check']);
    expect(check.code, check.stderr).toBe(0);
    const checkCopy = await cli(['schema', 'check', '--file', out]);
    expect(checkCopy.code, checkCopy.stderr).toBe(0);

    const stale = path.join(scratch, 'stale.graphql');
    await writeFile(stale, committed.replace('type Query', 'type Query {\n  removedField: String\n}\n\ntype Old'));
    const failed = await cli(['schema', 'check', '--file', stale]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(stale);
    expect(failed.stderr).toContain('stale');

    const trailing = path.join(scratch, 'trailing.graphql');
    await writeFile(trailing, `${committed}\n# edited by hand\n`);
    expect((await cli(['schema', 'check', '--file', trailing])).code).toBe(1);
    expect((await cli(['schema', 'check', '--file', path.join(scratch, 'missing.graphql')])).code).toBe(1);
  });

  it('`schema check` holds src/rest/graphql-env.d.ts to what gql.tada makes of schema.graphql', async () => {
    const committed = await readFile(path.join(repoRoot, 'src/rest/graphql-env.d.ts'), 'utf8');
    expect(committed).toContain("'Webhook': { kind: 'OBJECT'");
    const copy = path.join(scratch, 'graphql-env.d.ts');
    await writeFile(copy, committed);
    const fresh = await cli(['schema', 'check', '--types', copy]);
    expect(fresh.code, fresh.stderr).toBe(0);

    const stale = path.join(scratch, 'stale-graphql-env.d.ts');
    await writeFile(stale, committed.replace("'lastDeliveryAt': ", "'lastDeliveredAt': "));
    const failed = await cli(['schema', 'check', '--types', stale]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`${stale} is stale`);
    expect((await cli(['schema', 'check', '--types', path.join(scratch, 'missing.d.ts')])).code).toBe(1);
  });
});

describe('command line against a database', { timeout: 240_000 }, () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  let receiver: Receiver;
  let gw: TestGateway | undefined;

  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
    env = { ...db.env, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await killAll();
    await gw?.stop();
    await receiver?.close();
    await db?.drop();
  });

  /** A gateway on the CLI's database; on embedded only one process may hold it at a time. */
  async function withGateway<T>(fn: (gateway: TestGateway) => Promise<T>, extra: Record<string, string> = {}): Promise<T> {
    const gateway = await startTestGateway({ WORKER_POLL_INTERVAL: '50ms', ...extra }, db);
    gw = gateway;
    try {
      return await fn(gateway);
    } finally {
      await gateway.stop();
      gw = undefined;
    }
  }

  it('`migrate` applies the migrations on a fresh database, then reports them up to date', async () => {
    const first = await cli(['migrate'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^applied: Migration\d+_initial, Migration\d+_rate_limit/);
    const second = await cli(['migrate'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe('migrations up to date\n');
  });

  it('`api-key create/list/revoke`: the key is printed once, listed by prefix only, and useless once revoked', async () => {
    const tenant = uniqueTenant('cli-keys');
    const created = await cli(['api-key', 'create', '--tenant', tenant, '--name', 'deploy bot'], env);
    expect(created.code, created.stderr).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^ia_live_[A-Za-z0-9]{32}$/);
    const id = /created (key_[A-Za-z0-9_-]{20}) for tenant/.exec(created.stderr)?.[1];
    expect(id, created.stderr).toBeDefined();
    expect(created.stderr).not.toContain(key);

    const listed = await cli(['api-key', 'list', '--tenant', tenant], env);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = listed.stdout.trim().split('\n').map((line) => line.split('\t'));
    expect(rows).toHaveLength(1);
    const [listedId, prefix, name, createdAt, lastUsed] = rows[0]!;
    expect(listedId).toBe(id);
    expect(name).toBe('deploy bot');
    expect(prefix!.endsWith('…')).toBe(true);
    const bare = prefix!.slice(0, -1);
    expect(bare.length).toBeGreaterThanOrEqual('ia_live_'.length + 1);
    expect(bare.length).toBeLessThan(key.length);
    expect(key.startsWith(bare)).toBe(true);
    expect(Number.isNaN(Date.parse(createdAt!))).toBe(false);
    expect(lastUsed).toBe('-');
    expect(listed.stdout).not.toContain(key);
    expect(listed.stdout).not.toContain(key.slice(bare.length));
    expect((await cli(['api-key', 'list', '--tenant', uniqueTenant('nobody')], env)).stdout).toBe('');

    await withGateway(async (gateway) => {
      const res = await client(gateway.url, key).get('/api/v1/webhooks');
      expect(res.status).toBe(200);
      if (onRealPostgres) {
        // A gateway on a shared server sees the revocation at once.
        const revoked = await cli(['api-key', 'revoke', '--tenant', tenant, '--id', id!], env);
        expect(revoked.code, revoked.stderr).toBe(0);
        expect((await client(gateway.url, key).get('/api/v1/webhooks')).status).toBe(401);
      } else {
        // The embedded database serves one process: the command line is refused meanwhile.
        const refused = await cli(['api-key', 'revoke', '--tenant', tenant, '--id', id!], env);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('in use by process');
      }
    });

    if (!onRealPostgres) {
      const revoked = await cli(['api-key', 'revoke', '--tenant', tenant, '--id', id!], env);
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stdout).toBe(`revoked ${id}\n`);
    }
    const listedAfter = await cli(['api-key', 'list', '--tenant', tenant], env);
    expect(listedAfter.stdout).toBe('');
    const again = await cli(['api-key', 'revoke', '--tenant', tenant, '--id', id!], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('not found');
    const otherTenant = await cli(['api-key', 'revoke', '--tenant', uniqueTenant('x'), '--id', id!], env);
    expect(otherTenant.code).toBe(1);

    await withGateway(async (gateway) => {
      const res = await client(gateway.url, key).get('/api/v1/webhooks');
      expect(res.status).toBe(401);
      expect(res.body.code).toBe('UNAUTHORIZED');
    });
  });

  it('`publish` queues deliveries that a gateway delivers; `verify` checks what the receiver got', async () => {
    const tenant = uniqueTenant('cli-publish');
    const secret = newSecret();
    const hook = await withGateway(async (gateway) => {
      const created = await createWebhook(client(gateway.url, await userToken(tenant)), {
        url: `${receiver.url}/cli`,
        events: ['drift.detected'],
        secret,
      });
      await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === created.id && r.json?.event === 'ping' });
      return created;
    });

    const published = await cli(['publish', '--tenant', tenant, '--event', 'drift.detected', '--data', '{"x":1}'], env);
    expect(published.code, published.stderr).toBe(0);
    const answer = JSON.parse(published.stdout);
    expect(answer).toEqual({ id: expect.stringMatching(/^evt_/), event: 'drift.detected', deliveries: 1 });

    const refused = await cli(['publish', '--tenant', tenant, '--event', 'ping'], env);
    expect(refused.code).toBe(1);
    const unknown = await cli(['publish', '--tenant', tenant, '--event', 'no.such.event'], env);
    expect(unknown.code).toBe(1);
    const nobody = await cli(['publish', '--tenant', uniqueTenant('empty'), '--event', 'drift.detected'], env);
    expect(nobody.code, nobody.stderr).toBe(0);
    expect(JSON.parse(nobody.stdout).deliveries).toBe(0);

    const received = await withGateway(async () => {
      const [r] = await receiver.waitFor(1, { match: (x) => x.json?.webhook_id === hook.id && x.json?.event === 'drift.detected' });
      return r!;
    });
    expect(received.json).toMatchObject({ event: 'drift.detected', webhook_id: hook.id, data: { x: 1 } });
    expect(receiver.requests.filter((r) => r.json?.event === 'drift.detected' && r.json?.webhook_id === hook.id)).toHaveLength(1);

    const headers = received.headers as Record<string, string>;
    const infra = await cli(['verify', '--secret', secret, '--body', received.body, '--signature', headers['x-infraaudit-signature']!]);
    expect(infra.code, infra.stderr).toBe(0);
    expect(infra.stdout).toBe('X-InfraAudit-Signature: valid\n');

    const standard = [
      '--webhook-id',
      headers['webhook-id']!,
      '--webhook-timestamp',
      headers['webhook-timestamp']!,
      '--webhook-signature',
      headers['webhook-signature']!,
    ];
    const std = await cli(['verify', '--secret', secret, '--body', received.body, ...standard]);
    expect(std.code, std.stderr).toBe(0);
    expect(std.stdout).toBe('webhook-signature: valid\n');

    const bodyFile = path.join(db.dataDir, 'body.json');
    await writeFile(bodyFile, received.body);
    const both = await cli(['verify', '--secret', secret, '--body-file', bodyFile, '--signature', headers['x-infraaudit-signature']!, ...standard]);
    expect(both.code, both.stderr).toBe(0);
    expect(both.stdout).toBe('X-InfraAudit-Signature: valid\nwebhook-signature: valid\n');

    const tampered = received.body.replace('"x":1', '"x":2');
    expect(tampered).not.toBe(received.body);
    const badInfra = await cli(['verify', '--secret', secret, '--body', tampered, '--signature', headers['x-infraaudit-signature']!]);
    expect(badInfra.code).toBe(1);
    expect(badInfra.stdout).toBe('X-InfraAudit-Signature: INVALID\n');
    const badStd = await cli(['verify', '--secret', secret, '--body', tampered, ...standard]);
    expect(badStd.code).toBe(1);
    expect(badStd.stdout).toBe('webhook-signature: INVALID\n');
    const oneBad = await cli(['verify', '--secret', secret, '--body', received.body, '--signature', headers['x-infraaudit-signature']!, ...standard.slice(0, 5), `${headers['webhook-signature']!.slice(0, -4)}AAA=`]);
    expect(oneBad.code).toBe(1);
    expect(oneBad.stdout).toBe('X-InfraAudit-Signature: valid\nwebhook-signature: INVALID\n');
    const wrongSecret = await cli(['verify', '--secret', newSecret(), '--body', received.body, '--signature', headers['x-infraaudit-signature']!]);
    expect(wrongSecret.code).toBe(1);
    // A replay outside the timestamp tolerance is refused (the delivery is seconds old by now).
    const wait = Number(headers['webhook-timestamp']) * 1000 + 2_000 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const late = await cli(['verify', '--secret', secret, '--body', received.body, ...standard, '--tolerance', '1']);
    expect(late.code).toBe(1);
    expect(late.stdout).toBe('webhook-signature: INVALID\n');
  });
});
