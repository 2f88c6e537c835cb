// A real HTTP receiver on loopback that records every request and answers as a test scripts it.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  json: any;
  at: number;
}

/** Decides the answer to the n-th request (1-based); the default answers 200. */
export type Responder = (req: ReceivedRequest, n: number, res: ServerResponse) => void | Promise<void>;

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  respond(responder: Responder): void;
  /** Resolves once `count` requests (optionally matching) have arrived, or rejects after `timeoutMs`. */
  waitFor(count: number, options?: { timeoutMs?: number; match?: (r: ReceivedRequest) => boolean }): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

export const answer = (status: number, body = '') => (_req: ReceivedRequest, _n: number, res: ServerResponse) => {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
};

export async function startReceiver(responder: Responder = answer(200, 'ok')): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  let current = responder;
  const waiters = new Set<() => void>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const record: ReceivedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, at: Date.now() };
      requests.push(record);
      for (const w of waiters) w();
      Promise.resolve(current(record, requests.length, res)).catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    respond(r) {
      current = r;
    },
    waitFor(count, options = {}) {
      const { timeoutMs = 15_000, match = () => true } = options;
      const matching = () => requests.filter(match);
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = matching();
          if (found.length >= count) {
            cleanup();
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`expected ${count} requests, got ${matching().length} within ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
