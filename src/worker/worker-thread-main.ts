// The worker role on a thread of its own (see worker-thread.ts): its own database pools, LISTEN
// connection, sender and scheduler, as a ROLE=worker process would have, so sending and recording
// never wait behind the API's requests on one event loop. It talks to the main thread only about
// itself: started or failed, its log lines, its delivery metrics, its count of attempts in flight,
// and when to stop.
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from 'prom-client';
import type { Config } from '../config.js';
import { createSecretBox } from '../crypto/secrets.js';
import { openDatabase } from '../db/connections.js';
import { createLogger } from '../logger.js';
import { createDeliveryMetrics } from '../observability/metrics.js';
import { createDeliverer } from './deliverer.js';
import { createScheduler, schedulerOptions } from './scheduler.js';
import { createSender, senderOptions } from './sender.js';
import type { FromWorkerThread, ToWorkerThread, WorkerThreadData } from './worker-thread.js';

const port = parentPort!;
const { config, connections, inFlight, lastCycle } = workerData as WorkerThreadData;
const counter = new Int32Array(inFlight);
const lastCycleAt = new BigInt64Array(lastCycle);
const post = (message: FromWorkerThread) => port.postMessage(message);

// Log lines go to the main thread, which writes them where its own go; those written in one turn
// of the event loop travel together.
let lines: string[] = [];
const flushLines = () => {
  if (lines.length === 0) return;
  post({ type: 'log', lines });
  lines = [];
};
const logger = createLogger(config.logLevel, {
  write(line: string) {
    if (lines.push(line) === 1) setImmediate(flushLines);
    return true;
  },
} as NodeJS.WritableStream);

async function main(config: Config): Promise<void> {
  const db = await openDatabase(config, { share: connections, logger });
  const registry = new Registry();
  const metrics = createDeliveryMetrics(registry);
  const notifier = db.createNotifier(logger);
  const sender = createSender(senderOptions(config));
  const deliverer = createDeliverer({
    metrics,
    orm: db.orm,
    sender,
    // Checked by the main thread before it started this one: a real database needs it configured.
    secretBox: createSecretBox(config.encryptionKey!),
    notifier,
    retryScheduleMs: config.retryScheduleMs,
    retryAfterMaxMs: config.retryAfterMaxMs,
    disableAfterMs: config.webhookDisableAfterMs,
    logger,
  });
  const scheduler = createScheduler({
    orm: db.orm,
    notifier,
    deliverer,
    logger,
    options: schedulerOptions(config),
    onInFlightChange: (count) => Atomics.store(counter, 0, count),
    onCycle: (at) => Atomics.store(lastCycleAt, 0, BigInt(at)),
  });

  port.on('message', (message: ToWorkerThread) => {
    if (message.type === 'metrics') {
      void registry.getMetricsAsJSON().then((snapshot) => post({ type: 'metrics', id: message.id, snapshot }));
      return;
    }
    void (async () => {
      await scheduler.stop(message.graceMs);
      sender.close();
      await notifier.close();
      await db.close();
      flushLines();
      post({ type: 'stopped' });
      port.close();
    })().catch((err: unknown) => {
      logger.error({ err }, 'worker thread did not stop cleanly');
      flushLines();
      post({ type: 'stopped' });
      port.close();
    });
  });
  scheduler.start();
  post({ type: 'started' });
}

main(config).catch((err: unknown) => {
  flushLines();
  post({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  port.close();
});
