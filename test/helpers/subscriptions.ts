// Real subscription clients for tests: graphql-sse (GraphQL over SSE, distinct connections mode),
// a bare text/event-stream GET reader (what a browser EventSource does, token in `?token=`), and
// graphql-ws over a real WebSocket. Each collects what arrives into a Feed that tests wait on,
// always with a bound.
import { inspect } from 'node:util';
import { createClient as createSseClient, NetworkError } from 'graphql-sse';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';

export const DELIVERY_UPDATES = `subscription Updates($webhookId: ID) {
  deliveryUpdates(webhookId: $webhookId) {
    kind
    delivery { id webhookId eventId eventType status attemptCount nextAttemptAt }
    attempt { id deliveryId webhookId attempt status responseCode nextRetryAt }
  }
}`;

/** What a feed ended with, for a timeout's message: clients end feeds with errors, close events or arrays of errors. */
const errorText = (error: unknown): string => (error === undefined ? '' : error instanceof Error ? String(error) : inspect(error, { depth: 3 }));

export interface UpdateMessage {
  kind: 'created' | 'attempt' | 'status';
  delivery: { id: string; webhookId: string; eventId: string; eventType: string; status: string; attemptCount: number; nextAttemptAt: string | null };
  attempt: { id: string; deliveryId: string; webhookId: string; attempt: number; status: string; responseCode: number | null; nextRetryAt: string | null } | null;
}

export interface ExecutionResultLike {
  data?: { deliveryUpdates?: UpdateMessage } | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export class Feed {
  readonly results: ExecutionResultLike[] = [];
  completed = false;
  error: unknown = undefined;
  /** HTTP status of the stream's response, where the transport shows it. */
  status: number | undefined;
  private readonly listeners = new Set<() => void>();
  private stop: () => void = () => undefined;

  /** The updates received (results carrying data). */
  get updates(): UpdateMessage[] {
    return this.results.flatMap((r) => (r.data?.deliveryUpdates ? [r.data.deliveryUpdates] : []));
  }

  get ended(): boolean {
    return this.completed || this.error !== undefined;
  }

  onStop(stop: () => void): void {
    this.stop = stop;
  }

  push(result: ExecutionResultLike): void {
    this.results.push(result);
    this.changed();
  }

  end(error?: unknown): void {
    if (error !== undefined) this.error = error;
    else this.completed = true;
    this.changed();
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Resolves once `ready` holds over what has arrived; rejects after `timeoutMs`. */
  waitFor(ready: (feed: Feed) => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ready(this)) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify({ results: this.results, error: errorText(this.error) })}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  waitForUpdates(match: (u: UpdateMessage) => boolean, count: number, timeoutMs = 15_000): Promise<UpdateMessage[]> {
    return this.waitFor((f) => f.updates.filter(match).length >= count, timeoutMs, `${count} matching updates`).then(() =>
      this.updates.filter(match),
    );
  }

  waitForEnd(timeoutMs = 15_000): Promise<void> {
    return this.waitFor((f) => f.ended, timeoutMs, 'the end of the stream');
  }

  close(): void {
    this.stop();
  }
}

/** A subscription through the graphql-sse client (distinct connections mode) at /graphql. */
export function sseSubscribe(baseUrl: string, token: string | undefined, variables: Record<string, unknown> = {}, query = DELIVERY_UPDATES): Feed {
  const feed = new Feed();
  const client = createSseClient({
    url: `${baseUrl}/graphql`,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
  });
  const unsubscribe = client.subscribe(
    { query, variables },
    {
      next: (r) => feed.push(r as ExecutionResultLike),
      error: (err) => {
        if (err instanceof NetworkError) feed.status = err.response?.status;
        feed.end(err ?? new Error('stream failed'));
      },
      complete: () => feed.end(),
    },
  );
  feed.onStop(() => {
    unsubscribe();
    client.dispose();
  });
  return feed;
}

/**
 * What a browser's EventSource does: GET /graphql?query=...&token=... with Accept
 * text/event-stream, reading `next` and `complete` events as they stream.
 */
export function eventSourceSubscribe(baseUrl: string, token: string | undefined, variables: Record<string, unknown> = {}): Feed {
  const feed = new Feed();
  const url = new URL('/graphql', baseUrl);
  url.searchParams.set('query', DELIVERY_UPDATES);
  url.searchParams.set('variables', JSON.stringify(variables));
  if (token) url.searchParams.set('token', token);
  const abort = new AbortController();
  feed.onStop(() => abort.abort());
  void (async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
    feed.status = res.status;
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      feed.end(new Error(`HTTP ${res.status}`));
      return;
    }
    const decoder = new TextDecoder();
    let buffer = '';
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (event === 'next') feed.push(JSON.parse(data.join('\n')) as ExecutionResultLike);
        if (event === 'complete') {
          feed.end();
          return;
        }
      }
    }
    feed.end();
  })().catch((err: unknown) => {
    if (!abort.signal.aborted) feed.end(err);
  });
  return feed;
}

export function wsUrl(baseUrl: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}/graphql`;
}

/** A graphql-ws client on a real WebSocket; `connectionParams` carries the token. */
export function wsClient(baseUrl: string, connectionParams: Record<string, unknown> | undefined): WsClient {
  return createWsClient({ url: wsUrl(baseUrl), webSocketImpl: WebSocket, connectionParams, retryAttempts: 0, lazy: true });
}

export function wsSubscribe(client: WsClient, variables: Record<string, unknown> = {}, query = DELIVERY_UPDATES): Feed {
  const feed = new Feed();
  const unsubscribe = client.subscribe(
    { query, variables },
    {
      next: (r) => feed.push(r as ExecutionResultLike),
      error: (err) => feed.end(err ?? new Error('subscription failed')),
      complete: () => feed.end(),
    },
  );
  feed.onStop(unsubscribe);
  return feed;
}

/**
 * Opens a raw graphql-transport-ws connection and sends connection_init with `payload`:
 * resolves with the close code and every message the server sent before closing.
 */
export function rawWsHandshake(
  baseUrl: string,
  payload: Record<string, unknown> | undefined,
  options: { headers?: Record<string, string>; subscribeAfterInit?: boolean; timeoutMs?: number } = {},
): Promise<{ code: number; messages: unknown[] }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl(baseUrl), 'graphql-transport-ws', { headers: options.headers });
    const messages: unknown[] = [];
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${options.timeoutMs ?? 5_000} ms; messages: ${JSON.stringify(messages)}`));
    }, options.timeoutMs ?? 5_000);
    socket.on('open', () => {
      socket.send(JSON.stringify({ type: 'connection_init', ...(payload ? { payload } : {}) }));
      if (options.subscribeAfterInit) {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: DELIVERY_UPDATES } }));
      }
    });
    // The socket's binaryType is the default, nodebuffer: every message arrives as one Buffer.
    socket.on('message', (data) => messages.push(JSON.parse((data as Buffer).toString('utf8'))));
    socket.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, messages });
    });
    socket.on('error', () => undefined);
  });
}

/** Polls `read` until it returns true, every 10 ms, for at most `timeoutMs`. */
export async function until(read: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await read())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
