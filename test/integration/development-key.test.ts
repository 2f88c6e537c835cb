import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { onRealPostgres } from '../helpers/database.js';
import { withPg } from '../helpers/db-dump.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { killAll, startTsx, type RunningProcess } from '../helpers/processes.js';

const URL_LINE = /gateway on (http:\/\/\S+)/;
// A first start from an empty DATA_DIR runs PGlite's initdb: an outer limit for a busy machine.
const STARTUP_MS = 180_000;
const KEY_LINE = /Development API key[^\n]*\n\s*(ia_live_[A-Za-z0-9]{32})\s*\n/;

async function stop(p: RunningProcess): Promise<number | string> {
  p.child.kill('SIGTERM');
  return p.exited;
}

// The quick start's process never reads DATABASE_URL (its environment is its own), so the run on
// the embedded database covers it; the run on Postgres would repeat it exactly.
describe.skipIf(onRealPostgres)('the development API key of the embedded quick start (run by the embedded suite)', () => {
  let dataDir: string | undefined;
  afterAll(async () => {
    await killAll();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('is printed once on the first start, works, and is not printed again', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gateway-devkey-'));
    const env = { DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' };

    const first = startTsx('src/main.ts', [], env);
    const url = (await first.waitForStdout(URL_LINE, STARTUP_MS))[1]!;
    const key = (await first.waitForStdout(KEY_LINE))[1]!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toMatch(/:0$/);

    const listed = await fetch(`${url}/api/v1/webhooks`, { headers: { authorization: `Bearer ${key}` } });
    expect(listed.status).toBe(200);
    expect(await listed.json()).toEqual([]);
    const created = await fetch(`${url}/api/v1/webhooks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'quick start', url: 'https://receiver.example.com/hook', events: ['drift.detected'] }),
    });
    expect(created.status).toBe(201);
    const refused = await fetch(`${url}/api/v1/webhooks`, { headers: { authorization: 'Bearer ia_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } });
    expect(refused.status).toBe(401);

    expect(await stop(first)).toBe(0);

    const second = startTsx('src/main.ts', [], env);
    const url2 = (await second.waitForStdout(URL_LINE, STARTUP_MS))[1]!;
    const again = await fetch(`${url2}/api/v1/webhooks`, { headers: { authorization: `Bearer ${key}` } });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { name: string }[]).map((w) => w.name)).toEqual(['quick start']);
    expect(second.stdout()).not.toMatch(/ia_live_/);
    expect(second.stdout()).not.toMatch(/Development API key/);
    expect(await stop(second)).toBe(0);
    expect(second.stdout()).not.toMatch(/ia_live_/);
    expect(first.stderr()).not.toContain(key);
  }, 2 * STARTUP_MS + 60_000);
});

describe('the development key, in process', () => {
  let gw: TestGateway | undefined;
  afterAll(async () => {
    await gw?.close();
  });

  it(
    onRealPostgres
      ? 'is never made with DATABASE_URL, even without JWT settings'
      : 'is made on the first embedded start without JWT settings, and only then',
    async () => {
      gw = await startTestGateway({ JWT_SECRET: '' });
      if (onRealPostgres) {
        expect(gw.gateway.db.embedded).toBe(false);
        expect(gw.gateway.developmentKey).toBeUndefined();
        const stored = await withPg(gw.gateway.db.url, (c) => c.query('select id from api_key'));
        expect(stored.rows).toEqual([]);
        return;
      }
      const key = gw.gateway.developmentKey;
      expect(key).toMatch(/^ia_live_[A-Za-z0-9]{32}$/);
      const api = client(gw.url, key);
      const listed = await api.get('/api/v1/settings/api-keys');
      expect(listed.status).toBe(200);
      expect(listed.body.map((k: { name: string }) => k.name)).toEqual(['development']);
      gw = await gw.restart();
      expect(gw.gateway.developmentKey).toBeUndefined();
      expect((await client(gw.url, key).get('/api/v1/webhooks')).status).toBe(200);
    },
    60_000,
  );
});
