import crypto from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, it, expect } from 'vitest';
import {
  infraAuditSignature,
  standardWebhooksSignature,
  standardWebhooksSignatureHeader,
  verifyInfraAuditSignature,
  verifyStandardWebhooks,
} from '../../src/worker/signature.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const MSG_ID = 'del_test';
const TS = 1700000000;
const BODY = '{"id":"evt_1","type":"finding.created","data":{"severity":"high"}}';

// printf '%s' "$BODY" | openssl dgst -sha256 -hmac 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
const KNOWN_INFRAAUDIT = 'sha256=aac2100cf697fb477bc8c54a757daa1880a10c56f0095b095150d91c07519189';
// printf '%s' "del_test.1700000000.$BODY" | openssl dgst -sha256 -mac HMAC \
//   -macopt hexkey:31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0 -binary | base64
// (hexkey = base64-decoded 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')
const KNOWN_STANDARD = 'v1,3yjRlxHj2EWRzducclqQN47gIgPq9xfSruAbvYBZjK4=';

const nowSec = () => Math.floor(Date.now() / 1000);

describe('known-answer vectors', () => {
  it('infraAuditSignature matches openssl', () => {
    expect(infraAuditSignature(SECRET, BODY)).toBe(KNOWN_INFRAAUDIT);
  });
  it('standardWebhooksSignature matches openssl', () => {
    expect(standardWebhooksSignature(SECRET, MSG_ID, TS, BODY)).toBe(KNOWN_STANDARD);
  });
});

describe('third-party receivers', () => {
  it('standardwebhooks Webhook.verify accepts our signature', () => {
    const ts = nowSec();
    const headers = {
      'webhook-id': MSG_ID,
      'webhook-timestamp': String(ts),
      'webhook-signature': standardWebhooksSignature(SECRET, MSG_ID, ts, BODY),
    };
    expect(new Webhook(SECRET).verify(BODY, headers)).toEqual(JSON.parse(BODY));
  });
  it('standardwebhooks Webhook.verify rejects a tampered body', () => {
    const ts = nowSec();
    const headers = {
      'webhook-id': MSG_ID,
      'webhook-timestamp': String(ts),
      'webhook-signature': standardWebhooksSignature(SECRET, MSG_ID, ts, BODY),
    };
    expect(() => new Webhook(SECRET).verify(BODY.replace('high', 'low'), headers)).toThrow();
  });
  it('standardwebhooks Webhook.verify accepts a header of several secrets holding any one of them', () => {
    const ts = nowSec();
    const other = 'whsec_' + Buffer.alloc(24, 9).toString('base64');
    const header = standardWebhooksSignatureHeader([other, SECRET], MSG_ID, ts, BODY);
    expect(header).toBe(`${standardWebhooksSignature(other, MSG_ID, ts, BODY)} ${standardWebhooksSignature(SECRET, MSG_ID, ts, BODY)}`);
    const headers = { 'webhook-id': MSG_ID, 'webhook-timestamp': String(ts), 'webhook-signature': header };
    for (const secret of [other, SECRET]) expect(new Webhook(secret).verify(BODY, headers)).toEqual(JSON.parse(BODY));
    expect(() => new Webhook('whsec_' + Buffer.alloc(24, 1).toString('base64')).verify(BODY, headers)).toThrow();
  });
  it('documented InfraAudit Node receiver check accepts our header', () => {
    const header = infraAuditSignature(SECRET, BODY);
    const expected = 'sha256=' + crypto.createHmac('sha256', SECRET).update(BODY).digest('hex');
    expect(crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(header))).toBe(true);
  });
});

describe('verifyInfraAuditSignature', () => {
  it('accepts the right signature', () => {
    expect(verifyInfraAuditSignature(SECRET, BODY, KNOWN_INFRAAUDIT)).toBe(true);
  });
  it('rejects wrong secret, tampered body, missing and malformed header', () => {
    const other = 'whsec_' + 'A'.repeat(32);
    expect(verifyInfraAuditSignature(other, BODY, KNOWN_INFRAAUDIT)).toBe(false);
    expect(verifyInfraAuditSignature(SECRET, BODY + ' ', KNOWN_INFRAAUDIT)).toBe(false);
    expect(verifyInfraAuditSignature(SECRET, BODY, undefined)).toBe(false);
    expect(verifyInfraAuditSignature(SECRET, BODY, '')).toBe(false);
    expect(verifyInfraAuditSignature(SECRET, BODY, 'sha256=abc')).toBe(false);
  });
});

describe('verifyStandardWebhooks', () => {
  const headers = { id: MSG_ID, timestamp: String(TS), signature: KNOWN_STANDARD };
  const at = { nowSec: TS };

  it('accepts the right signature', () => {
    expect(verifyStandardWebhooks(SECRET, headers, BODY, at)).toBe(true);
  });
  it('rejects wrong secret and tampered body or id', () => {
    expect(verifyStandardWebhooks('whsec_' + 'A'.repeat(32), headers, BODY, at)).toBe(false);
    expect(verifyStandardWebhooks(SECRET, headers, BODY + ' ', at)).toBe(false);
    expect(verifyStandardWebhooks(SECRET, { ...headers, id: 'del_other' }, BODY, at)).toBe(false);
  });
  it('rejects missing headers', () => {
    expect(verifyStandardWebhooks(SECRET, { ...headers, signature: undefined }, BODY, at)).toBe(false);
    expect(verifyStandardWebhooks(SECRET, { ...headers, id: undefined }, BODY, at)).toBe(false);
    expect(verifyStandardWebhooks(SECRET, { ...headers, timestamp: undefined }, BODY, at)).toBe(false);
    expect(verifyStandardWebhooks(SECRET, { ...headers, timestamp: 'abc' }, BODY, at)).toBe(false);
  });
  it('accepts when any of several space-separated signatures matches', () => {
    const signature = `v1,${Buffer.alloc(32).toString('base64')} ${KNOWN_STANDARD} v2,zzz`;
    expect(verifyStandardWebhooks(SECRET, { ...headers, signature }, BODY, at)).toBe(true);
    const none = `v1,${Buffer.alloc(32).toString('base64')} v2,zzz`;
    expect(verifyStandardWebhooks(SECRET, { ...headers, signature: none }, BODY, at)).toBe(false);
  });
  it('enforces timestamp tolerance (default 300 s, both directions)', () => {
    expect(verifyStandardWebhooks(SECRET, headers, BODY, { nowSec: TS + 300 })).toBe(true);
    expect(verifyStandardWebhooks(SECRET, headers, BODY, { nowSec: TS + 301 })).toBe(false);
    expect(verifyStandardWebhooks(SECRET, headers, BODY, { nowSec: TS - 301 })).toBe(false);
    expect(verifyStandardWebhooks(SECRET, headers, BODY, { nowSec: TS + 1000, toleranceSec: 1000 })).toBe(true);
  });
  it('uses the current clock by default', () => {
    expect(verifyStandardWebhooks(SECRET, headers, BODY)).toBe(false);
    const ts = nowSec();
    const signature = standardWebhooksSignature(SECRET, MSG_ID, ts, BODY);
    expect(verifyStandardWebhooks(SECRET, { id: MSG_ID, timestamp: String(ts), signature }, BODY)).toBe(true);
  });
});
