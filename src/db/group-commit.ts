// Writes the way a database does group commit: an item that arrives while a statement is being
// written waits for it to finish and is then written together with every other item that arrived
// meanwhile, in one statement and one commit. On an idle gateway each item is written at once,
// alone; under load, the busier the gateway the more items share a round trip, a plan and a WAL
// flush. One statement at a time makes the largest batches, but a statement can wait on a lock (a
// webhook being deleted with all its history): when the one running has taken longer than
// `stallMs`, another may start beside it, up to `maxConcurrency`.

export interface GroupCommitOptions {
  /** Most statements running at once, when those running are slow. */
  maxConcurrency: number;
  /** How long the statements running may take before another starts beside them. */
  stallMs: number;
  /** Most items written by one statement. */
  maxBatch: number;
}

export const DEFAULT_GROUP_COMMIT_OPTIONS: GroupCommitOptions = { maxConcurrency: 4, stallMs: 50, maxBatch: 64 };

interface Waiting<I, O> {
  item: I;
  resolve: (result: O) => void;
  reject: (err: unknown) => void;
}

/**
 * `writeBatch` writes items in one statement and answers in their order. When a batch of more
 * than one fails, each of its items is written by `writeAlone`, so an item that cannot be written
 * costs only itself, never the rest of its batch; a batch of one is written by `writeAlone` too.
 */
export function createGroupCommit<I, O>(
  writers: { writeBatch(items: I[]): Promise<O[]>; writeAlone(item: I): Promise<O> },
  options: GroupCommitOptions = DEFAULT_GROUP_COMMIT_OPTIONS,
): (item: I) => Promise<O> {
  const waiting: Waiting<I, O>[] = [];
  /** Start times of the statements running. */
  const running = new Set<{ startedAt: number }>();
  let recheck: NodeJS.Timeout | undefined;

  const writeEachAlone = (batch: Waiting<I, O>[]) =>
    Promise.all(batch.map((w) => writers.writeAlone(w.item).then(w.resolve, w.reject)));

  async function write(batch: Waiting<I, O>[]): Promise<void> {
    if (batch.length === 1) {
      await writeEachAlone(batch);
      return;
    }
    let results: O[];
    try {
      results = await writers.writeBatch(batch.map((w) => w.item));
    } catch {
      await writeEachAlone(batch);
      return;
    }
    batch.forEach((w, i) => w.resolve(results[i]!));
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
    // Items are waiting behind a running statement: look again once it counts as stalled.
    if (waiting.length > 0 && recheck === undefined && running.size < options.maxConcurrency) {
      recheck = setTimeout(() => {
        recheck = undefined;
        drain();
      }, options.stallMs);
      recheck.unref();
    }
  }

  return (item) =>
    new Promise<O>((resolve, reject) => {
      waiting.push({ item, resolve, reject });
      drain();
    });
}
