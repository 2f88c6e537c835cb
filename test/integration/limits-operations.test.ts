// CONTRACT section 10: "No credentials, no work", "Bodies", "GraphQL operations" and "Rate limits
// count operations", each at its boundary, with nothing of a refused request run or stored.
import http from 'node:http';
import { getIntrospectionQuery, Lexer, Source, TokenKind } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse } from '../helpers/http.js';

const ANONYMOUS_LIMIT = 3;
const MAX_BODY_BYTES = 65536;
const GRAPHQL_RESPONSE = 'application/graphql-response+json';

function expectQueryTooComplex(res: JsonResponse): void {
  expect(res.status, res.text).toBe(400);
  expect(res.body.errors, res.text).toHaveLength(1);
  expect(res.body.errors[0].extensions.code).toBe('QUERY_TOO_COMPLEX');
  expect(res.body.data ?? null).toBeNull();
}

/** `__type(name: "Query") { ofType { ... { name } } }`: a query of exactly `depth` levels. */
function queryOfDepth(depth: number): string {
  let inner = 'name';
  for (let i = 0; i < depth - 2; i++) inner = `ofType { ${inner} }`;
  return `{ __type(name: "Query") { ${inner} } }`;
}

function queryWithAliases(count: number): string {
  return `{ ${Array.from({ length: count }, (_, i) => `a${i}: __type(name: "Query") { name }`).join(' ')} }`;
}

function tokensOf(document: string): number {
  const lexer = new Lexer(new Source(document));
  let n = 0;
  while (lexer.advance().kind !== TokenKind.EOF) n++;
  return n;
}

/** A publish whose data is a list of ones, padded to exactly `count` tokens. */
function mutationOfTokens(count: number): string {
  const around = (list: string) => `mutation { publishEvent(input: { event: "alert.created", data: { ones: [${list}] } }) { id } }`;
  return around('1 '.repeat(count - tokensOf(around(''))));
}

