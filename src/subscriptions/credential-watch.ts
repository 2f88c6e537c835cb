// Live subscriptions outlive the request that opened them, so the credentials they were opened
// with are watched for as long as they stay open. Invariants:
// - A JWT's credentials end at its `exp`: a timer per watcher, nothing polled.
// - An API key's end at its revocation. The revocation is announced on CHANNEL_API_KEYS_REVOKED
//   (every instance hears it at once); a notice can be lost (a dropped LISTEN connection, a
//   revocation between authentication and watching), so the keys in use here are also re-read
//   every `checkIntervalMs`, in one query for all of them. A stream therefore never outlives its
//   key by more than that interval and a query: under 30 s with any allowed setting.
// - A failed check ends nothing: a database that does not answer is not a revocation.
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { Viewer } from '../auth/viewer.js';
import { CHANNEL_API_KEYS_REVOKED, type Notifier } from '../db/notifier.js';
import { ApiKeySchema } from '../modules/api-keys/api-key.entity.js';

export type CredentialsEnd = 'expired' | 'revoked';

export interface CredentialWatch {
  /**
   * Calls `onEnd` once, when the credentials `viewer` was authenticated with end. Returns the
   * function that stops watching (call it when whatever was opened with them closes).
   */
  watch(viewer: Viewer, onEnd: (why: CredentialsEnd) => void): () => void;
  /** Stops every timer and the periodic check. */
  close(): void;
}

/** setTimeout's largest delay; a later `exp` is reached in steps of this. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Key ids per check query, to keep its parameter list bounded. */
const KEYS_PER_QUERY = 1_000;

interface Watcher {
  end(why: CredentialsEnd): void;
  /** A function rather than a method: watch() hands it out on its own, as the way to stop. */
  stop: () => void;
}

export function createCredentialWatch(deps: {
  notifier: Notifier;
  orm: MikroORM;
  logger?: Logger | undefined;
  /** SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL. */
  checkIntervalMs: number;
}): CredentialWatch {
  const { notifier, orm, logger } = deps;
  const byKey = new Map<string, Set<Watcher>>();
  const all = new Set<Watcher>();
  let checking = false;
  let closed = false;

  const endKey = (keyId: string) => {
    for (const w of [...(byKey.get(keyId) ?? [])]) w.end('revoked');
  };

  async function check(): Promise<void> {
    if (checking || closed || byKey.size === 0) return;
    checking = true;
    try {
      const ids = [...byKey.keys()];
      const active = new Set<string>();
      const em = orm.em.fork();
      for (let i = 0; i < ids.length; i += KEYS_PER_QUERY) {
        const rows = await em.find(ApiKeySchema, { id: { $in: ids.slice(i, i + KEYS_PER_QUERY) }, revokedAt: null }, { fields: ['id'] });
        for (const row of rows) active.add(row.id);
      }
      for (const id of ids) if (!active.has(id)) endKey(id);
    } catch (err) {
      logger?.warn({ err }, 'api keys of open subscriptions could not be checked');
    } finally {
      checking = false;
    }
  }

  // An empty payload means the LISTEN connection came back: notices may have been missed.
  const unlisten = notifier.listen(CHANNEL_API_KEYS_REVOKED, (keyId) => (keyId === '' ? void check() : endKey(keyId)));
  const interval = setInterval(() => void check(), deps.checkIntervalMs);
  interval.unref();

  return {
    watch(viewer, onEnd) {
      let timer: NodeJS.Timeout | undefined;
      const keyId = viewer.apiKeyId;
      const watcher: Watcher = {
        end(why) {
          if (!all.has(watcher)) return;
          watcher.stop();
          onEnd(why);
        },
        stop() {
          all.delete(watcher);
          clearTimeout(timer);
          if (keyId === undefined) return;
          const set = byKey.get(keyId);
          if (set?.delete(watcher) && set.size === 0) byKey.delete(keyId);
        },
      };
      if (closed) return watcher.stop;
      all.add(watcher);
      if (viewer.expiresAt !== undefined) {
        // Never synchronously: the caller has not finished opening what it watches yet.
        const expiresAt = viewer.expiresAt.getTime();
        const arm = () => {
          const left = Math.max(expiresAt - Date.now(), 0);
          timer = setTimeout(() => (Date.now() >= expiresAt ? watcher.end('expired') : arm()), Math.min(left, MAX_TIMER_MS));
        };
        arm();
      }
      if (keyId !== undefined) {
        let set = byKey.get(keyId);
        if (!set) {
          set = new Set();
          byKey.set(keyId, set);
        }
        set.add(watcher);
      }
      return watcher.stop;
    },
    close() {
      closed = true;
      clearInterval(interval);
      unlisten();
      for (const w of [...all]) w.stop();
    },
  };
}
