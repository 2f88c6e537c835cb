// Records attempts the way a database does group commit: an attempt that finishes while a record
// is being written waits for it to finish and is then written together with every other attempt
// that finished meanwhile, in one statement and one commit. On an idle gateway each attempt is
// written at once, alone; under load, the busier the gateway the more attempts share a round trip,
// a plan and a WAL flush. One statement at a time makes the largest batches (measured: fewer
// statements running side by side meant less Postgres CPU per delivery and more throughput), but
// a statement can wait on a lock (a webhook being deleted with all its history): when the one
// running has taken longer than `stallMs`, another may start beside it, up to `maxConcurrency`.
import type { MikroORM } from '@mikro-orm/postgresql';
import pRetry from 'p-retry';
import { recordAttempts, type AttemptRecord, type RecordedAttempt } from './queue.js';

export interface AttemptRecorder {
  /** Resolves once the attempt is durable (or null: its delivery is gone), rejects if it cannot be. */
  record(input: AttemptRecord): Promise<RecordedAttempt | null>;
}

interface Waiting {
  input: AttemptRecord;
  resolve(recorded: RecordedAttempt | null): void;
  reject(err: unknown): void;
}

export interface RecorderOptions {
  /** Most record statements running at once, when those running are slow. */
  maxConcurrency: number;
  /** How long the statements running may take before another starts beside them. */
  stallMs: number;
  /** Most attempts written by one statement. */
  maxBatch: number;
}

export const DEFAULT_RECORDER_OPTIONS: RecorderOptions = { maxConcurrency: 4, stallMs: 50, maxBatch: 64 };

// The send already happened; losing its record would mean sending it again later. Postgres blips
// (a restart, a failover) are waited out here, well within the lease.
const RECORD_RETRY = { retries: 10, minTimeout: 200, maxTimeout: 5_000 };

export function createAttemptRecorder(orm: MikroORM, options: RecorderOptions = DEFAULT_RECORDER_OPTIONS): AttemptRecorder {
  const waiting: Waiting[] = [];
  /** Start times of the statements running. */
  const running = new Set<{ startedAt: number }>();
  let recheck: NodeJS.Timeout | undefined;

  async function write(batch: Waiting[]): Promise<void> {
    try {
      const recorded = await recordAttempts(
        orm.em.fork(),
        batch.map((w) => w.input),
      );
      batch.forEach((w, i) => w.resolve(recorded[i] ?? null));
    } catch {
      // Written one by one with retries, so an attempt that cannot be stored (or a blip that
      // outlasts one statement) costs only itself, never the rest of its batch.
      await Promise.all(
        batch.map((w) =>
          pRetry(() => recordAttempts(orm.em.fork(), [w.input]), RECORD_RETRY).then(
            ([recorded]) => w.resolve(recorded ?? null),
            (err: unknown) => w.reject(err),
          ),
        ),
      );
    }
  }

  const mayStart = (now: number): boolean => {
    if (running.size === 0) return true;
    if (running.size >= options.maxConcurrency) return false;
    for (const r of running) if (now - r.startedAt < options.stallMs) return false;
    return true;
  };

  function drain(): void {
    const now = performance.now();
    while (waiting.length > 0 && mayStart(now)) {
      const batch = waiting.splice(0, options.maxBatch);
      const entry = { startedAt: now };
      running.add(entry);
      void write(batch).finally(() => {
        running.delete(entry);
        drain();
      });
    }
    // Attempts are waiting behind a running statement: look again once it counts as stalled.
    if (waiting.length > 0 && recheck === undefined && running.size < options.maxConcurrency) {
      recheck = setTimeout(() => {
        recheck = undefined;
        drain();
      }, options.stallMs);
      recheck.unref();
    }
  }

  return {
    record(input) {
      return new Promise((resolve, reject) => {
        waiting.push({ input, resolve, reject });
        drain();
      });
    },
  };
}
