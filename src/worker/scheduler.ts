// The worker loop: claim due deliveries into free slots, send them, repeat. Woken by NOTIFY when
// something is published or a slot frees up, and by a poll timer as the fallback (retries that
// come due, missed notifications). Nothing here is durable state: the queue is the table. Which
// rows to take and which spares to send is the claim rule's (claim.ts): the loop tells it what
// happened (a claim answered, a request ended, a webhook changed) and does what it answers.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { CHANNEL_DELIVERIES_DUE, CHANNEL_RECOVERIES, CHANNEL_WEBHOOKS_CHANGED, type Notifier } from '../db/notifier.js';
import type { Deliverer } from './deliverer.js';
import { claimDue, createHoldings, type ClaimedDelivery } from './claim.js';
import { deleteExpiredSecrets } from '../modules/webhooks/previous-secrets.js';
import { pruneAttempts, releaseLeases } from './queue.js';
import { runRecoveryBatch } from './recovery.js';

export interface SchedulerOptions {
  concurrency: number;
  perWebhookCap: number;
  pollIntervalMs: number;
  /** Must exceed the HTTP timeout, so a live worker's lease never lapses mid-send. */
  leaseMs: number;
  /** The HTTP timeout: how long a spare may wait for the request it follows. */
  requestTimeoutMs: number;
  attemptRetentionMs: number;
  /** Rows a bulk recover visits per batch (RECOVER_BATCH_SIZE). */
  recoverBatchSize: number;
  /** The pause between recover batches (RECOVER_BATCH_DELAY). */
  recoverBatchDelayMs: number;
}

export interface Scheduler {
  start(): void;
  /** Stops claiming, waits up to `graceMs` for attempts in flight, and hands back the rest. */
  stop(graceMs: number): Promise<void>;
  /** Attempts being sent or recorded (spares not counted). */
  readonly inFlight: number;
  /**
   * When the claim loop last completed a cycle (ms since the epoch): a claim answered, or every
   * slot was busy. The start time until the first. Readiness reports a worker stuck past a bound.
   */
  readonly lastCycleAt: number;
}

const PRUNE_INTERVAL_MS = 60 * 60 * 1000;

/** The scheduler's settings, from the gateway's. */
export function schedulerOptions(config: Config): SchedulerOptions {
  return {
    concurrency: config.workerConcurrency,
    perWebhookCap: config.maxInFlightPerWebhook,
    pollIntervalMs: config.pollIntervalMs,
    // The margin (WORKER_LEASE_MARGIN) covers recording the attempt after the HTTP timeout, so a
    // live worker never loses its lease mid-send; a dead worker's rows come back after it.
    leaseMs: config.webhookTimeoutMs + config.workerLeaseMarginMs,
    requestTimeoutMs: config.webhookTimeoutMs,
    attemptRetentionMs: config.attemptRetentionMs,
    recoverBatchSize: config.recoverBatchSize,
    recoverBatchDelayMs: config.recoverBatchDelayMs,
  };
}

