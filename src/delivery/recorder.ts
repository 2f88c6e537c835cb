// Records attempts the way a database does group commit: an attempt that finishes while earlier
// records are being written waits for one of them to finish and is then written together with
// every other attempt that finished meanwhile, in one statement and one commit. On an idle
// gateway each attempt is written at once, alone; under load, the busier the gateway the more
// attempts share a round trip and a WAL flush, and nothing is ever held back on a timer.
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
  /** Record statements running at once; more attempts than that wait and go in the next batch. */
  concurrency: number;
  /** Most attempts written by one statement. */
  maxBatch: number;
}

export const DEFAULT_RECORDER_OPTIONS: RecorderOptions = { concurrency: 2, maxBatch: 64 };

// The send already happened; losing its record would mean sending it again later. Postgres blips
// (a restart, a failover) are waited out here, well within the lease.
const RECORD_RETRY = { retries: 10, minTimeout: 200, maxTimeout: 5_000 };

export function createAttemptRecorder(orm: MikroORM, options: RecorderOptions = DEFAULT_RECORDER_OPTIONS): AttemptRecorder {
  const waiting: Waiting[] = [];
  let running = 0;

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

  function drain(): void {
    while (running < options.concurrency && waiting.length > 0) {
      const batch = waiting.splice(0, options.maxBatch);
      running += 1;
      void write(batch).finally(() => {
        running -= 1;
        drain();
      });
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
