// Small statistics for benchmark results: percentiles of one run, and the median and spread of a
// scenario's repeated runs.

/** Linear-interpolated percentile (p in 0..100) of unsorted values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const lowValue = sorted[low]!;
  // Also keeps an infinite value (a sample that never came) from turning into NaN.
  if (low === high) return lowValue;
  return lowValue + (sorted[high]! - lowValue) * (rank - low);
}

export const median = (values: readonly number[]): number => percentile(values, 50);

export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(runs: readonly number[]): Summary {
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs: [...runs] };
}

/** "1 234 (1 100–1 300)": the median of the runs and their range. */
export function formatSummary(s: Summary, digits = 0, unit = ''): string {
  const f = (n: number) => formatNumber(n, digits);
  return `${f(s.median)}${unit} (${f(s.min)}–${f(s.max)})`;
}

export function formatNumber(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }).replace(/,/g, ' ');
}

export function formatRatio(n: number, digits = 0): string {
  return Number.isFinite(n) ? `${(n * 100).toFixed(digits)} %` : 'n/a';
}
