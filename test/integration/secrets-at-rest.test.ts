import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/crypto/secrets.js';
import { userToken } from '../helpers/auth.js';
import { onRealPostgres } from '../helpers/database.js';
import { dumpAllTables, withPg, type TableDump } from '../helpers/db-dump.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

/** Every spelling of a secret that would give it away if stored. */
function spellings(secret: string): string[] {
  const body = secret.slice('whsec_'.length);
  const raw = Buffer.from(body, 'base64');
  return [secret, body, raw.toString('hex'), raw.toString('base64url')];
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

describe('secrets at rest', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let dump: TableDump[];
  const marker = `marker-${randomBytes(8).toString('hex')}`;
  const suppliedSecret = `whsec_${randomBytes(24).toString('base64')}`;
  let generatedSecret: string;
  let apiKey: string;
  const webhookIds: string[] = [];

  beforeAll(async () => {
    receiver = await startReceiver();
    gw = await startTestGateway();
    const api = client(gw.url, await userToken('tenant-secrets'));
    const generated = await api.post('/api/v1/webhooks', {
      name: `${marker} generated`,
      url: `${receiver.url}/generated`,
      events: ['ping', 'drift.detected'],
    });
    expect(generated.status).toBe(201);
    generatedSecret = generated.body.secret;
    webhookIds.push(generated.body.id);
    for (const name of ['supplied', 'supplied again']) {
      const res = await api.post('/api/v1/webhooks', {
        name: `${marker} ${name}`,
        url: `${receiver.url}/supplied`,
        events: ['ping'],
        secret: suppliedSecret,
      });
      expect(res.status).toBe(201);
      webhookIds.push(res.body.id);
    }
    const key = await api.post('/api/v1/settings/api-keys', { name: `${marker} key` });
    expect(key.status).toBe(201);
    apiKey = key.body.key;
    expect((await client(gw.url, apiKey).get('/api/v1/webhooks')).status).toBe(200);

    // The creation pings are sent and recorded, so stored attempts (with their headers) are in
    // the dump as well.
    await receiver.waitFor(3, { match: (r) => r.json?.event === 'ping' });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const attempts = await withPg(gw.gateway.db.url, async (c) =>
        Number((await c.query<{ n: string }>('select count(*) as n from delivery_attempt')).rows[0]!.n),
      );
      if (attempts >= 3) break;
      if (Date.now() > deadline) throw new Error(`only ${attempts} attempts recorded`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    dump = await dumpAllTables(gw.gateway.db.url);
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  const allRows = () => dump.flatMap((t) => t.rows.map((row) => ({ table: t.table, row })));

  it('the dump covers the tables that hold webhooks, keys and attempts', () => {
    const tables = dump.map((t) => t.table);
    for (const table of ['webhook', 'api_key', 'delivery', 'delivery_attempt', 'event']) expect(tables).toContain(table);
    expect(dump.find((t) => t.table === 'webhook')!.rows.filter((r) => r.includes(marker))).toHaveLength(3);
    expect(dump.find((t) => t.table === 'delivery_attempt')!.rows.length).toBeGreaterThanOrEqual(3);
    expect(dump.find((t) => t.table === 'delivery_attempt')!.rows.join('\n')).toMatch(/x-infraaudit-signature/i);
  });

  it('no webhook secret appears in any column of any table', () => {
    for (const secret of [generatedSecret, suppliedSecret]) {
      for (const spelling of spellings(secret)) {
        const hits = allRows().filter(({ row }) => row.includes(spelling));
        expect(hits.map((h) => h.table), `${spelling.slice(0, 12)}…`).toEqual([]);
      }
    }
  });

  it('the stored secrets are AES-GCM ciphertexts of the secrets, different each time', async () => {
    const rows = await withPg(gw.gateway.db.url, async (c) =>
      (await c.query<{ id: string; secret_encrypted: string }>(
        'select id, secret_encrypted from webhook where id = any($1)', [webhookIds],
      )).rows,
    );
    const byId = new Map(rows.map((r) => [r.id, r.secret_encrypted]));
    const box = createSecretBox(TEST_ENCRYPTION_KEY);
    expect(box.decrypt(byId.get(webhookIds[0]!)!)).toBe(generatedSecret);
    expect(box.decrypt(byId.get(webhookIds[1]!)!)).toBe(suppliedSecret);
    expect(box.decrypt(byId.get(webhookIds[2]!)!)).toBe(suppliedSecret);
    expect(byId.get(webhookIds[1]!)).not.toBe(byId.get(webhookIds[2]!));
    expect(() => createSecretBox('b'.repeat(64)).decrypt(byId.get(webhookIds[1]!)!)).toThrow();
  });

  it('deliveries were signed with the secret the database does not hold in clear', () => {
    const ping = receiver.requests.find((r) => r.path === '/generated')!;
    const expected = createHmac('sha256', generatedSecret).update(ping.body).digest('hex');
    expect(ping.headers['x-infraaudit-signature']).toBe(`sha256=${expected}`);
  });

  it('API keys are stored only as a hash', () => {
    const hits = allRows().filter(({ row }) => row.includes(apiKey) || row.includes(apiKey.slice('ia_live_'.length)));
    expect(hits).toEqual([]);
    const hash = createHash('sha256').update(apiKey).digest('hex');
    expect(dump.find((t) => t.table === 'api_key')!.rows.some((r) => r.includes(hash))).toBe(true);
  });

  it('no secret or key reaches the logs', () => {
    const logs = gw.logs.join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const spelling of [...spellings(generatedSecret), ...spellings(suppliedSecret), apiKey]) {
      expect(logs).not.toContain(spelling);
    }
  });

  it.skipIf(onRealPostgres)('on the embedded database, no file under DATA_DIR holds a secret in clear', async () => {
    expect(gw.gateway.db.embedded).toBe(true);
    await gw.stop();
    const files = await filesUnder(path.join(gw.database.dataDir, 'pgdata'));
    expect(files.length).toBeGreaterThan(0);
    let markerFound = false;
    const hits: string[] = [];
    const needles = [...spellings(generatedSecret), ...spellings(suppliedSecret), apiKey].map((s) => Buffer.from(s));
    const markerBytes = Buffer.from(marker);
    for (const file of files) {
      const bytes = await readFile(file);
      if (bytes.includes(markerBytes)) markerFound = true;
      for (const needle of needles) if (bytes.includes(needle)) hits.push(path.relative(gw.database.dataDir, file));
    }
    expect(markerFound, 'the webhook rows reached the files').toBe(true);
    expect(hits).toEqual([]);
  });
});
