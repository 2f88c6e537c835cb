import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, type RateLimitedError } from '../errors.js';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/json; charset=utf-8',
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    // A body refused unread (too large, or sent without credentials) is not drained: the
    // connection closes after this answer instead.
    ...(status === 413 || status === 401 || status === 429 ? { connection: 'close' } : {}),
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end();
}

export function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  details?: unknown,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, { error: message, code, ...(details !== undefined ? { details } : {}) }, headers);
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** The media type of a GraphQL answer: GraphQL over HTTP's own when the client accepts it. */
export function graphqlMediaType(req: IncomingMessage): string {
  return req.headers.accept?.includes('application/graphql-response+json')
    ? 'application/graphql-response+json; charset=utf-8'
    : 'application/json; charset=utf-8';
}

export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const type = value.split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

const tooLarge = (limit: number) => new AppError('PAYLOAD_TOO_LARGE', `request body is larger than ${limit} bytes`);

/**
 * Reads the whole body, refusing (413) as soon as it passes `limit` bytes. The rest is never read:
 * the answer to a refused body closes the connection instead (see sendJson).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > limit) {
      reject(tooLarge(limit));
      return;
    }
    if (req.readableEnded) {
      resolve(Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (done: () => void) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      done();
    };
    function onData(chunk: Buffer) {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        settle(() => reject(tooLarge(limit)));
      } else {
        chunks.push(chunk);
      }
    }
    function onEnd() {
      settle(() => resolve(Buffer.concat(chunks)));
    }
    function onError(err: Error) {
      settle(() => reject(err));
    }
    function onClose() {
      settle(() => reject(new AppError('BAD_REQUEST', 'the request body ended early')));
    }
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** Parses a JSON object body; anything else is BAD_REQUEST. */
export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new AppError('BAD_REQUEST', 'request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AppError('BAD_REQUEST', 'request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

export function sendRateLimited(res: ServerResponse, err: RateLimitedError): void {
  sendJson(
    res,
    429,
    { error: err.message, code: 'RATE_LIMITED', retryAfter: err.retryAfterSec },
    { ...err.headers, 'retry-after': String(err.retryAfterSec) },
  );
}
