// The worker loop: claim due deliveries into free slots, send them, repeat. Woken by NOTIFY when
// something is published or a slot frees up, and by a poll timer as the fallback (retries that
// come due, missed notifications). Nothing here is durable state: the queue is the table.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { CHANNEL_DELIVERIES_DUE, type Notifier } from '../db/notifier.js';
import type { Deliverer } from './deliverer.js';
import { claimDue, pruneAttempts, releaseLeases } from './queue.js';

export interface SchedulerOptions {
  concurrency: number;
  perWebhookCap: number;
  pollIntervalMs: number;
  /** Must exceed the HTTP timeout, so a live worker's lease never lapses mid-send. */
  leaseMs: number;
  attemptRetentionMs: number;
}

export interface Scheduler {
  start(): void;
  /** Stops claiming, waits up to `graceMs` for attempts in flight, and hands back the rest. */
  stop(graceMs: number): Promise<void>;
  readonly inFlight: number;
}

const PRUNE_INTERVAL_MS = 60 * 60 * 1000;

export function createScheduler(deps: {
  orm: MikroORM;
  notifier: Notifier;
  deliverer: Deliverer;
  logger: Logger;
  options: SchedulerOptions;
}): Scheduler {
  const { orm, logger, options } = deps;
  const inFlight = new Map<string, Promise<void>>();
  // Attempts whose request is over and whose record is being written. Their rows stay leased
  // (nobody else may take them) but no request to their endpoint is open, so the claim does not
  // count them against the per-webhook cap: a webhook's next attempt need not wait for the record.
  const sent = new Set<string>();
  let running = false;
  let wakePending = false;
  let wakeUp: (() => void) | undefined;
  let loopDone: Promise<void> | undefined;
  let unlisten: (() => void) | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;
  let abandoned = new AbortController();

  const wake = () => {
    wakePending = true;
    wakeUp?.();
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (wakePending) {
        wakePending = false;
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        wakePending = false;
        resolve();
      }
      wakeUp = done;
    });

  async function loop(): Promise<void> {
    while (running) {
      const free = options.concurrency - inFlight.size;
      let claimedCount = 0;
      if (free > 0) {
        try {
          const claimed = await claimDue(orm.em.fork(), {
            limit: free,
            perWebhookCap: options.perWebhookCap,
            leaseMs: options.leaseMs,
            sentIds: [...sent],
          });
          claimedCount = claimed.length;
          for (const delivery of claimed) {
            const onSent = () => {
              sent.add(delivery.id);
              wake();
            };
            const job = deps.deliverer
              .deliver(delivery, { abandoned: abandoned.signal, onSent })
              .then(() => undefined)
              .catch((err: unknown) => {
                // The lease will lapse and another attempt will be made: at least once.
                logger.error({ err, deliveryId: delivery.id }, 'delivery attempt could not be completed');
              })
              .finally(() => {
                sent.delete(delivery.id);
                inFlight.delete(delivery.id);
                wake();
              });
            inFlight.set(delivery.id, job);
          }
        } catch (err) {
          // A database blip (restart, failover) must not stop the worker: wait and claim again.
          logger.warn({ err }, 'claiming deliveries failed; retrying');
        }
      }
      if (running && (free <= 0 || claimedCount < free)) await sleep(options.pollIntervalMs);
    }
  }

  async function prune() {
    try {
      const removed = await pruneAttempts(orm.em.fork(), options.attemptRetentionMs);
      if (removed > 0) logger.info({ removed }, 'old delivery attempts pruned');
    } catch (err) {
      logger.warn({ err }, 'pruning delivery attempts failed');
    }
  }

  return {
    get inFlight() {
      return inFlight.size;
    },
    start() {
      if (running) return;
      running = true;
      abandoned = new AbortController();
      unlisten = deps.notifier.listen(CHANNEL_DELIVERIES_DUE, wake);
      loopDone = loop();
      void prune();
      pruneTimer = setInterval(() => void prune(), PRUNE_INTERVAL_MS);
      pruneTimer.unref();
    },
    async stop(graceMs) {
      if (!running) return;
      running = false;
      unlisten?.();
      clearInterval(pruneTimer);
      wake();
      await loopDone;
      const pending = [...inFlight.values()];
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(pending),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (inFlight.size > 0) {
        const ids = [...inFlight.keys()];
        logger.warn({ count: ids.length }, 'attempts still in flight at shutdown; releasing their leases');
        // Before the release: once a row is free another worker may claim it, so an outcome that
        // arrives later (the sender is closed next, failing every request still open) must not
        // be recorded over that worker's attempt, nor push the row to the retry schedule.
        abandoned.abort();
        await releaseLeases(orm.em.fork(), ids).catch((err: unknown) => logger.warn({ err }, 'releasing leases failed'));
      }
    },
  };
}
