// A failure the caller cannot fix is a 500 that says nothing of the cause, and a log line that
// ties it to the answer (the request id) without the statement or the tenant's values in it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';

describe('internal errors', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  async function sql(statement: string): Promise<void> {
    await gw.gateway.db.orm.em.fork().getConnection().execute(statement);
  }

  it('answer 500 without details and log the request id, never the SQL or its values', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('fail')));
    const marker = `marker-${Date.now()}-value`;
    // A missing table makes the insert fail inside the database, with its statement and values.
    await sql('alter table webhook rename to webhook_elsewhere');
    try {
      const rest = await api.post('/api/v1/webhooks', { name: marker, url: `http://127.0.0.1:9/${marker}`, events: ['alert.created'] }, {
        headers: { 'x-request-id': 'req-rest-500' },
      });
      expect(rest.status, rest.text).toBe(500);
      expect(rest.body).toEqual({ error: 'internal error', code: 'INTERNAL_ERROR' });
      const graphql = await api.graphql(
        'mutation($n: String!) { createWebhook(input: { name: $n, url: "http://127.0.0.1:9/x", events: ["alert.created"] }) { secret } }',
        { n: marker },
        { headers: { 'x-request-id': 'req-graphql-500' } },
      );
      expect(graphql.body.errors?.[0]?.extensions?.['code']).toBe('INTERNAL_ERROR');
      expect(graphql.text).not.toContain('webhook');
    } finally {
      await sql('alter table webhook_elsewhere rename to webhook');
    }
    await expect.poll(() => gw.logs.filter((l) => l.includes('"level":50')).length, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
    const errors = gw.logs.filter((l) => l.includes('"level":50'));
    expect(errors.some((l) => l.includes('req-rest-500'))).toBe(true);
    expect(errors.some((l) => l.includes('req-graphql-500'))).toBe(true);
    for (const line of errors) {
      expect(line).not.toContain(marker);
      expect(line.toLowerCase()).not.toMatch(/insert into|select .* from/);
    }
    // The database's own reason stays, so an operator can still act on it.
    expect(errors.some((l) => l.includes('does not exist'))).toBe(true);
  });
});
