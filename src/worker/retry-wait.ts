// How long a failed attempt waits for its retry: the schedule's step, made longer (never shorter)
// by a receiver that answers 429 or 503 with Retry-After, up to WEBHOOK_RETRY_AFTER_MAX.
import type { SendResult } from './sender.js';

const DAY = '(Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const WEEKDAY = '(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '\\d{2}:\\d{2}:\\d{2}';
// The three HTTP-date forms of RFC 9110 section 5.6.7 (IMF-fixdate, and the obsolete RFC 850 and
// asctime forms a recipient must still read). Date.parse alone would take almost any text with a
// number in it for a date ("soon 1" is 2001), so only these shapes reach it.
const IMF_FIXDATE = new RegExp(`^${DAY}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^${WEEKDAY}, \\d{2}-${MONTH}-\\d{2} ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} [ \\d]\\d ${TIME} \\d{4}$`);
// Up to ten digits of seconds (over 300 years): anything longer is capped anyway.
const DELAY_SECONDS = /^\d{1,10}$/;

/**
 * The wait a Retry-After value asks for, in milliseconds from `now`: delay-seconds or an
 * HTTP-date (a date already past asks for none). Null for anything else, which is ignored.
 */
export function retryAfterMs(value: string, now: number): number | null {
  const text = value.trim();
  if (DELAY_SECONDS.test(text)) return Number(text) * 1000;
  let at = Number.NaN;
  // asctime carries no zone; HTTP dates are always in GMT.
  if (IMF_FIXDATE.test(text) || RFC850_DATE.test(text)) at = Date.parse(text);
  else if (ASCTIME_DATE.test(text)) at = Date.parse(`${text} GMT`);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - now);
}

/** Answers whose Retry-After is honoured: the receiver is overloaded or rate limiting us. */
const HONOURS_RETRY_AFTER = new Set([429, 503]);

/**
 * The wait before the next attempt after `result`, given the schedule's step for it (undefined:
 * no step left, so no retry: Retry-After never adds attempts). At least the step; at most the
 * larger of the step and `maxMs`.
 */
export function retryWaitMs(step: number | undefined, result: SendResult, maxMs: number, now: number): number | null {
  if (step === undefined) return null;
  if (result.ok || result.responseCode === null || !HONOURS_RETRY_AFTER.has(result.responseCode)) return step;
  const header = result.responseHeaders?.['retry-after'];
  const asked = header === undefined ? null : retryAfterMs(header, now);
  if (asked === null) return step;
  return Math.max(step, Math.min(asked, maxMs));
}
