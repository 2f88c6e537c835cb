import { describe, expect, it } from 'vitest';
import { isStorableText, MAX_JSON_DEPTH, unstorableJson } from '../../src/db/storable-text.js';

const nest = (levels: number): unknown => (levels === 0 ? 1 : { a: nest(levels - 1) });

describe('storable text', () => {
  it('refuses NUL and unpaired surrogates, accepts everything else', () => {
    for (const bad of ['\u0000', 'a\u0000b', '\ud800', 'x\udfff', '\udc00\ud800', '\ud83d']) expect(isStorableText(bad), JSON.stringify(bad)).toBe(false);
    for (const good of ['', 'plain', '𝕏', '👩‍👩‍👧', '\u202e\u200f\ufeff', '\u0001\u001f', '%00', '\\u0000']) {
      expect(isStorableText(good), JSON.stringify(good)).toBe(true);
    }
  });

  it('looks at every string and key of a JSON value', () => {
    expect(unstorableJson({ a: [1, 'ok', { b: null }], '𝕏': true })).toBeUndefined();
    expect(unstorableJson({ a: [1, { b: 'x\u0000' }] })).toBe('text');
    expect(unstorableJson({ 'k\ud800': 1 })).toBe('text');
    expect(unstorableJson(['\udfff'])).toBe('text');
  });

  it(`refuses nesting deeper than ${MAX_JSON_DEPTH} levels, without recursing itself`, () => {
    expect(unstorableJson(nest(MAX_JSON_DEPTH))).toBeUndefined();
    expect(unstorableJson(nest(MAX_JSON_DEPTH + 1))).toBe('depth');
    const deep = JSON.parse(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    expect(unstorableJson(deep)).toBe('depth');
  });
});
