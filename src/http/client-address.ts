// The address a request is counted against. Behind TRUST_PROXY=n reverse proxies, each appends
// the address it received the request from to X-Forwarded-For, so the n-th entry from the right
// is the last one a trusted proxy wrote; everything left of it is the client's own claim.
// IPv6 clients are counted by their /64, the smallest block a single host is usually given, so
// rotating through one's own addresses does not multiply a budget.
import ipaddr from 'ipaddr.js';
import type { IncomingMessage } from 'node:http';

function forwardedAddress(req: IncomingMessage, trustProxy: number): string | undefined {
  const header = req.headers['x-forwarded-for'];
  const text = Array.isArray(header) ? header.join(',') : header;
  if (!text) return undefined;
  const hops = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (hops.length === 0) return undefined;
  return hops[Math.max(0, hops.length - trustProxy)];
}

/** The key for per-address limits: an IPv4 address, an IPv6 /64, or the raw text when unparsable. */
export function clientAddress(req: IncomingMessage, trustProxy: number): string {
  const raw = (trustProxy > 0 ? forwardedAddress(req, trustProxy) : undefined) ?? req.socket.remoteAddress ?? 'unknown';
  if (!ipaddr.isValid(raw)) return raw.slice(0, 64);
  const parsed = ipaddr.process(raw);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
}
