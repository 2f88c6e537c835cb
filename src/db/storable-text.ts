// Postgres text cannot hold U+0000, and jsonb refuses both \u0000 and unpaired UTF-16 surrogates;
// text silently stores an unpaired surrogate as U+FFFD. Left to the database, such input fails as
// an internal error (or is stored as something other than what was sent), so services refuse it
// up front as the client's error. JSON nested deeper than any real payload is refused as well:
// serializing it for the database would exhaust the stack.
// eslint-disable-next-line no-control-regex -- U+0000 is one of the characters this pattern is here to find
const UNSTORABLE = /[\u0000\p{Cs}]/u;

/** Deepest JSON nesting accepted in stored payloads. */
export const MAX_JSON_DEPTH = 64;

/** False when `value` has a NUL character or an unpaired surrogate. */
export function isStorableText(value: string): boolean {
  return !UNSTORABLE.test(value);
}

/** Why a JSON value cannot be stored, or undefined when it can. */
export function unstorableJson(value: unknown): 'text' | 'depth' | undefined {
  // A stack, not recursion, for the same reason as the depth limit.
  const pending: [unknown, number][] = [[value, 0]];
  while (pending.length > 0) {
    const [current, depth] = pending.pop()!;
    if (typeof current === 'string') {
      if (!isStorableText(current)) return 'text';
    } else if (current !== null && typeof current === 'object') {
      if (depth >= MAX_JSON_DEPTH) return 'depth';
      for (const [key, inner] of Object.entries(current)) {
        if (!Array.isArray(current) && !isStorableText(key)) return 'text';
        pending.push([inner, depth + 1]);
      }
    }
  }
  return undefined;
}
