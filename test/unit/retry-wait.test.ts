import { describe, expect, it } from 'vitest';
import { retryAfterMs, retryWaitMs } from '../../src/worker/retry-wait.js';
import type { SendResult } from '../../src/worker/sender.js';

const NOW = Date.parse('2026-12-04T12:00:00.000Z');

function answered(code: number, retryAfter?: string): SendResult {
  return {
    ok: code >= 200 && code < 300,
    responseCode: code,
    durationMs: 5,
    requestHeaders: {},
    requestBody: '{}',
    responseHeaders: retryAfter === undefined ? {} : { 'retry-after': retryAfter },
    responseBody: '',
    responseBodyTruncated: false,
    error: null,
    errorClass: code >= 200 && code < 300 ? null : 'http',
  };
}

describe('Retry-After values', () => {
  it('reads delay-seconds', () => {
    expect(retryAfterMs('0', NOW)).toBe(0);
    expect(retryAfterMs('120', NOW)).toBe(120_000);
    expect(retryAfterMs(' 7 ', NOW)).toBe(7_000);
  });

  it('reads the three HTTP-date forms as GMT, counted from now; a past date asks for no wait', () => {
    expect(retryAfterMs('Fri, 04 Dec 2026 12:01:30 GMT', NOW)).toBe(90_000);
    expect(retryAfterMs('Friday, 04-Dec-26 12:01:30 GMT', NOW)).toBe(90_000);
    expect(retryAfterMs('Fri Dec  4 12:01:30 2026', NOW)).toBe(90_000);
    expect(retryAfterMs('Thu, 03 Dec 2026 12:00:00 GMT', NOW)).toBe(0);
  });

  it('ignores anything else', () => {
    for (const garbage of ['', 'soon', '-1', '1.5', '1e3', '0x10', '12abc', 'soon 1', '12345678901', '2026-12-04T12:01:30Z', 'Fri, 04 Dec 2026 12:01:30 CET', 'Fri, 31 Feb 2026 12:01:30 GMT x']) {
      expect(retryAfterMs(garbage, NOW), JSON.stringify(garbage)).toBeNull();
    }
  });
});

describe('the wait before a retry', () => {
  const MAX = 2_000;

  it('is the larger of the step and a 429 or 503 Retry-After, which is capped at the maximum', () => {
    expect(retryWaitMs(100, answered(503, '1'), MAX, NOW)).toBe(1_000);
    expect(retryWaitMs(100, answered(429, '60'), MAX, NOW)).toBe(MAX);
    expect(retryWaitMs(100, answered(429, 'Fri, 04 Dec 2026 12:00:01 GMT'), MAX, NOW)).toBe(1_000);
    expect(retryWaitMs(100, answered(503, 'Fri, 04 Dec 2026 13:00:00 GMT'), MAX, NOW)).toBe(MAX);
  });

  it('is never shorter than the step, whatever the header says or whatever the cap', () => {
    expect(retryWaitMs(5_000, answered(503, '1'), MAX, NOW)).toBe(5_000);
    expect(retryWaitMs(5_000, answered(503, '60'), MAX, NOW)).toBe(5_000);
    expect(retryWaitMs(100, answered(429, '0'), MAX, NOW)).toBe(100);
  });

  it('is the step for other answers, failures without an answer, and unreadable headers', () => {
    expect(retryWaitMs(100, answered(500, '60'), MAX, NOW)).toBe(100);
    expect(retryWaitMs(100, answered(502, '60'), MAX, NOW)).toBe(100);
    expect(retryWaitMs(100, answered(503), MAX, NOW)).toBe(100);
    expect(retryWaitMs(100, answered(503, 'later'), MAX, NOW)).toBe(100);
    expect(retryWaitMs(100, { ...answered(503, '60'), responseCode: null, responseHeaders: null, errorClass: 'timeout' }, MAX, NOW)).toBe(100);
  });

  it('adds no attempt after the last step', () => {
    expect(retryWaitMs(undefined, answered(503, '1'), MAX, NOW)).toBeNull();
  });
});
