// Live delivery updates for the subscribers of one api process, and webhooks' health changes
// (webhookHealth), which travel on the same channel as notices of kind `health` and count in the
// same per-tenant quota.
//
// One listener on CHANNEL_DELIVERY_UPDATES per gateway, however many subscribers: notices carry
// ids only, and one drain loop loads what they name (with a fresh EntityManager fork per batch)
// and hands each update to the matching subscribers' queues in memory. Invariants:
// - A subscriber only ever receives rows whose tenant_id is its own: the filter uses the loaded
//   row, not the notice, so a wrong or forged notice cannot leak another tenant's delivery.
// - Nothing here waits for a subscriber. Queues are bounded; a subscriber that falls behind is
//   ended (with an error it can act on) instead of slowing the loop, the notifier or a worker.
// - Notices for tenants without a subscriber here are dropped before any query, and loading is
//   one batch at a time, so the database cost is bounded whatever the notice rate.
// - Ending a subscription (client gone, unsubscribed, shutdown) removes it at once; the process
//   keeps no per-subscriber state after that, and its slot in the tenant's quota is free again.
// - A tenant holds at most `maxPerTenant` subscriptions here (MAX_SUBSCRIPTIONS_PER_TENANT), over
//   every transport: the count is the tenant's own set below, so it cannot drift from what is open.
//   One more is refused before anything is created or listened to.
// - A subscription ends with the credentials it was opened with (see credential-watch.ts): its
//   last message says why, and nothing queued before it is handed out after its credentials end.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { CHANNEL_DELIVERY_UPDATES, type Notifier } from '../db/notifier.js';
import type { Viewer } from '../auth/viewer.js';
import { AppError } from '../errors.js';
import { DeliveryAttemptSchema, type DeliveryAttempt } from '../modules/deliveries/delivery-attempt.entity.js';
import { DeliverySchema, type Delivery } from '../modules/deliveries/delivery.entity.js';
import type { CredentialsEnd, CredentialWatch } from './credential-watch.js';
import { parseNotice, type UpdateNotice } from './delivery-update-notice.js';
import { loadHealthChanges, type WebhookHealthChange } from './webhook-health-change.js';

export type DeliveryUpdateKind = 'created' | 'attempt' | 'status';

export interface DeliveryUpdate {
  kind: DeliveryUpdateKind;
  delivery: Delivery;
  attempt: DeliveryAttempt | null;
}

/**
 * What a subscription yields: updates, and last of all `overflow` if it fell too far behind, or
 * `credentials-ended` once its token expired or its API key was revoked.
 */
export type DeliveryUpdateMessage = DeliveryUpdate | SubscriptionEnd;

/** The last message of a subscription that ends on its own. */
export type SubscriptionEnd = { kind: 'overflow' } | { kind: 'credentials-ended'; why: CredentialsEnd };

/** What a webhookHealth subscription yields: changes, and last of all why it ended, as above. */
export type WebhookHealthMessage = WebhookHealthChange | SubscriptionEnd;

export interface DeliveryUpdateHub {
  /**
   * Throws RATE_LIMITED when the tenant already has its quota of subscriptions open here. With
   * `credentials`, the subscription ends when they do.
   */
  subscribe(tenantId: string, webhookId: string | null, credentials?: Viewer): AsyncIterableIterator<DeliveryUpdateMessage>;
  /** Health changes of one webhook (webhookHealth), under the same quota and rules. */
  subscribeHealth(tenantId: string, webhookId: string, credentials?: Viewer): AsyncIterableIterator<WebhookHealthMessage>;
  /** Throws RATE_LIMITED when the tenant may not open one more subscription here now. */
  checkRoom(tenantId: string): void;
  /** Subscriptions open here, over every transport (for the metrics gauge). */
  openCount(): number;
  /** Ends every subscription and stops listening; later subscriptions end at once. */
  close(): void;
}

export interface DeliveryUpdateHubDeps {
  notifier: Notifier;
  orm: MikroORM;
  logger?: Logger | undefined;
  /** MAX_SUBSCRIPTIONS_PER_TENANT. */
  maxPerTenant: number;
  credentials: CredentialWatch;
}

/** Updates a subscriber may have waiting before it is ended as too slow. */
export const SUBSCRIBER_QUEUE_LIMIT = 256;
/** Notices waiting to be loaded; past this, new ones are dropped (and logged). */
const BACKLOG_LIMIT = 10_000;
const BATCH_SIZE = 200;
/** After a lost LISTEN connection, at most this many recent attempts are replayed. */
const RESYNC_LIMIT = 500;
/**
 * Clock difference tolerated between this process and Postgres when replaying: a replay may
 * reach this far before a subscription started, never further.
 */
const CLOCK_SKEW_MS = 5_000;
/** Attempt ids already sent, so a replay does not send them twice. */
const RECENT_ATTEMPTS = 2_000;

