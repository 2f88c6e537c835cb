import { describe, it, expect } from 'vitest';
import { apiKeyPrefix, generateApiKey, hashApiKey, isApiKeyFormat } from '../../src/crypto/api-key-token.js';

describe('api key tokens', () => {
  it('generates ia_live_ + 32 base62 chars', () => {
    const k = generateApiKey();
    expect(k).toMatch(/^ia_live_[A-Za-z0-9]{32}$/);
    expect(k).toHaveLength(40);
    expect(isApiKeyFormat(k)).toBe(true);
  });
  it('is unique and uses the whole alphabet', () => {
    const keys = Array.from({ length: 1000 }, generateApiKey);
    expect(new Set(keys).size).toBe(1000);
    const chars = new Set(keys.join('').replaceAll('ia_live_', ''));
    expect(chars.size).toBe(62);
  });
  it('validates format', () => {
    expect(isApiKeyFormat('ia_live_' + 'a'.repeat(31))).toBe(false);
    expect(isApiKeyFormat('ia_live_' + 'a'.repeat(33))).toBe(false);
    expect(isApiKeyFormat('ia_test_' + 'a'.repeat(32))).toBe(false);
    expect(isApiKeyFormat('ia_live_' + '-'.repeat(32))).toBe(false);
  });
  it('hashes to stable 64-char hex', () => {
    const k = generateApiKey();
    expect(hashApiKey(k)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey(k)).toBe(hashApiKey(k));
    expect(hashApiKey(k)).not.toBe(hashApiKey(generateApiKey()));
    // sha256("abc") known answer
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
  it('prefix is ia_live_ + 4 chars', () => {
    const k = generateApiKey();
    expect(apiKeyPrefix(k)).toHaveLength(12);
    expect(apiKeyPrefix(k)).toBe(k.slice(0, 12));
    expect(apiKeyPrefix(k).startsWith('ia_live_')).toBe(true);
  });
});
