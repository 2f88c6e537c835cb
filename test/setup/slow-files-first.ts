// Test file order: the files known to take longest start first, so that on two workers no long file
// starts last while the other worker sits idle. Vitest orders by the durations of the previous run
// when its cache has them; this list gives the same order on a fresh clone, where it has none.
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Measured with `vitest --reporter=verbose`, longest first. */
const SLOW_FILES = [
  'faults',
  'shutdown',
  'development-key',
  'database-silence',
  'spare-rows',
  'fairness',
  'tenant-fairness',
  'cli',
  'retries',
  'recorder',
  'health-metrics',
  'rate-limit',
  'subscriptions-instances',
  'subscriptions-resources',
  'persistence',
  'worker-thread',
].map((name) => `/test/integration/${name}.test.ts`);

const rank = (spec: TestSpecification) => {
  const i = SLOW_FILES.findIndex((suffix) => spec.moduleId.endsWith(suffix));
  return i === -1 ? SLOW_FILES.length : i;
};

export default class SlowFilesFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    // Array.prototype.sort is stable: the files not listed keep the order Vitest chose.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}
