// With ROLE=all on a real Postgres the worker runs on a thread of its own (WORKER_THREAD, default
// on). One event loop serving the API and the worker makes every publish wait behind the sends,
// claims and records queued before it, and a busy worker then slows publishing, which bounds how
// fast events can arrive to be delivered. On its own thread the worker is what a ROLE=worker
// process is: its own pools, LISTEN connection and scheduler on the same Postgres, sharing nothing
// with the API but the database, so the rules of scaling out hold unchanged (NOTIFY wakes it;
// its records' notices reach the API's subscriptions through Postgres).
// This handle is the main thread's side: it starts the thread and waits until it runs, writes its
// log lines to the process's log, adds its delivery metrics to /metrics, reads its count of
// attempts in flight from shared memory, stops it at shutdown, and starts it again if it ever
// exits on its own (the rows it held come back when their leases lapse).
import { Worker } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import type { Config } from '../config.js';
import type { ConnectionShare } from '../db/connections.js';
import type { MetricsSnapshot } from '../observability/metrics.js';
import type { Scheduler } from './scheduler.js';

export interface WorkerThreadData {
  config: Config;
  /** The thread's part of DATABASE_POOL_SIZE (src/db/connections.ts). */
  connections: ConnectionShare;
  /** One Int32: the thread's attempts in flight. */
  inFlight: SharedArrayBuffer;
  /** One BigInt64: when the thread's scheduler last completed a claim cycle (Scheduler.lastCycleAt). */
  lastCycle: SharedArrayBuffer;
}

export type ToWorkerThread = { type: 'metrics'; id: number } | { type: 'stop'; graceMs: number };

export type FromWorkerThread =
  | { type: 'started' }
  | { type: 'failed'; message: string }
  | { type: 'log'; lines: string[] }
  | { type: 'metrics'; id: number; snapshot: MetricsSnapshot }
  | { type: 'stopped' };

export interface WorkerThread extends Scheduler {
  /** The thread's delivery metrics; null while it is not running or does not answer in time. */
  metrics(): Promise<MetricsSnapshot | null>;
  /** The thread running now, if any. */
  readonly thread: Worker | undefined;
}

const METRICS_TIMEOUT_MS = 2_000;
const RESTART_DELAYS_MS = [1_000, 5_000, 30_000];

/** Whether this gateway runs its worker on a thread of its own. */
export function usesWorkerThread(config: Config, embedded: boolean): boolean {
  // The embedded database serves one connection, on the main thread.
  return config.role === 'all' && config.workerThread && !embedded;
}

function spawn(data: WorkerThreadData): Worker {
  const entry = new URL(`./worker-thread-main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
  if (entry.pathname.endsWith('.js')) return new Worker(entry, { workerData: data });
  // Run from source (tests, `npm run dev`): the thread compiles TypeScript as the main thread does.
  const boot = `import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};
register();
await import(${JSON.stringify(entry.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: data });
}

export async function startWorkerThread(options: { config: Config; connections: ConnectionShare; logger: Logger }): Promise<WorkerThread> {
  const { config, connections, logger } = options;
  // The thread's lines are complete JSON lines, redacted there; they go where this logger's go.
  const destination = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym]!;
  const inFlight = new SharedArrayBuffer(4);
  const counter = new Int32Array(inFlight);
  const lastCycle = new SharedArrayBuffer(8);
  const lastCycleAt = new BigInt64Array(lastCycle);
  const pendingMetrics = new Map<number, (snapshot: MetricsSnapshot | null) => void>();
  let nextMetricsId = 1;
  let current: Worker | undefined;
  let stopping = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  /** Starts a thread and resolves once it runs; rejects if it cannot start. */
  function run(): Promise<void> {
    // A thread starting counts as a cycle: readiness gives it the same time as a new process.
    Atomics.store(lastCycleAt, 0, BigInt(Date.now()));
    const worker = spawn({ config, connections, inFlight, lastCycle });
    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (message: FromWorkerThread) => {
        switch (message.type) {
          case 'log':
            for (const line of message.lines) destination.write(line);
            break;
          case 'metrics':
            pendingMetrics.get(message.id)?.(message.snapshot);
            pendingMetrics.delete(message.id);
            break;
          case 'started':
            started = true;
            current = worker;
            restarts = 0;
            resolve();
            break;
          case 'failed':
            reject(new Error(`the worker thread could not start: ${message.message}`));
            void worker.terminate();
            break;
          case 'stopped':
            break;
        }
      });
      worker.on('error', (err) => {
        if (started) logger.error({ err }, 'worker thread failed');
        else reject(err);
      });
      worker.on('exit', (code) => {
        Atomics.store(counter, 0, 0);
        for (const answer of pendingMetrics.values()) answer(null);
        pendingMetrics.clear();
        if (!started) {
          reject(new Error(`the worker thread exited (${code}) while starting`));
          return;
        }
        if (current === worker) current = undefined;
        if (!stopping) scheduleRestart(code);
      });
    });
  }

  /** A thread exited without being asked to: start another, backing off while they keep failing. */
  function scheduleRestart(code: number): void {
    const delay = RESTART_DELAYS_MS[Math.min(restarts, RESTART_DELAYS_MS.length - 1)]!;
    restarts += 1;
    logger.error({ code, restartInMs: delay }, 'worker thread exited; starting another');
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (stopping) return;
      run().catch((err: unknown) => {
        logger.error({ err }, 'worker thread could not be started again');
        if (!stopping) scheduleRestart(1);
      });
    }, delay);
  }

  await run();

  return {
    get thread() {
      return current;
    },
    get inFlight() {
      return Atomics.load(counter, 0);
    },
    get lastCycleAt() {
      return Number(Atomics.load(lastCycleAt, 0));
    },
    start() {
      // Running since startWorkerThread resolved.
    },
    metrics() {
      const worker = current;
      if (!worker) return Promise.resolve(null);
      const id = nextMetricsId++;
      return new Promise<MetricsSnapshot | null>((resolve) => {
        const timer = setTimeout(() => {
          pendingMetrics.delete(id);
          resolve(null);
        }, METRICS_TIMEOUT_MS);
        pendingMetrics.set(id, (snapshot) => {
          clearTimeout(timer);
          resolve(snapshot);
        });
        worker.postMessage({ type: 'metrics', id } satisfies ToWorkerThread);
      });
    },
    async stop(graceMs) {
      stopping = true;
      clearTimeout(restartTimer);
      const worker = current;
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'stop', graceMs } satisfies ToWorkerThread);
      // The thread waits up to graceMs for its attempts, then hands back their leases and closes
      // its pools; past a further bound it is stopped outright.
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), graceMs + 10_000);
      });
      if ((await Promise.race([exited, bound])) === 'late') {
        logger.warn('worker thread did not stop in time; terminating it');
        await worker.terminate();
      }
      clearTimeout(timer);
    },
  };
}
