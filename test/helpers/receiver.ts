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

export interface CountingReceiver {
  receiver: Receiver;
  /** Requests open right now, and the most ever open at once. */
  open(): number;
  maxOpen(): number;
  /** The requests held open, oldest first. */
  held(): ReceivedRequest[];
  /** Answers the oldest held request with 200 and keeps holding the others. */
  releaseOne(): ReceivedRequest;
  /** Answers every held request with 200 and answers whatever comes next at once. */
  release(): void;
}

/**
 * A receiver that counts the requests it has open at once (and the most it ever had). While
 * `holding`, it keeps every request that `hold` matches open; the others are answered at once. A
 * request stops being open the moment the test answers it (before the answer is written, so the
 * gateway cannot have started its next attempt yet) or when the gateway drops the connection.
 */
export async function countingReceiver(options: { holding: boolean; hold: (r: ReceivedRequest) => boolean }): Promise<CountingReceiver> {
  let holding = options.holding;
  let open = 0;
  let maxOpen = 0;
  const held: { req: ReceivedRequest; res: ServerResponse; done: () => void }[] = [];
  const receiver = await startReceiver((req, n, res) => {
    open += 1;
    maxOpen = Math.max(maxOpen, open);
    let closed = false;
    const done = () => {
      if (closed) return;
      closed = true;
      open -= 1;
    };
    res.once('close', done);
    if (holding && options.hold(req)) {
      held.push({ req, res, done });
      return;
    }
    done();
    answer(200)(req, n, res);
  });
  const ok = ({ res, done }: (typeof held)[number]) => {
    done();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  };
  return {
    receiver,
    open: () => open,
    maxOpen: () => maxOpen,
    held: () => held.map((h) => h.req),
    releaseOne() {
      const first = held.shift();
      if (!first) throw new Error('no request is held');
      ok(first);
      return first.req;
    },
    release() {
      holding = false;
      for (const h of held.splice(0)) ok(h);
    },
  };
}
