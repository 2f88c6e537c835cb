// Group commit (src/db/group-commit.ts): what arrives while a statement is being written goes in
// the next statement, together; a failed batch is written item by item; and a statement that
// stalls lets another start beside it.
import { describe, expect, it, vi } from 'vitest';
import { createGroupCommit } from '../../src/db/group-commit.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** A writer whose statements finish when the test says so, and which logs what each statement held. */
function controlledWriter(options: { failBatchesWith?: (items: number[]) => boolean; failAlone?: (item: number) => boolean } = {}) {
  const statements: { kind: 'batch' | 'alone'; items: number[]; done: ReturnType<typeof deferred> }[] = [];
  const writers = {
    async writeBatch(items: number[]) {
      const done = deferred();
      statements.push({ kind: 'batch', items, done });
      await done.promise;
      if (options.failBatchesWith?.(items)) throw new Error('batch failed');
      return items.map((n) => n * 10);
    },
    async writeAlone(item: number) {
      const done = deferred();
      statements.push({ kind: 'alone', items: [item], done });
      await done.promise;
      if (options.failAlone?.(item)) throw new Error(`item ${item} failed`);
      return item * 10;
    },
  };
  return { writers, statements };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('group commit', () => {
  it('writes an item alone when nothing is running, and what arrives meanwhile together in one statement', async () => {
    const { writers, statements } = controlledWriter();
    const write = createGroupCommit(writers, { maxConcurrency: 4, stallMs: 60_000, maxBatch: 64 });
    const first = write(1);
    const rest = [2, 3, 4, 5].map((n) => write(n));
    await settle();
    expect(statements.map((s) => [s.kind, s.items])).toEqual([['alone', [1]]]);
    statements[0]!.done.resolve();
    await expect(first).resolves.toBe(10);
    await settle();
    expect(statements.map((s) => [s.kind, s.items])).toEqual([
      ['alone', [1]],
      ['batch', [2, 3, 4, 5]],
    ]);
    statements[1]!.done.resolve();
    await expect(Promise.all(rest)).resolves.toEqual([20, 30, 40, 50]);
  });

  it('a batch holds at most maxBatch items; the rest go in the next one', async () => {
    const { writers, statements } = controlledWriter();
    const write = createGroupCommit(writers, { maxConcurrency: 1, stallMs: 60_000, maxBatch: 3 });
    const all = [1, 2, 3, 4, 5, 6].map((n) => write(n));
    await settle();
    statements[0]!.done.resolve();
    await settle();
    statements[1]!.done.resolve();
    await settle();
    statements[2]!.done.resolve();
    await expect(Promise.all(all)).resolves.toEqual([10, 20, 30, 40, 50, 60]);
    expect(statements.map((s) => s.items)).toEqual([[1], [2, 3, 4], [5, 6]]);
  });

  it('a failed batch is written item by item, so one bad item fails alone', async () => {
    const { writers, statements } = controlledWriter({ failBatchesWith: (items) => items.includes(3), failAlone: (n) => n === 3 });
    const write = createGroupCommit(writers, { maxConcurrency: 4, stallMs: 60_000, maxBatch: 64 });
    const first = write(1);
    const rest = [2, 3, 4].map((n) => write(n));
    await settle();
    statements[0]!.done.resolve();
    await first;
    await settle();
    statements[1]!.done.resolve();
    await settle();
    expect(statements.slice(2).map((s) => [s.kind, s.items])).toEqual([
      ['alone', [2]],
      ['alone', [3]],
      ['alone', [4]],
    ]);
    for (const s of statements.slice(2)) s.done.resolve();
    const results = await Promise.allSettled(rest);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(results[0]).toMatchObject({ value: 20 });
    expect(results[1]).toMatchObject({ reason: new Error('item 3 failed') });
    expect(results[2]).toMatchObject({ value: 40 });
  });

  it('when the running statement stalls, another starts beside it, up to maxConcurrency', async () => {
    // The test owns the clock: "stalled" is measured in its time, so a busy machine, which may
    // take longer than stallMs between two lines here, cannot start a statement early.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const { writers, statements } = controlledWriter();
      const write = createGroupCommit(writers, { maxConcurrency: 2, stallMs: 20, maxBatch: 64 });
      const all = [write(1)];
      await settle();
      all.push(write(2), write(3));
      await settle();
      vi.advanceTimersByTime(19);
      await settle();
      expect(statements).toHaveLength(1);
      vi.advanceTimersByTime(1);
      await settle();
      expect(statements).toHaveLength(2);
      expect(statements[1]!.items).toEqual([2, 3]);
      // Two are running, the most allowed: a third waits however long they take.
      all.push(write(4));
      vi.advanceTimersByTime(60_000);
      await settle();
      expect(statements).toHaveLength(2);
      statements[1]!.done.resolve();
      await settle();
      expect(statements.map((s) => s.items)).toEqual([[1], [2, 3], [4]]);
      statements[0]!.done.resolve();
      statements[2]!.done.resolve();
      await expect(Promise.all(all)).resolves.toEqual([10, 20, 30, 40]);
    } finally {
      vi.useRealTimers();
    }
  });
});
