// The runner's handle on the receiver process (bench/receiver.ts).
import type { ChildProcess } from 'node:child_process';
import { startChild, stopChild } from './processes.js';
import type { ReceiverReply, ReceiverRequest, RunReport } from './receiver-protocol.js';

export interface ReceiverProcess {
  /** Base URL of the server that answers 200 at once. */
  healthyUrl: string;
  /** Base URL of the server that never answers. */
  silentUrl: string;
  pid: number;
  /** Resolves once `count` requests tagged `run` have arrived; rejects after `timeoutMs`. */
  waitFor(run: string, count: number, timeoutMs: number): Promise<RunReport>;
  /** Whatever has arrived for `run` so far. */
  collect(run: string): Promise<RunReport>;
  forget(run: string): void;
  close(): Promise<void>;
}

export async function startReceiverProcess(): Promise<ReceiverProcess> {
  const child: ChildProcess = startChild(['--import', 'tsx', 'bench/receiver.ts'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 1;
  const waiting = new Map<number, (report: RunReport) => void>();
  const ready = new Promise<{ healthyPort: number; silentPort: number }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`receiver exited (${code}) before it was ready`)));
    child.on('message', (message: ReceiverReply) => {
      if (message.op === 'ready') resolve(message);
      else waiting.get(message.id)?.(message.report);
    });
  });
  const { healthyPort, silentPort } = await ready;
  const send = (request: ReceiverRequest) => child.send(request);

  function ask(build: (id: number) => ReceiverRequest, timeoutMs: number, what: string): Promise<RunReport> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`receiver: ${what} not done within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, (report) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(report);
      });
      send(build(id));
    });
  }

  return {
    healthyUrl: `http://127.0.0.1:${healthyPort}`,
    silentUrl: `http://127.0.0.1:${silentPort}`,
    pid: child.pid!,
    waitFor: (run, count, timeoutMs) => ask((id) => ({ op: 'expect', id, run, count }), timeoutMs, `${count} requests of ${run}`),
    collect: (run) => ask((id) => ({ op: 'collect', id, run }), 10_000, `collecting ${run}`),
    forget: (run) => send({ op: 'forget', run }),
    async close() {
      if (child.connected) send({ op: 'close' });
      await stopChild(child, 'SIGTERM', 5_000);
    },
  };
}
