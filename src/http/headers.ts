import type { IncomingMessage, ServerResponse } from 'node:http';

// JSON answers need no active content at all; the HTML pages (GraphiQL, /docs) set what they need.
const API_CSP = "default-src 'none'; frame-ancestors 'none'";

export function applySecurityHeaders(res: ServerResponse, pathname: string): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('x-frame-options', 'DENY');
  res.setHeader('referrer-policy', 'no-referrer');
  res.setHeader('cross-origin-opener-policy', 'same-origin');
  if (pathname !== '/graphql' && pathname !== '/docs' && !pathname.startsWith('/docs/')) {
    res.setHeader('content-security-policy', API_CSP);
  }
}

const ALLOWED_METHODS = 'GET, POST, PUT, DELETE, OPTIONS';
const ALLOWED_HEADERS = 'authorization, content-type, idempotency-key, x-request-id';
const EXPOSED_HEADERS = 'x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after';

/**
 * CORS for the origins in ALLOWED_ORIGINS (`*` allows any). Answers preflights itself and returns
 * true when it did; other requests only get the headers.
 */
export function applyCors(req: IncomingMessage, res: ServerResponse, allowed: string[]): boolean {
  const origin = req.headers.origin;
  const permitted = origin !== undefined && (allowed.includes('*') || allowed.includes(origin));
  if (permitted) {
    res.setHeader('access-control-allow-origin', allowed.includes('*') ? '*' : origin);
    res.setHeader('vary', 'Origin');
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
  }
  if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
    if (permitted) {
      res.setHeader('access-control-allow-methods', ALLOWED_METHODS);
      res.setHeader('access-control-allow-headers', ALLOWED_HEADERS);
      res.setHeader('access-control-max-age', '600');
      res.writeHead(204);
    } else {
      res.writeHead(403, { 'content-type': 'application/json; charset=utf-8' });
      res.write(JSON.stringify({ error: 'origin not allowed', code: 'FORBIDDEN' }));
    }
    res.end();
    return true;
  }
  return false;
}
