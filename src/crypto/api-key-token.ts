import { createHash, randomBytes } from 'node:crypto';

const PREFIX = 'ia_live_';
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const BODY_LENGTH = 32; // 32 * log2(62) ≈ 190.5 bits
// Largest multiple of 62 that fits in a byte; bytes at or above it are rejected to avoid modulo bias.
const REJECT_FROM = 256 - (256 % ALPHABET.length);
const KEY_RE = /^ia_live_[A-Za-z0-9]{32}$/;

export function generateApiKey(): string {
  let out = '';
  while (out.length < BODY_LENGTH) {
    for (const b of randomBytes(48)) {
      if (b >= REJECT_FROM) continue;
      out += ALPHABET[b % ALPHABET.length];
      if (out.length === BODY_LENGTH) break;
    }
  }
  return PREFIX + out;
}

export function isApiKeyFormat(s: string): boolean {
  return KEY_RE.test(s);
}

/**
 * Keys carry ~190 bits of randomness, so brute-forcing a leaked hash is infeasible
 * regardless of hash speed; a slow password KDF would only add latency to every request.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function apiKeyPrefix(key: string): string {
  return key.slice(0, PREFIX.length + 4);
}
