// The worker loop: claim due deliveries into free slots, send them, repeat. Woken by NOTIFY when
// something is published or a slot frees up, and by a poll timer as the fallback (retries that
// come due, missed notifications). Nothing here is durable state: the queue is the table.
// Spare rows (see CLAIM_SQL): the claim may lease this worker a spare row per request it holds
// open to a webhook; when one of those requests ends, the next spare of that webhook is sent in
// its place at once, without waiting for a claim. A spare is never sent into a slot it did not
// inherit from a request of this worker, so the worker never has more requests open to a webhook
// than its last claim allowed. Spares are handed back (their leases cleared, so any worker may
// claim them at once) when their webhook changes, when they have waited too long, and at shutdown.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { CHANNEL_DELIVERIES_DUE, CHANNEL_WEBHOOKS_CHANGED, type Notifier } from '../db/notifier.js';
import type { Deliverer } from './deliverer.js';
import { claimDue, pruneAttempts, releaseLeases, type ClaimedDelivery, type HeldShare } from './queue.js';

export interface SchedulerOptions {
  concurrency: number;
  perWebhookCap: number;
  pollIntervalMs: number;
  /** Must exceed the HTTP timeout, so a live worker's lease never lapses mid-send. */
  leaseMs: number;
  /** The HTTP timeout: how long a spare may wait for the request it follows. */
  requestTimeoutMs: number;
  attemptRetentionMs: number;
}

export interface Scheduler {
  start(): void;
  /** Stops claiming, waits up to `graceMs` for attempts in flight, and hands back the rest. */
  stop(graceMs: number): Promise<void>;
  /** Attempts being sent or recorded (spares not counted). */
  readonly inFlight: number;
}

