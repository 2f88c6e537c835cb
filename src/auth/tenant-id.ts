// What a tenant id may be, wherever one comes from (a JWT claim, an API key's row, a service
// token's `tenant_id` field). Tenant ids are stored as text and compared byte for byte, so a
// value that Postgres cannot store (NUL), that a UTF-8 round trip would change (an unpaired
// surrogate becomes U+FFFD, folding two tenants into one), or that hides in logs (control
// characters) is refused rather than repaired.
export const MAX_TENANT_ID_LENGTH = 255;

// With the `u` flag, \p{Cs} matches only surrogates that are not part of a pair.
const REFUSED = /[\p{Cc}\p{Cs}]/u;

export function isValidTenantId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= 1 &&
    // Counted in characters (code points); the first test keeps the spread below cheap.
    value.length <= 2 * MAX_TENANT_ID_LENGTH &&
    [...value].length <= MAX_TENANT_ID_LENGTH &&
    !REFUSED.test(value)
  );
}

export const TENANT_ID_RULE = `a string of 1 to ${MAX_TENANT_ID_LENGTH} characters of valid Unicode without control characters`;
