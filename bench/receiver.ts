// The webhook receiver of the benchmarks, run as its own process so that its event loop does not
// share one with the load generator. Two loopback servers: one answers 200 at once, one accepts
// requests and never answers (the broken endpoint of the isolation scenario). The parent talks to
// it over the IPC channel: `expect` a number of requests tagged with a run id, and hear back the
// publish-to-receipt latencies once they have all arrived.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ReceiverReply, ReceiverRequest, RunReport } from './lib/receiver-protocol.js';

const now = () => performance.timeOrigin + performance.now();

interface RunState {
  count: number;
  ids: Set<string>;
  latencies: number[];
  first: number;
  last: number;
  expected?: { count: number; id: number };
}

const runs = new Map<string, RunState>();

function send(reply: ReceiverReply): void {
  process.send?.(reply);
}

function report(run: string, state: RunState): RunReport {
  return {
    run,
    count: state.count,
    distinct: state.ids.size,
    first: state.first,
    last: state.last,
    latencies: state.latencies,
  };
}

function stateOf(run: string): RunState {
  let state = runs.get(run);
  if (!state) {
    state = { count: 0, ids: new Set(), latencies: [], first: Number.NaN, last: Number.NaN };
    runs.set(run, state);
  }
  return state;
}

function record(body: string, receivedAt: number): void {
  let parsed: { delivery_id?: string; data?: { run?: unknown; sentAt?: unknown } };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    return;
  }
  const run = parsed.data?.run;
  if (typeof run !== 'string') return;
  const state = stateOf(run);
  state.count += 1;
  if (typeof parsed.delivery_id === 'string') state.ids.add(parsed.delivery_id);
  if (typeof parsed.data?.sentAt === 'number') state.latencies.push(receivedAt - parsed.data.sentAt);
  if (Number.isNaN(state.first)) state.first = receivedAt;
  state.last = receivedAt;
  if (state.expected && state.count >= state.expected.count) {
    send({ op: 'reached', id: state.expected.id, report: report(run, state) });
    state.expected = undefined;
  }
}

const healthy = createServer((req: IncomingMessage, res: ServerResponse) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const receivedAt = now();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
    record(Buffer.concat(chunks).toString('utf8'), receivedAt);
  });
});
healthy.keepAliveTimeout = 60_000;

// Holds every request open until the sender gives up; sockets are tracked so close() is prompt.
const silentSockets = new Set<Socket>();
const silent = createServer(() => undefined);
silent.requestTimeout = 0;
silent.headersTimeout = 0;
silent.on('connection', (socket: Socket) => {
  silentSockets.add(socket);
  socket.on('close', () => silentSockets.delete(socket));
});

const listen = (server: typeof healthy) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

process.on('message', (message: ReceiverRequest) => {
  switch (message.op) {
    case 'expect': {
      const state = stateOf(message.run);
      if (state.count >= message.count) send({ op: 'reached', id: message.id, report: report(message.run, state) });
      else state.expected = { count: message.count, id: message.id };
      break;
    }
    case 'collect': {
      const state = stateOf(message.run);
      state.expected = undefined;
      send({ op: 'collected', id: message.id, report: report(message.run, state) });
      break;
    }
    case 'forget':
      runs.delete(message.run);
      break;
    case 'close':
      for (const socket of silentSockets) socket.destroy();
      healthy.closeAllConnections();
      healthy.close();
      silent.close();
      process.disconnect();
      break;
  }
});

const [healthyPort, silentPort] = await Promise.all([listen(healthy), listen(silent)]);
send({ op: 'ready', healthyPort, silentPort });