/** What this worker holds of one webhook. */
interface Share {
  /** Requests open (sent, not yet over). */
  open: number;
  /** The most requests this worker may have open to the webhook: what its last claim allowed. */
  slots: number;
  /** Spare rows, oldest first, each with the time by which it must be sent. */
  spares: { delivery: ClaimedDelivery; sendBy: number }[];
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
}): Scheduler {
  const { orm, logger, options } = deps;
  // A spare is leased for one request longer than a row sent at once; it is handed back rather
  // than sent once less than a whole lease is left.
  const spareLeaseMs = options.leaseMs + options.requestTimeoutMs;
  const inFlight = new Map<string, Promise<void>>();
  const shares = new Map<string, Share>();
  /** Webhooks with spares that wait for a free worker slot. */
  const waitingForSlot = new Set<string>();
  let running = false;
  let wakePending = false;
  let wakeUp: (() => void) | undefined;
  let loopDone: Promise<void> | undefined;
  let unlisten: (() => void)[] = [];
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

  const shareOf = (webhookId: string): Share => {
    let share = shares.get(webhookId);
    if (!share) shares.set(webhookId, (share = { open: 0, slots: 0, spares: [] }));
    return share;
  };

  /** Forgets a webhook's share once nothing of it is held. */
  const settle = (webhookId: string, share: Share) => {
    if (share.spares.length === 0) {
      // Slots without a spare to fill them go back: the next claim counts them again.
      share.slots = share.open;
      waitingForSlot.delete(webhookId);
      if (share.open === 0) shares.delete(webhookId);
    }
  };

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

  function start(delivery: ClaimedDelivery): void {
    const share = shareOf(delivery.webhookId);
    share.open += 1;
    let requestOver = false;
    const endRequest = () => {
      if (requestOver) return;
      requestOver = true;
      share.open -= 1;
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
        for (const webhookId of [...waitingForSlot]) sendSpares(webhookId);
        wake();
      });
    inFlight.set(delivery.id, job);
    deps.onInFlightChange?.(inFlight.size);
  }

  /** Sends a webhook's spares into the slots its ended requests left, while worker slots are free. */
  function sendSpares(webhookId: string): void {
    const share = shares.get(webhookId);
    if (!share) return;
    const late: ClaimedDelivery[] = [];
    while (running && share.spares.length > 0 && share.open < share.slots) {
      if (inFlight.size >= options.concurrency) {
        waitingForSlot.add(webhookId);
        break;
      }
      const next = share.spares.shift()!;
      if (Date.now() > next.sendBy) late.push(next.delivery);
      else start(next.delivery);
    }
    if (share.spares.length === 0 || share.open >= share.slots) waitingForSlot.delete(webhookId);
    handBack(late, 'waited too long');
    settle(webhookId, share);
  }

  /**
   * Hands back the spares of a webhook that changed (disabled, deleted, moved to another URL), or
   * of every webhook (null), so they are claimed afresh with the webhook as it now is.
   */
  function dropSpares(webhookId: string | null, reason: string): void {
    const dropped: ClaimedDelivery[] = [];
    for (const id of webhookId === null ? [...shares.keys()] : [webhookId]) {
      const share = shares.get(id);
      if (!share) continue;
      dropped.push(...share.spares.splice(0).map((s) => s.delivery));
      settle(id, share);
    }
    handBack(dropped, reason);
  }

  function held(): { ids: string[]; shares: HeldShare[] } {
    const ids = [...inFlight.keys()];
    const list: HeldShare[] = [];
    for (const [webhookId, share] of shares) {
      for (const spare of share.spares) ids.push(spare.delivery.id);
      if (share.open > 0 || share.spares.length > 0) list.push({ webhookId, open: share.open, spares: share.spares.length });
    }
    return { ids, shares: list };
  }

  async function loop(): Promise<void> {
    while (running) {
      const free = options.concurrency - inFlight.size;
      let sentCount = 0;
      if (free > 0) {
        try {
          const holding = held();
          const claimStarted = Date.now();
          const claimed = await claimDue(orm.em.fork(), {
            limit: free,
            slots: options.concurrency,
            perWebhookCap: options.perWebhookCap,
            leaseMs: options.leaseMs,
            spareLeaseMs,
            heldIds: holding.ids,
            shares: holding.shares,
          });
          sentCount = claimed.send.length;
          if (!running) {
            // Stopped while claiming: nothing new starts; the stop hands everything back.
            handBack([...claimed.send, ...claimed.spares], 'shutdown');
            break;
          }
          // What this claim allowed on each webhook it gave rows of: the requests open when it was
          // sent, and the rows it sends now. Requests that ended meanwhile leave their slots to spares.
          const openAtClaim = new Map(holding.shares.map((h) => [h.webhookId, h.open]));
          const allowed = new Map<string, number>();
          for (const delivery of [...claimed.send, ...claimed.spares]) {
            allowed.set(delivery.webhookId, openAtClaim.get(delivery.webhookId) ?? 0);
          }
          for (const delivery of claimed.send) {
            allowed.set(delivery.webhookId, allowed.get(delivery.webhookId)! + 1);
            start(delivery);
          }
          // By then the spare's lease still covers a whole request and half the margin for its record.
          const sendBy = claimStarted + options.requestTimeoutMs + (options.leaseMs - options.requestTimeoutMs) / 2;
          for (const delivery of claimed.spares) shareOf(delivery.webhookId).spares.push({ delivery, sendBy });
          for (const [webhookId, slots] of allowed) {
            shareOf(webhookId).slots = slots;
            sendSpares(webhookId);
          }
        } catch (err) {
          // A database blip (restart, failover) must not stop the worker: wait and claim again.
          logger.warn({ err }, 'claiming deliveries failed; retrying');
        }
      }
      if (running && (free <= 0 || sentCount < free)) await sleep(options.pollIntervalMs);
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
      unlisten = [
        deps.notifier.listen(CHANNEL_DELIVERIES_DUE, wake),
        // An empty payload: the listening connection was re-established and notices may be lost.
        deps.notifier.listen(CHANNEL_WEBHOOKS_CHANGED, (webhookId) =>
          dropSpares(webhookId === '' ? null : webhookId, 'webhook changed'),
        ),
      ];
      loopDone = loop();
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
      await loopDone;
      // Spares are not sent any more: another worker may take them at once.
      dropSpares(null, 'shutdown');
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