// Updates are loaded a moment after the change they announce, and a delivery may have moved on
// by then (retries can be milliseconds apart). Each update shows the delivery as that change left
// it, so a subscriber sees a consistent timeline and its last update is the current state.

/** The delivery as it was queued. */
function asQueued(d: Delivery): Delivery {
  if (d.attempts === 0) return d;
  return { ...d, status: 'pending', attempts: 0, nextAttemptAt: d.createdAt, leaseExpiresAt: null, updatedAt: d.createdAt };
}

/** The delivery right after `a`: the attempt record says what it led to. */
function afterAttempt(d: Delivery, a: DeliveryAttempt): Delivery {
  if (d.attempts === a.attempt) return d;
  const status = a.status === 'success' ? 'success' : a.nextRetryAt ? 'pending' : d.status === 'cancelled' ? 'cancelled' : 'failed';
  return { ...d, status, attempts: a.attempt, nextAttemptAt: a.nextRetryAt, leaseExpiresAt: null, updatedAt: a.createdAt };
}

/** The delivery as a resend left it: pending and due, its attempt count unchanged. */
function asResent(d: Delivery, n: { attempts: number; at: string }): Delivery {
  if (d.attempts === n.attempts && d.status === 'pending') return d;
  const at = new Date(n.at);
  return { ...d, status: 'pending', attempts: n.attempts, nextAttemptAt: at, leaseExpiresAt: null, updatedAt: at };
}

class Subscription<U extends DeliveryUpdate | WebhookHealthChange> implements AsyncIterableIterator<U | SubscriptionEnd> {
  private queue: (U | SubscriptionEnd)[] = [];
  private readonly waiting: ((result: IteratorResult<U | SubscriptionEnd>) => void)[] = [];
  private open = true;
  /** Stops watching the credentials it was opened with. */
  unwatch: () => void = () => undefined;

  constructor(
    /** deliveryUpdates or webhookHealth: which updates it takes. */
    readonly topic: 'deliveries' | 'health',
    readonly tenantId: string,
    readonly webhookId: string | null,
    /** When it started (this process's clock), which bounds what a replay may send it. */
    readonly since: number,
    private readonly detach: (s: AnySubscription) => void,
  ) {}

  push(update: U): void {
    if (!this.open) return;
    const waiter = this.waiting.shift();
    if (waiter) {
      waiter({ value: update, done: false });
    } else if (this.queue.length >= SUBSCRIBER_QUEUE_LIMIT) {
      // What is queued is already stale for a client this far behind; it must re-read anyway.
      this.finish({ kind: 'overflow' });
    } else {
      this.queue.push(update);
    }
  }

  /** Stops taking updates; what is queued is still handed out, then the iteration ends. */
  stop(): void {
    if (!this.open) return;
    this.open = false;
    this.unwatch();
    this.detach(this as AnySubscription);
    if (this.queue.length === 0) for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
  }

  /** Ends with `last` as the only message still to be handed out. */
  finish(last: SubscriptionEnd): void {
    if (!this.open) return;
    const waiter = this.waiting.shift();
    if (waiter) waiter({ value: last, done: false });
    else this.queue = [last];
    this.stop();
  }

