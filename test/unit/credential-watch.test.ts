import type { MikroORM } from '@mikro-orm/postgresql';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CHANNEL_API_KEYS_REVOKED, createLocalNotifier } from '../../src/db/notifier.js';
import { createCredentialWatch, type CredentialsEnd } from '../../src/subscriptions/credential-watch.js';

const DAY = 24 * 60 * 60 * 1000;

describe('credential watch: timers', () => {
  // The periodic check's interval stays real (and idle): only the expiry timers and the clock are faked.
  beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] }));
  afterEach(() => vi.useRealTimers());

  // JWT-only watchers never reach the database: the periodic check has no keys to read.
  const watch = () => createCredentialWatch({ notifier: createLocalNotifier(), orm: {} as MikroORM, checkIntervalMs: 1_000 });

  it('ends at exp, not before, even when exp lies beyond the longest setTimeout delay (about 24.8 days)', () => {
    const credentials = watch();
    const ended: CredentialsEnd[] = [];
    credentials.watch({ tenantId: 't', role: 'user', via: 'jwt', expiresAt: new Date(Date.now() + 40 * DAY) }, (why) => ended.push(why));
    vi.advanceTimersByTime(40 * DAY - 1);
    expect(ended).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ended).toEqual(['expired']);
    credentials.close();
  });

  it('an exp already passed ends on the next turn, never inside watch()', () => {
    const credentials = watch();
    const ended: CredentialsEnd[] = [];
    credentials.watch({ tenantId: 't', role: 'user', via: 'jwt', expiresAt: new Date(Date.now() - 1) }, (why) => ended.push(why));
    expect(ended).toEqual([]);
    vi.advanceTimersByTime(0);
    expect(ended).toEqual(['expired']);
    credentials.close();
  });

  it('a watcher stopped before exp, or closed with the watch, is never called', () => {
    const credentials = watch();
    const onEnd = vi.fn();
    const stop = credentials.watch({ tenantId: 't', role: 'user', via: 'jwt', expiresAt: new Date(Date.now() + 1_000) }, onEnd);
    credentials.watch({ tenantId: 't', role: 'user', via: 'jwt', expiresAt: new Date(Date.now() + 1_000) }, onEnd);
    stop();
    credentials.close();
    vi.advanceTimersByTime(2_000);
    expect(onEnd).not.toHaveBeenCalled();
  });

  it("a revocation notice ends that key's watchers once, and no other key's", async () => {
    const notifier = createLocalNotifier();
    const credentials = createCredentialWatch({ notifier, orm: {} as MikroORM, checkIntervalMs: 25_000 });
    const revoked = vi.fn();
    const kept = vi.fn();
    credentials.watch({ tenantId: 't', role: 'user', via: 'api_key', apiKeyId: 'key_a' }, revoked);
    credentials.watch({ tenantId: 't', role: 'user', via: 'api_key', apiKeyId: 'key_b' }, kept);
    await notifier.notify(CHANNEL_API_KEYS_REVOKED, 'key_a');
    await notifier.notify(CHANNEL_API_KEYS_REVOKED, 'key_a');
    expect(revoked.mock.calls).toEqual([['revoked']]);
    expect(kept).not.toHaveBeenCalled();
    credentials.close();
  });
});
