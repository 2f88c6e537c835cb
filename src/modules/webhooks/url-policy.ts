import { isIP } from 'node:net';
import { isBlockedAddress } from '../../net/address-policy.js';

export type UrlCheck = { ok: true; url: string } | { ok: false; message: string };

const MAX_URL_LENGTH = 2048;

// The WHATWG parser silently drops leading/trailing C0 controls and spaces and
// strips tabs and newlines anywhere, so such a string would be stored as one
// thing and delivered as another; refuse it instead of normalizing it.
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

const fail = (message: string): UrlCheck => ({ ok: false, message });

/**
 * Registration-time check of a webhook target. Delivery re-checks every
 * resolved address (see delivery/safe-lookup), because DNS answers can change
 * after this passes.
 */
export function checkWebhookUrl(raw: string, allowInsecure: boolean): UrlCheck {
  if (raw.length > MAX_URL_LENGTH) {
    return fail(`url must be at most ${MAX_URL_LENGTH} characters`);
  }
  if (raw !== raw.trim() || CONTROL_CHARS.test(raw)) {
    return fail('url is not a valid absolute URL');
  }

  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail('url is not a valid absolute URL');
  }

  if (!(url.protocol === 'https:' || (allowInsecure && url.protocol === 'http:'))) {
    return fail(allowInsecure ? 'url must use http or https' : 'url must use https');
  }
  // For http(s) the parser also reads `https:host`, `https:///host` and backslashes as if they
  // were `https://host/`, so the stored text would name another host than the one delivered to.
  if (!/^https?:\/\/[^/\\]/i.test(raw)) {
    return fail('url is not a valid absolute URL');
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
