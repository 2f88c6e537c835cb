import { describe, it, expect } from 'vitest';
import {
  createSecretBox,
  generateEncryptionKeyHex,
  generateWebhookSecret,
  isWebhookSecret,
} from '../../src/crypto/secrets.js';

describe('generateWebhookSecret', () => {
  it('produces whsec_ + 32 base64 chars decoding to 24 bytes', () => {
    const s = generateWebhookSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(s).toHaveLength(38);
    expect(Buffer.from(s.slice(6), 'base64')).toHaveLength(24);
    expect(isWebhookSecret(s)).toBe(true);
  });
  it('is unique across 1000 draws', () => {
    const set = new Set(Array.from({ length: 1000 }, generateWebhookSecret));
    expect(set.size).toBe(1000);
  });
});

describe('isWebhookSecret', () => {
  const body = 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  it('accepts valid secrets including + and /', () => {
    expect(isWebhookSecret('whsec_' + body)).toBe(true);
    expect(isWebhookSecret('whsec_' + '+/'.repeat(16))).toBe(true);
  });
  it.each([
    ['wrong prefix', 'whsek_' + body],
    ['no prefix', body],
    ['uppercase prefix', 'WHSEC_' + body],
    ['31 chars', 'whsec_' + body.slice(1)],
    ['33 chars', 'whsec_' + body + 'A'],
    ['url-safe -', 'whsec_' + '-' + body.slice(1)],
    ['url-safe _', 'whsec_' + '_' + body.slice(1)],
    ['trailing whitespace', 'whsec_' + body + ' '],
    ['inner whitespace', 'whsec_ ' + body.slice(1)],
    ['trailing newline', 'whsec_' + body + '\n'],
    ['empty', ''],
  ])('rejects %s', (_label, s) => {
    expect(isWebhookSecret(s)).toBe(false);
  });
  it('rejects non-strings', () => {
    expect(isWebhookSecret(undefined)).toBe(false);
    expect(isWebhookSecret(42)).toBe(false);
    expect(isWebhookSecret(null)).toBe(false);
  });
});

describe('createSecretBox', () => {
  const key = generateEncryptionKeyHex();
  const box = createSecretBox(key);
  const plain = generateWebhookSecret();

  it('generates 64 lowercase hex key', () => {
    expect(key).toMatch(/^[0-9a-f]{64}$/);
  });
  it('round-trips', () => {
    expect(box.decrypt(box.encrypt(plain))).toBe(plain);
    expect(box.decrypt(box.encrypt(''))).toBe('');
    expect(box.decrypt(box.encrypt('ünïcødé ✓'))).toBe('ünïcødé ✓');
  });
  it('uses the v1 format and a fresh IV each time', () => {
    const a = box.encrypt(plain);
    const b = box.encrypt(plain);
    expect(a).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain(plain);
    expect(a).not.toContain(plain.slice(6));
  });
  it('throws on tampering', () => {
    const stored = box.encrypt(plain);
    const [v, iv, tag, ct] = stored.split('.') as [string, string, string, string];
    const flip = (s: string) => {
      const buf = Buffer.from(s, 'base64url');
      buf[0] = (buf[0] ?? 0) ^ 1;
      return buf.toString('base64url');
    };
    expect(() => box.decrypt([v, iv, tag, flip(ct)].join('.'))).toThrow();
    expect(() => box.decrypt([v, iv, flip(tag), ct].join('.'))).toThrow();
    expect(() => box.decrypt([v, flip(iv), tag, ct].join('.'))).toThrow();
    expect(() => box.decrypt(['v2', iv, tag, ct].join('.'))).toThrow();
    expect(() => box.decrypt('garbage')).toThrow();
  });
  it('throws with the wrong key', () => {
    const other = createSecretBox(generateEncryptionKeyHex());
    expect(() => other.decrypt(box.encrypt(plain))).toThrow();
  });
  it.each([['too short', 'ab'.repeat(31)], ['too long', 'ab'.repeat(33)], ['non-hex', 'zz'.repeat(32)], ['empty', '']])(
    'rejects bad key hex: %s',
    (_label, k) => {
      expect(() => createSecretBox(k)).toThrow(/64 hex/);
    },
  );
});
