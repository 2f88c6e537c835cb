import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const SECRET_PREFIX = 'whsec_';
const SECRET_RE = /^whsec_[A-Za-z0-9+/]{32}$/;
const KEY_HEX_RE = /^[0-9a-fA-F]{64}$/;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT_VERSION = 'v1';

export function generateWebhookSecret(): string {
  // 24 bytes encode to exactly 32 base64 chars with no padding.
  return SECRET_PREFIX + randomBytes(24).toString('base64');
}

export function isWebhookSecret(s: unknown): s is string {
  return typeof s === 'string' && SECRET_RE.test(s);
}

export interface SecretBox {
  encrypt(plain: string): string;
  decrypt(stored: string): string;
}

export function createSecretBox(keyHex: string): SecretBox {
  if (!KEY_HEX_RE.test(keyHex)) {
    throw new Error('Encryption key must be exactly 64 hex characters (32 bytes)');
  }
  const key = Buffer.from(keyHex, 'hex');
  return {
    encrypt(plain) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [FORMAT_VERSION, iv.toString('base64url'), tag.toString('base64url'), ct.toString('base64url')].join('.');
    },
    decrypt(stored) {
      const parts = stored.split('.');
      if (parts.length !== 4 || parts[0] !== FORMAT_VERSION) {
        throw new Error('Malformed encrypted secret');
      }
      const iv = Buffer.from(parts[1] ?? '', 'base64url');
      const tag = Buffer.from(parts[2] ?? '', 'base64url');
      const ct = Buffer.from(parts[3] ?? '', 'base64url');
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
        throw new Error('Malformed encrypted secret');
      }
      const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
      } catch {
        throw new Error('Encrypted secret failed authentication (tampered or wrong key)');
      }
    },
  };
}

export function generateEncryptionKeyHex(): string {
  return randomBytes(32).toString('hex');
}