describe('requests without credentials', () => {
  let gw: TestGateway;
  let proxied: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: String(ANONYMOUS_LIMIT), ALLOWED_ORIGINS: 'https://example.com' });
    proxied = await startTestGateway({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: String(ANONYMOUS_LIMIT), TRUST_PROXY: '1' });
  });
  afterAll(async () => {
    await gw?.close();
    await proxied?.close();
  });

  it('answers 401 before reading the body, then 429 per address, while valid credentials and open paths still work', async () => {
    const anonymous = client(gw.url);
    const graphql = await anonymous.graphql('{ webhooks { id } }');
    expect(graphql.status, graphql.text).toBe(401);
    expect(graphql.body.errors?.[0]?.extensions?.['code']).toBe('UNAUTHORIZED');
    const rest = await anonymous.post('/api/v1/webhooks', { name: 'x', url: 'http://127.0.0.1:9/x', events: ['alert.created'] });
    expect(rest.status, rest.text).toBe(401);
    expect(rest.body.code).toBe('UNAUTHORIZED');
    const badKey = await client(gw.url, 'ia_live_not-a-real-key').get('/api/v1/webhooks');
    expect(badKey.status).toBe(401);

    const limited = await anonymous.graphql('{ webhooks { id } }');
    expect(limited.status, limited.text).toBe(429);
    expect((limited.body as { code?: string }).code).toBe('RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await anonymous.get('/api/v1/webhooks')).status).toBe(429);

    // Valid credentials from the same address are never refused by this limit.
    const api = client(gw.url, await userToken(uniqueTenant('anon')));
    expect((await api.get('/api/v1/webhooks')).status).toBe(200);
    expect((await api.graphql('{ webhooks { id } }')).status).toBe(200);
    // Open paths stay open.
    for (const path of ['/health', '/healthz', '/readyz', '/metrics', '/docs', '/api/v1/openapi.json']) {
      expect((await anonymous.get(path)).status, path).toBe(200);
    }
    const graphiql = await anonymous.get('/graphql', { headers: { accept: 'text/html' } });
    expect(graphiql.status).toBe(200);
    expect(graphiql.text).toContain('Authorization');
    const preflight = await anonymous.request('OPTIONS', '/graphql', { headers: { origin: 'https://example.com', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBeLessThan(300);
  });

  it('counts by X-Forwarded-For only behind TRUST_PROXY, taking the n-th address from the right, IPv6 by /64', async () => {
    const from = (address: string) => ({ headers: { 'x-forwarded-for': address } });
    const anonymous = client(proxied.url);
    for (let i = 0; i < ANONYMOUS_LIMIT; i++) {
      expect((await anonymous.get('/api/v1/webhooks', from(`198.51.100.${i}, 203.0.113.5`))).status).toBe(401);
    }
    // The client's own part of the header does not matter: the proxy's entry is what counts.
    expect((await anonymous.get('/api/v1/webhooks', from('198.51.100.99, 203.0.113.5'))).status).toBe(429);
    expect((await anonymous.get('/api/v1/webhooks', from('203.0.113.6'))).status).toBe(401);

    for (let i = 1; i <= ANONYMOUS_LIMIT; i++) {
      expect((await anonymous.get('/api/v1/webhooks', from(`2001:db8:1:2::${i}`))).status).toBe(401);
    }
    expect((await anonymous.get('/api/v1/webhooks', from('2001:db8:1:2:ffff::9'))).status).toBe(429);
    expect((await anonymous.get('/api/v1/webhooks', from('2001:db8:1:3::1'))).status).toBe(401);

    // Without TRUST_PROXY the header is ignored: the loopback connection was spent above.
    expect((await client(gw.url).get('/api/v1/webhooks', from('192.0.2.77'))).status).toBe(429);
  });
});

describe('bodies and GraphQL operations', () => {
  let gw: TestGateway;
  let api: ReturnType<typeof client>;

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
    api = client(gw.url, await userToken(uniqueTenant('ops')));
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('accepts a /graphql body of MAX_BODY_BYTES and refuses one byte more with 413', async () => {
    const sized = (bytes: number) => {
      const base = JSON.stringify({ query: '{ __typename }', variables: { pad: '' } });
      return JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(bytes - base.length) } });
    };
    const atLimit = await api.request('POST', '/graphql', { rawBody: sized(MAX_BODY_BYTES), headers: { 'content-type': 'application/json' } });
    expect(atLimit.status, atLimit.text).toBe(200);
    const over = await api.request('POST', '/graphql', { rawBody: sized(MAX_BODY_BYTES + 1), headers: { 'content-type': 'application/json' } });
    expect(over.status, over.text).toBe(413);
    expect(over.body.errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers 413 as soon as a body passes the limit, without waiting for the rest', async () => {
    const token = await userToken(uniqueTenant('stream'));
    const { port } = new URL(gw.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/api/v1/events', method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      // More than the limit, and then the body never ends: only an early answer resolves this.
      req.write(`{"event":"alert.created","data":{"pad":"${'x'.repeat(MAX_BODY_BYTES)}`);
    });
    expect(status).toBe(413);
  });

  it('passes the standard introspection query and refuses depth, aliases and tokens one past the limit', async () => {
    const introspection = await api.graphql(getIntrospectionQuery());
    expect(introspection.body.errors, introspection.text).toBeUndefined();

    const deep = await api.graphql(queryOfDepth(25));
    expect(deep.body.errors, deep.text).toBeUndefined();
    expectQueryTooComplex(await api.graphql(queryOfDepth(26), undefined, { headers: { accept: GRAPHQL_RESPONSE } }));

    const aliased = await api.graphql(queryWithAliases(30));
    expect(aliased.body.errors, aliased.text).toBeUndefined();
    expectQueryTooComplex(await api.graphql(queryWithAliases(31), undefined, { headers: { accept: GRAPHQL_RESPONSE } }));

    expect(tokensOf(mutationOfTokens(5000))).toBe(5000);
    const long = await api.graphql(mutationOfTokens(5000));
    expect(long.body.errors, long.text.slice(0, 300)).toBeUndefined();
    expectQueryTooComplex(await api.graphql(mutationOfTokens(5001), undefined, { headers: { accept: GRAPHQL_RESPONSE } }));
  });

  it('refuses a batched (array) request with one QUERY_TOO_COMPLEX error', async () => {
    const res = await api.request('POST', '/graphql', {
      rawBody: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
      headers: { 'content-type': 'application/json', accept: GRAPHQL_RESPONSE },
    });
    expectQueryTooComplex(res);
  });
});

describe('rate limits count operations (RATE_LIMIT_PER_MINUTE=5)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT_PER_MINUTE: '5' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const publishes = (n: number) =>
    `mutation { ${Array.from({ length: n }, (_, i) => `p${i}: publishEvent(input: { event: "alert.created", data: { i: ${i} } }) { id }`).join(' ')} }`;

  async function storedEvents(tenant: string): Promise<number> {
    const rows = await gw.gateway.db.orm.em
      .fork()
      .getConnection()
      .execute<{ n: number }[]>('select count(*)::int as n from event where tenant_id = ?', [tenant]);
    return rows[0]!.n;
  }

  it('refuses an operation whose root fields would pass the limit whole, and runs one that fits', async () => {
    const tenant = uniqueTenant('ops-rate');
    const api = client(gw.url, await userToken(tenant));
    const tooMany = await api.graphql(publishes(6));
    expect(tooMany.status, tooMany.text).toBe(429);
    expect((tooMany.body as { code?: string }).code).toBe('RATE_LIMITED');
    expect(await storedEvents(tenant)).toBe(0);

    // The refused operation spent nothing: five fields still fit, and then nothing more does.
    const fits = await api.graphql(publishes(5));
    expect(fits.body.errors, fits.text).toBeUndefined();
    expect(Object.keys(fits.body.data)).toHaveLength(5);
    expect(fits.headers.get('x-ratelimit-remaining')).toBe('0');
    expect((await api.graphql('{ webhooks { id } }')).status).toBe(429);
    expect(await storedEvents(tenant)).toBe(5);
  });
});