  next(): Promise<IteratorResult<U | SubscriptionEnd>> {
    const value = this.queue.shift();
    if (value) return Promise.resolve({ value, done: false });
    if (!this.open) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  return(): Promise<IteratorResult<U | SubscriptionEnd>> {
    this.queue = [];
    this.stop();
    for (const w of this.waiting.splice(0)) w({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(): Promise<IteratorResult<U | SubscriptionEnd>> {
    return this.return();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<U | SubscriptionEnd> {
    return this;
  }
}

type AnySubscription = Subscription<DeliveryUpdate> | Subscription<WebhookHealthChange>;

const takesDeliveries = (s: AnySubscription): s is Subscription<DeliveryUpdate> => s.topic === 'deliveries';

export function createDeliveryUpdateHub(deps: DeliveryUpdateHubDeps): DeliveryUpdateHub {
  const { notifier, orm, logger, maxPerTenant, credentials } = deps;
  const byTenant = new Map<string, Set<AnySubscription>>();
  const recentAttempts = new Set<string>();
  let backlog: UpdateNotice[] = [];
  let draining = false;
  let closed = false;
  let droppedSinceLog = 0;
  let unlisten: (() => void) | undefined;
  /** When a notification last arrived: the LISTEN connection was up until at least then. */
  let heardAt = Date.now();
  let openCount = 0;

  const detach = (s: AnySubscription) => {
    const set = byTenant.get(s.tenantId);
    if (!set?.delete(s)) return;
    openCount -= 1;
    if (set.size === 0) byTenant.delete(s.tenantId);
  };

  function wanted(topic: AnySubscription['topic'], tenantId: string, webhookId: string | null): boolean {
    const set = byTenant.get(tenantId);
    if (!set) return false;
    for (const s of set) if (s.topic === topic && (webhookId === null || s.webhookId === null || s.webhookId === webhookId)) return true;
    return false;
  }

  function fanOut(update: DeliveryUpdate, accept: (s: Subscription<DeliveryUpdate>) => boolean = () => true): void {
    const set = byTenant.get(update.delivery.tenantId);
    if (!set) return;
    for (const s of [...set]) {
      if (takesDeliveries(s) && (s.webhookId === null || s.webhookId === update.delivery.webhookId) && accept(s)) s.push(update);
    }
  }

  function fanOutHealth(change: WebhookHealthChange): void {
    for (const s of [...(byTenant.get(change.tenantId) ?? [])]) {
      if (!takesDeliveries(s) && s.webhookId === change.webhookId) s.push(change);
    }
  }

  /** true the first time an attempt id is seen. */
  function firstSighting(attemptId: string): boolean {
    if (recentAttempts.has(attemptId)) return false;
    recentAttempts.add(attemptId);
    if (recentAttempts.size > RECENT_ATTEMPTS) {
      const oldest = recentAttempts.values().next().value;
      if (oldest !== undefined) recentAttempts.delete(oldest);
    }
    return true;
  }

  function onNotification(payload: string): void {
    if (closed) return;
    const notice = parseNotice(payload);
    if (!notice) return;
    if (notice.kind !== 'resync') {
      heardAt = Date.now();
      const webhookId = notice.kind === 'event' ? null : notice.webhookId;
      if (!wanted(notice.kind === 'health' ? 'health' : 'deliveries', notice.tenantId, webhookId)) return;
    } else if (byTenant.size === 0) {
      heardAt = Date.now();
      return;
    }
    if (backlog.length >= BACKLOG_LIMIT) {
      droppedSinceLog += 1;
      return;
    }
    backlog.push(notice);
    void drain();
  }

  async function drain(): Promise<void> {
    if (draining) return;
    draining = true;
    try {
      while (!closed && backlog.length > 0) {
        if (droppedSinceLog > 0) {
          logger?.warn({ dropped: droppedSinceLog }, 'delivery update notices dropped: backlog full');
          droppedSinceLog = 0;
        }
        const batch = backlog.splice(0, BATCH_SIZE);
        try {
          await deliverBatch(batch);
        } catch (err) {
          logger?.warn({ err, notices: batch.length }, 'delivery updates could not be loaded');
        }
      }
    } finally {
      draining = false;
    }
  }

  async function deliverBatch(batch: UpdateNotice[]): Promise<void> {
    const em = orm.em.fork();
    const deliveryIds = new Set<string>();
    const attemptIds = new Set<string>();
    const eventIds = new Set<string>();
    const pingWebhookIds = new Set<string>();
    const healthEventIds = new Set<string>();
    for (const n of batch) {
      if (n.kind === 'attempt') {
        deliveryIds.add(n.deliveryId);
        attemptIds.add(n.attemptId);
      } else if (n.kind === 'status') {
        for (const id of n.deliveryIds) deliveryIds.add(id);
      } else if (n.kind === 'resent') {
        deliveryIds.add(n.deliveryId);
      } else if (n.kind === 'event') {
        eventIds.add(n.eventId);
      } else if (n.kind === 'ping') {
        pingWebhookIds.add(n.webhookId);
      } else if (n.kind === 'health') {
        healthEventIds.add(n.eventId);
      }
    }
    const healthChanges = await loadHealthChanges(em, [...healthEventIds]);
    const deliveries = new Map<string, Delivery>();
    if (deliveryIds.size > 0) {
      for (const d of await em.find(DeliverySchema, { id: { $in: [...deliveryIds] } })) deliveries.set(d.id, d);
    }
    const attempts = new Map<string, DeliveryAttempt>();
    if (attemptIds.size > 0) {
      for (const a of await em.find(DeliveryAttemptSchema, { id: { $in: [...attemptIds] } })) attempts.set(a.id, a);
    }
    const byEvent = new Map<string, Delivery[]>();
    if (eventIds.size > 0) {
      const rows = await em.find(DeliverySchema, { eventId: { $in: [...eventIds] } }, { orderBy: { createdAt: 'asc', id: 'asc' } });
      for (const d of rows) byEvent.set(d.eventId, [...(byEvent.get(d.eventId) ?? []), d]);
    }
    const pings = new Map<string, Delivery>();
    if (pingWebhookIds.size > 0) {
      // A new webhook's first ping delivery is its verification ping.
      const rows = await em.find(
        DeliverySchema,
        { webhookId: { $in: [...pingWebhookIds] }, eventType: 'ping' },
        { orderBy: { createdAt: 'asc', id: 'asc' } },
      );
      for (const d of rows) if (!pings.has(d.webhookId)) pings.set(d.webhookId, d);
    }

    for (const n of batch) {
      if (n.kind === 'attempt') {
        const delivery = deliveries.get(n.deliveryId);
        const attempt = attempts.get(n.attemptId);
        if (delivery && attempt && firstSighting(attempt.id)) fanOut({ kind: 'attempt', delivery: afterAttempt(delivery, attempt), attempt });
      } else if (n.kind === 'status') {
        for (const id of n.deliveryIds) {
          const delivery = deliveries.get(id);
          if (delivery) fanOut({ kind: 'status', delivery, attempt: null });
        }
      } else if (n.kind === 'resent') {
        const delivery = deliveries.get(n.deliveryId);
        if (delivery) fanOut({ kind: 'status', delivery: asResent(delivery, n), attempt: null });
      } else if (n.kind === 'event') {
        for (const delivery of byEvent.get(n.eventId) ?? []) fanOut({ kind: 'created', delivery: asQueued(delivery), attempt: null });
      } else if (n.kind === 'ping') {
        const delivery = pings.get(n.webhookId);
        if (delivery) fanOut({ kind: 'created', delivery: asQueued(delivery), attempt: null });
      } else if (n.kind === 'health') {
        const change = healthChanges.get(n.eventId);
        if (change && change.webhookId === n.webhookId) fanOutHealth(change);
      } else {
        await replayMissedAttempts();
      }
    }
  }

  // The LISTEN connection dropped and came back: attempts recorded meanwhile were announced to
  // nobody here. Replay the recent ones of the tenants subscribed here, newest RESYNC_LIMIT
  // first chosen, oldest first sent, skipping what was already sent and what predates each
  // subscriber.
  async function replayMissedAttempts(): Promise<void> {
    const tenants = [...byTenant.keys()];
    const since = new Date(heardAt - CLOCK_SKEW_MS);
    heardAt = Date.now();
    if (tenants.length === 0) return;
    const em = orm.em.fork();
    const rows = await em.find(
      DeliveryAttemptSchema,
      { tenantId: { $in: tenants }, createdAt: { $gte: since } },
      { orderBy: { createdAt: 'desc', seq: 'desc' }, limit: RESYNC_LIMIT },
    );
    const missed = rows.reverse().filter((a) => !recentAttempts.has(a.id));
    if (missed.length === 0) return;
    const deliveries = new Map<string, Delivery>();
    const ids = [...new Set(missed.map((a) => a.deliveryId))];
    for (const d of await em.find(DeliverySchema, { id: { $in: ids } })) deliveries.set(d.id, d);
    for (const attempt of missed) {
      const delivery = deliveries.get(attempt.deliveryId);
      if (!delivery || !firstSighting(attempt.id)) continue;
      fanOut({ kind: 'attempt', delivery: afterAttempt(delivery, attempt), attempt }, (s) => attempt.createdAt.getTime() >= s.since - CLOCK_SKEW_MS);
    }
  }

  function checkRoom(tenantId: string): void {
    if ((byTenant.get(tenantId)?.size ?? 0) < maxPerTenant) return;
    throw new AppError(
      'RATE_LIMITED',
      `this tenant already has ${maxPerTenant} subscriptions open on this instance (MAX_SUBSCRIPTIONS_PER_TENANT); end one first`,
      { limit: maxPerTenant },
    );
  }

  function open<S extends AnySubscription>(subscription: S, viewer: Viewer | undefined): S {
    if (!closed) checkRoom(subscription.tenantId);
    if (closed) {
      subscription.stop();
      return subscription;
    }
    if (!unlisten) {
      unlisten = notifier.listen(CHANNEL_DELIVERY_UPDATES, onNotification);
      heardAt = Date.now();
    }
    let set = byTenant.get(subscription.tenantId);
    if (!set) {
      set = new Set();
      byTenant.set(subscription.tenantId, set);
    }
    set.add(subscription);
    openCount += 1;
    if (viewer) subscription.unwatch = credentials.watch(viewer, (why) => subscription.finish({ kind: 'credentials-ended', why }));
    return subscription;
  }

  return {
    checkRoom,
    openCount: () => openCount,
    subscribe: (tenantId, webhookId, viewer) => open(new Subscription<DeliveryUpdate>('deliveries', tenantId, webhookId, Date.now(), detach), viewer),
    subscribeHealth: (tenantId, webhookId, viewer) =>
      open(new Subscription<WebhookHealthChange>('health', tenantId, webhookId, Date.now(), detach), viewer),
    close() {
      if (closed) return;
      closed = true;
      unlisten?.();
      backlog = [];
      for (const set of [...byTenant.values()]) for (const s of [...set]) s.stop();
    },
  };
}