export function createScheduler(deps: {
  orm: MikroORM;
  notifier: Notifier;
  deliverer: Deliverer;
  logger: Logger;
  options: SchedulerOptions;
  /** Told the number of attempts in flight each time it changes. */
  onInFlightChange?: (count: number) => void;
  /** Told the time of each completed claim cycle (see Scheduler.lastCycleAt). */
  onCycle?: (at: number) => void;
}): Scheduler {
  const { orm, logger, options } = deps;
  const holdings = createHoldings({ leaseMs: options.leaseMs, requestTimeoutMs: options.requestTimeoutMs });
  const inFlight = new Map<string, Promise<void>>();
  let running = false;
  const claims = createAlarm();
  let loopDone: Promise<void> | undefined;
  let unlisten: (() => void)[] = [];
  let pruneTimer: NodeJS.Timeout | undefined;
  let abandoned = new AbortController();

  const wake = claims.wake;
  const sleep = claims.sleep;

  /** Releases being written; the stop waits for them before the database closes. */
  const handingBack = new Set<Promise<void>>();
  /** Clears the leases of spares this worker will not send, so any worker may claim them now. */
  const handBack = (spares: ClaimedDelivery[], reason: string) => {
    if (spares.length === 0) return;
    logger.debug({ count: spares.length, reason }, 'spare deliveries handed back');
    // If this fails the leases lapse by themselves: the rows are only claimed later.
    const release = releaseLeases(orm.em.fork(), spares.map((d) => d.id))
      .catch((err: unknown) => logger.warn({ err }, 'handing back spare deliveries failed'))
      .finally(() => {
        handingBack.delete(release);
        wake();
      });
    handingBack.add(release);
  };

  /** Sends a delivery the holdings count as an open request. */
  function start(delivery: ClaimedDelivery): void {
    let requestOver = false;
    const endRequest = () => {
      if (requestOver) return;
      requestOver = true;
      holdings.ended(delivery.webhookId);
      sendSpares(delivery.webhookId);
      wake();
    };
    const job = deps.deliverer
      .deliver(delivery, { abandoned: abandoned.signal, onSent: endRequest })
      .then(() => undefined)
      .catch((err: unknown) => {
        // The lease will lapse and another attempt will be made: at least once.
        logger.error({ err, deliveryId: delivery.id }, 'delivery attempt could not be completed');
      })
      .finally(() => {
        inFlight.delete(delivery.id);
        deps.onInFlightChange?.(inFlight.size);
        endRequest();
        for (const webhookId of holdings.waiting()) sendSpares(webhookId);
        wake();
      });
    inFlight.set(delivery.id, job);
    deps.onInFlightChange?.(inFlight.size);
  }

  /** Sends the spares of a webhook that the holdings release into free slots. */
  function sendSpares(webhookId: string): void {
    if (!running) return;
    const { send, late } = holdings.sparesToSend(webhookId, options.concurrency - inFlight.size, Date.now());
    for (const delivery of send) start(delivery);
    handBack(late, 'waited too long');
  }

  let lastCycleAt = Date.now();
  const cycleCompleted = () => {
    lastCycleAt = Date.now();
    deps.onCycle?.(lastCycleAt);
  };

  async function loop(): Promise<void> {
    while (running) {
      const free = options.concurrency - inFlight.size;
      let sentCount = 0;
      if (free <= 0) cycleCompleted();
      else {
        try {
          const held = holdings.forClaim(inFlight.keys());
          const claimStarted = Date.now();
          const claimed = await claimDue(orm.em.fork(), {
            limit: free,
            slots: options.concurrency,
            perWebhookCap: options.perWebhookCap,
            leaseMs: options.leaseMs,
            spareLeaseMs: holdings.spareLeaseMs,
            heldIds: held.heldIds,
            shares: held.shares,
          });
          sentCount = claimed.send.length;
          cycleCompleted();
          if (!running) {
            // Stopped while claiming: nothing new starts; the stop hands everything back.
            handBack([...claimed.send, ...claimed.spares], 'shutdown');
            break;
          }
          const touched = holdings.took(claimed, held.shares, claimStarted);
          for (const delivery of claimed.send) start(delivery);
          for (const webhookId of touched) sendSpares(webhookId);
        } catch (err) {
          // A database blip (restart, failover) must not stop the worker: wait and claim again.
          logger.warn({ err }, 'claiming deliveries failed; retrying');
        }
      }
      if (running && (free <= 0 || sentCount < free)) await sleep(options.pollIntervalMs);
    }
  }

  // Bulk recovers run beside the claim loop, one batch at a time (src/worker/recovery.ts), so a
  // large one never holds a claim back for long; woken when one starts, and polled like the queue.
  const recoveries = createAlarm();
  let recoverDone: Promise<void> | undefined;
  const wakeRecoveries = recoveries.wake;
  const recoverSleep = recoveries.sleep;

  async function recoverLoop(): Promise<void> {
    while (running) {
      let ran = false;
      try {
        const batch = await runRecoveryBatch(orm.em.fork(), options.recoverBatchSize);
        ran = batch !== null;
        if (batch && batch.queued > 0) {
          await deps.notifier.notify(CHANNEL_DELIVERIES_DUE, '').catch(() => undefined);
        }
        if (batch?.completed) logger.info({ recoveryId: batch.recoveryId }, 'recovery completed');
      } catch (err) {
        logger.warn({ err }, 'a recover batch failed; retrying');
      }
      if (!running) break;
      if (!ran) await recoverSleep(options.pollIntervalMs);
      else if (options.recoverBatchDelayMs > 0) await recoverSleep(options.recoverBatchDelayMs);
    }
  }

  async function prune() {
    try {
      const removed = await pruneAttempts(orm.em.fork(), options.attemptRetentionMs);
      if (removed > 0) logger.info({ removed }, 'old delivery attempts pruned');
    } catch (err) {
      logger.warn({ err }, 'pruning delivery attempts failed');
    }
    try {
      // Attempts delete the expired secrets they meet; these are of webhooks nothing was sent to.
      const removed = await deleteExpiredSecrets(orm.em.fork(), null);
      if (removed > 0) logger.info({ removed }, 'expired webhook secrets deleted');
    } catch (err) {
      logger.warn({ err }, 'deleting expired webhook secrets failed');
    }
  }

  return {
    get inFlight() {
      return inFlight.size;
    },
    get lastCycleAt() {
      return lastCycleAt;
    },
    start() {
      if (running) return;
      running = true;
      cycleCompleted();
      abandoned = new AbortController();
      unlisten = [
        deps.notifier.listen(CHANNEL_DELIVERIES_DUE, wake),
        // An empty payload: the listening connection was re-established and notices may be lost.
        deps.notifier.listen(CHANNEL_RECOVERIES, wakeRecoveries),
        deps.notifier.listen(CHANNEL_WEBHOOKS_CHANGED, (webhookId) =>
          handBack(holdings.drop(webhookId === '' ? null : webhookId), 'webhook changed'),
        ),
      ];
      loopDone = loop();
      recoverDone = recoverLoop();
      void prune();
      pruneTimer = setInterval(() => void prune(), PRUNE_INTERVAL_MS);
      pruneTimer.unref();
    },
    async stop(graceMs) {
      if (!running) return;
      running = false;
      for (const off of unlisten) off();
      unlisten = [];
      clearInterval(pruneTimer);
      wake();
      wakeRecoveries();
      // A recover batch under way commits or rolls back as a whole; either way the next process
      // goes on from where the recovery's row says.
      await Promise.all([loopDone, recoverDone]);
      // Spares are not sent any more: another worker may take them at once.
      handBack(holdings.drop(null), 'shutdown');
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
      await Promise.all([...handingBack]);
    },
  };
}

/**
 * A sleep that a wake cuts short; a wake while nothing sleeps makes the next sleep return at once,
 * so a wake between a loop's check and its sleep is never lost (stop wakes every loop this way).
 */
function createAlarm(): { wake: () => void; sleep: (ms: number) => Promise<void> } {
  let pending = false;
  let ring: (() => void) | undefined;
  return {
    wake: () => {
      pending = true;
      ring?.();
    },
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        if (pending) {
          pending = false;
          resolve();
          return;
        }
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          ring = undefined;
          pending = false;
          resolve();
        }
        ring = done;
      }),
  };
}
