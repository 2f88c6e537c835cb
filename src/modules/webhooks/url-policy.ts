import { isIP } from 'node:net';
import { isBlockedAddress } from '../../net/address-policy.js';

export type UrlCheck = { ok: true; url: string } | { ok: false; message: string };

const MAX_URL_LENGTH = 2048;

// The WHATWG parser silently drops leading/trailing C0 controls and spaces, strips tabs and
// newlines anywhere and reads a backslash as a slash, so such a string would be stored as one
// thing and delivered as another; refuse it instead of normalizing it.
const REWRITTEN_BY_PARSER = /[\p{Cc}\s\\]/u;

/**
 * The one parse of a webhook URL, used at registration and again by the sender, so both read the
 * same host and path. Undefined when the text is not an absolute http(s) URL that parses as
 * written.
 */
export function parseWebhookUrl(raw: string): URL | undefined {
  if (REWRITTEN_BY_PARSER.test(raw)) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  // For http(s) the parser also reads `https:host` and `https:///host` as if they were
  // `https://host/`, so the stored text would name another host than the one delivered to.
  const special = url.protocol === 'http:' || url.protocol === 'https:';
  return special && !/^https?:\/\/[^/]/i.test(raw) ? undefined : url;
}

const fail = (message: string): UrlCheck => ({ ok: false, message });

/**
 * Registration-time check of a webhook target. Delivery re-checks every
 * resolved address (see worker/safe-lookup), because DNS answers can change
 * after this passes.
 */
export function checkWebhookUrl(raw: string, allowInsecure: boolean): UrlCheck {
  if (raw.length > MAX_URL_LENGTH) {
    return fail(`url must be at most ${MAX_URL_LENGTH} characters`);
  }
  const url = parseWebhookUrl(raw);
  if (!url) {
    return fail('url is not a valid absolute URL');
  }

  if (!(url.protocol === 'https:' || (allowInsecure && url.protocol === 'http:'))) {
    return fail(allowInsecure ? 'url must use http or https' : 'url must use https');
  }
  // Credentials in a URL end up in logs and in the delivery list shown to
  // users; receivers must authenticate deliveries via the signature instead.
  if (url.username !== '' || url.password !== '') {
    return fail('url must not contain credentials');
  }
  if (url.hostname === '') {
    return fail('url must include a host');
  }

  if (!allowInsecure) {
    const host = url.hostname.replace(/\.+$/, '').toLowerCase();
    if (host === 'localhost' || host.endsWith('.localhost')) {
      return fail('url host must not be localhost');
    }
    const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    if (isIP(literal) !== 0 && isBlockedAddress(literal)) {
      return fail('url host is a private or reserved address');
    }
  }

  return { ok: true, url: raw };
}
