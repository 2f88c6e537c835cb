// Sends one attempt of one delivery. got does the HTTP with its own retry off (the durable retry
// schedule belongs to Postgres); p-retry repeats only a connection that failed before anything was
// sent, which is safe because the receiver cannot have seen the request.
import http from 'node:http';
import https from 'node:https';
import { got, type RequestError } from 'got';
import pRetry, { AbortError } from 'p-retry';
import type { Config } from '../config.js';
import type { AttemptErrorClass } from '../modules/deliveries/delivery-attempt.entity.js';
import { parseWebhookUrl } from '../modules/webhooks/url-policy.js';
import { USER_AGENT } from '../version.js';
import { checkLiteralHost, createSafeLookup } from './safe-lookup.js';
import { infraAuditSignature, standardWebhooksSignatureHeader } from './signature.js';

export interface OutgoingDelivery {
  deliveryId: string;
  webhookId: string;
  url: string;
  /**
   * The webhook's live signing secrets, newest (its current secret) first, then its previous
   * secrets still in their grace period. Never empty.
   */
  secrets: readonly [string, ...string[]];
  eventType: string;
  /** The exact body; identical across attempts so receivers can compare and deduplicate. */
  body: string;
  attempt: number;
}

export interface SendResult {
  ok: boolean;
  responseCode: number | null;
  durationMs: number;
  requestHeaders: Record<string, string>;
  requestBody: string;
  responseHeaders: Record<string, string> | null;
  responseBody: string | null;
  responseBodyTruncated: boolean;
  error: string | null;
  errorClass: AttemptErrorClass | null;
}

export interface SenderOptions {
  timeoutMs: number;
  allowInsecureUrls: boolean;
  responseBodyLimitBytes: number;
}

/** The sender's settings, from the gateway's. */
export function senderOptions(config: Config): SenderOptions {
  return {
    timeoutMs: config.webhookTimeoutMs,
    allowInsecureUrls: config.allowInsecureUrls,
    responseBodyLimitBytes: config.responseBodyLimitBytes,
  };
}

export interface Sender {
  send(delivery: OutgoingDelivery): Promise<SendResult>;
  close(): void;
}

const RETRYABLE_BEFORE_SEND = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN']);

export function classifyError(error: unknown): { errorClass: AttemptErrorClass; message: string } {
  const err = error as RequestError & { code?: string };
  const code = err.code ?? '';
  const message = err.message || String(error);
  if (code === 'EBLOCKED') return { errorClass: 'blocked', message };
  if (code === 'ETIMEDOUT' || err.name === 'TimeoutError') return { errorClass: 'timeout', message: message };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NODATA' || code === 'EAI_FAIL') {
    return { errorClass: 'dns', message };
  }
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|EPROTO|HOSTNAME_MISMATCH|ERR_CERT)/.test(code)) {
    return { errorClass: 'tls', message };
  }
  return { errorClass: 'connect', message };
}

interface ReceivedAnswer {
  statusCode: number;
  headers: http.IncomingHttpHeaders;
  /** At most RESPONSE_BODY_LIMIT_BYTES of the body. */
  body: Buffer;
  /** The body was longer than what was kept, or ended early. */
  truncated: boolean;
}

/**
 * The body as text Postgres can store: a cut never leaves half a character behind, and NUL
 * (which a text column refuses, so the attempt could never be recorded) becomes U+FFFD.
 */
function storableText(body: Buffer, truncated: boolean): string {
  const text = new TextDecoder('utf-8').decode(body, { stream: truncated });
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

function flattenHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

export function signedHeaders(d: OutgoingDelivery, nowSec: number): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    // The newest secret only: a receiver checking this header moves to a new secret by accepting
    // both before the rotation (README, "Rotating the secret").
    'x-infraaudit-signature': infraAuditSignature(d.secrets[0], d.body),
    'x-infraaudit-event': d.eventType,
    'x-infraaudit-delivery': d.deliveryId,
    'x-infraaudit-attempt': String(d.attempt),
    'webhook-id': d.deliveryId,
    'webhook-timestamp': String(nowSec),
    'webhook-signature': standardWebhooksSignatureHeader(d.secrets, d.deliveryId, nowSec, d.body),
  };
}

