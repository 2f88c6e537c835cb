const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `300ms`, `10s`, `5m`, `2h`, `30d` (or a bare number of milliseconds) to milliseconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!match) throw new Error(`"${text}" is not a duration (use ms, s, m, h or d, e.g. 10s)`);
  const value = Number(match[1]) * UNITS[match[2] ?? 'ms']!;
  return Math.round(value);
}

/** Parses a comma-separated schedule such as `5m,30m,2h`; an empty string means no retries. */
export function parseDurationList(text: string): number[] {
  if (text.trim() === '') return [];
  return text.split(',').map((part) => parseDuration(part));
}
