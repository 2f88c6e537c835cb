import { createHmac, timingSafeEqual } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';
const DEFAULT_TOLERANCE_SEC = 300;

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** `X-InfraAudit-Signature`: keyed with the whole secret string, prefix included, as receivers document it. */
export function infraAuditSignature(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body, 'utf8').digest('hex');
}

/** `webhook-signature` per the Standard Webhooks spec: keyed with the base64-decoded secret. */
export function standardWebhooksSignature(secret: string, msgId: string, timestampSec: number, body: string): string {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = Buffer.from(encoded, 'base64');
  return 'v1,' + createHmac('sha256', key).update(`${msgId}.${timestampSec}.${body}`, 'utf8').digest('base64');
}

/**
 * The `webhook-signature` header of an attempt: one `v1,<sig>` per live secret, newest first,
 * separated by single spaces (the Standard Webhooks form for several secrets), so a receiver
 * holding any one of them verifies it while a rotated secret is in its grace period.
 */
export function standardWebhooksSignatureHeader(secrets: readonly string[], msgId: string, timestampSec: number, body: string): string {
  return secrets.map((secret) => standardWebhooksSignature(secret, msgId, timestampSec, body)).join(' ');
}

export function verifyInfraAuditSignature(secret: string, body: string, header: string | undefined): boolean {
  if (!header) return false;
  return safeEqual(infraAuditSignature(secret, body), header);
}

export function verifyStandardWebhooks(
  secret: string,
  headers: { id?: string; timestamp?: string; signature?: string },
  body: string,
  opts: { toleranceSec?: number; nowSec?: number } = {},
): boolean {
  const { id, timestamp, signature } = headers;
  if (!id || !timestamp || !signature || !/^\d+$/.test(timestamp)) return false;
  const ts = Number(timestamp);
  const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - ts) > (opts.toleranceSec ?? DEFAULT_TOLERANCE_SEC)) return false;
  const expected = standardWebhooksSignature(secret, id, ts, body);
  // Evaluate every candidate so timing does not reveal which entry matched.
  let ok = false;
  for (const candidate of signature.split(' ')) {
    if (candidate && safeEqual(expected, candidate)) ok = true;
  }
  return ok;
}