export function createSender(options: SenderOptions): Sender {
  const lookup = createSafeLookup(options.allowInsecureUrls);
  const agent = {
    http: new http.Agent({ keepAlive: true, lookup, maxSockets: 256 }),
    https: new https.Agent({ keepAlive: true, lookup, maxSockets: 256 }),
  };

  // The status decides the outcome and the body is only kept for history, so at most `limit`
  // bytes of it are read: a huge body cannot fill memory, and a 2xx whose body trickles on past
  // the timeout is still the 2xx it was.
  function postOnce(d: OutgoingDelivery, headers: Record<string, string>, remaining: number): Promise<ReceivedAnswer> {
    const limit = options.responseBodyLimitBytes;
    return new Promise((resolve, reject) => {
      const stream = got.stream.post(d.url, {
        body: d.body,
        headers,
        agent,
        dnsLookup: lookup,
        timeout: { request: remaining },
        followRedirect: false,
        retry: { limit: 0 },
        throwHttpErrors: false,
        decompress: true,
      });
      let response: http.IncomingMessage | undefined;
      const chunks: Buffer[] = [];
      let kept = 0;
      let settled = false;
      const finish = (truncated: boolean) => {
        if (settled || !response) return;
        settled = true;
        stream.destroy();
        resolve({ statusCode: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks), truncated });
      };
      stream.on('response', (res: http.IncomingMessage) => {
        response = res;
      });
      stream.on('data', (chunk: Buffer) => {
        const room = limit - kept;
        if (chunk.length > room) {
          chunks.push(chunk.subarray(0, room));
          kept = limit;
          finish(true);
          return;
        }
        chunks.push(chunk);
        kept += chunk.length;
      });
      stream.on('end', () => finish(false));
      stream.on('error', (err: Error) => {
        // After the status line arrived the answer stands; only its body was cut short.
        if (response) finish(true);
        else if (!settled) {
          settled = true;
          reject(err);
        }
      });
    });
  }

  async function post(d: OutgoingDelivery, headers: Record<string, string>, deadline: number) {
    return pRetry(
      async () => {
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new AbortError(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
        return postOnce(d, headers, remaining);
      },
      {
        retries: 2,
        minTimeout: 50,
        maxTimeout: 250,
        shouldRetry: ({ error }) => {
          const err = error as RequestError;
          // Only when the request never left: no upload timing means nothing reached the receiver.
          return RETRYABLE_BEFORE_SEND.has(err.code ?? '') && err.timings?.upload === undefined && Date.now() < deadline;
        },
      },
    );
  }

  return {
    async send(d) {
      const started = Date.now();
      const headers = signedHeaders(d, Math.floor(started / 1000));
      const base = { requestHeaders: headers, requestBody: d.body };
      try {
        const target = parseWebhookUrl(d.url);
        if (!target) throw Object.assign(new Error('the webhook URL does not pass validation'), { code: 'EBLOCKED' });
        checkLiteralHost(target.hostname, options.allowInsecureUrls);
        const res = await post(d, headers, started + options.timeoutMs);
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        return {
          ...base,
          ok,
          responseCode: res.statusCode,
          durationMs: Date.now() - started,
          responseHeaders: flattenHeaders(res.headers),
          responseBody: storableText(res.body, res.truncated),
          responseBodyTruncated: res.truncated,
          error: ok ? null : `receiver answered HTTP ${res.statusCode}`,
          errorClass: ok ? null : 'http',
        };
      } catch (error) {
        const { errorClass, message } = classifyError(error);
        return {
          ...base,
          ok: false,
          responseCode: null,
          durationMs: Date.now() - started,
          responseHeaders: null,
          responseBody: null,
          responseBodyTruncated: false,
          error: message,
          errorClass,
        };
      }
    },
    close() {
      agent.http.destroy();
      agent.https.destroy();
    },
  };
}
