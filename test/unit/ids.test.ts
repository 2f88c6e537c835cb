import { describe, expect, it } from 'vitest';
import { isId, newId } from '../../src/ids.js';

describe('newId', () => {
  it('makes prefixed ids of 120 random bits that isId accepts, never the same twice, across many refills of its pool', () => {
    const ids = Array.from({ length: 5000 }, () => newId('del'));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^del_[A-Za-z0-9_-]{20}$/);
      expect(isId('del', id)).toBe(true);
    }
    // Every character position varies (no byte of the pool is reused or left at zero).
    for (let i = 4; i < 24; i += 1) expect(new Set(ids.map((id) => id[i])).size).toBeGreaterThan(32);
  });

  it('isId refuses other prefixes and shapes', () => {
    const id = newId('wh');
    expect(isId('evt', id)).toBe(false);
    expect(isId('wh', `${id}x`)).toBe(false);
    expect(isId('wh', 'wh_short')).toBe(false);
    expect(isId('wh', 42)).toBe(false);
  });
});
