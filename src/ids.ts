import { randomBytes } from 'node:crypto';

// 120 random bits, URL-safe: ids are unguessable, so a malformed or foreign id tells nothing.
const ID_BODY = /^[A-Za-z0-9_-]{20}$/;

export type IdPrefix = 'wh' | 'evt' | 'del' | 'att' | 'key';

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomBytes(15).toString('base64url')}`;
}

export function isId(prefix: IdPrefix, value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.startsWith(`${prefix}_`) &&
    ID_BODY.test(value.slice(prefix.length + 1))
  );
}
