const camelToSnake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

// These hold wire data (HTTP headers) whose keys are not ours to rename, or, for `pagination`,
// the documented shape is camelCase ({page, pageSize, total, totalPages}).
const OPAQUE = new Set(['requestHeaders', 'responseHeaders', 'pagination']);

/** Renames GraphQL's camelCase keys to the documented snake_case, recursively. */
export function toSnakeCase(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toSnakeCase);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[camelToSnake(key)] = OPAQUE.has(key) ? inner : toSnakeCase(inner);
  }
  return out;
}
