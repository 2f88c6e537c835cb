// A keep-alive JSON client for the load the benchmarks generate (publishing, set-up), and the
// tokens it sends.
import http from 'node:http';
import { SignJWT } from 'jose';
import { BENCH_JWT_SECRET } from './gateway-process.js';

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface JsonResponse {
  status: number;
  body: any;
}

export function requestJson(
  url: string,
  options: { method?: string; token?: string; body?: unknown; timeoutMs?: number } = {},
): Promise<JsonResponse> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = {};
  if (options.token) headers['authorization'] = `Bearer ${options.token}`;
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers, agent, timeout: options.timeoutMs ?? 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          body = text;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${options.method ?? 'GET'} ${url} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

export async function expectStatus(res: Promise<JsonResponse>, status: number, what: string): Promise<any> {
  const r = await res;
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

const key = new TextEncoder().encode(BENCH_JWT_SECRET);

/** A service token (role service_role), which publishes for any tenant. */
export function serviceToken(): Promise<string> {
  return new SignJWT({ role: 'service_role' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('2h').sign(key);
}

/** A user token for `tenant`, as Supabase would issue it. */
export function userToken(tenant: string): Promise<string> {
  return new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(tenant)
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(key);
}
