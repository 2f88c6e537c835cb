import dns from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import { isBlockedAddress } from '../net/address-policy.js';

export class BlockedAddressError extends Error {
  readonly code = 'EBLOCKED';
  readonly host: string;

  constructor(host: string) {
    // The resolved address is left out on purpose: echoing what an internal
    // name resolves to would let a webhook owner map our network.
    super(`refusing to connect to ${host}: it is or resolves to a private or reserved address`);
    this.name = 'BlockedAddressError';
    this.host = host;
  }
}

/**
 * A `lookup` for net/http/got that refuses hosts resolving to non-public
 * addresses. The socket connects to the very addresses that were checked, so
 * a DNS answer that changes between check and connect cannot slip through.
 */
export function createSafeLookup(allowInsecure: boolean): LookupFunction {
  return (hostname, options, callback) => {
    const opts: LookupOptions = typeof options === 'object' && options !== null ? options : {};
    const query: LookupOptions & { all: true } = { all: true };
    if (opts.family !== undefined) query.family = opts.family;
    if (opts.hints !== undefined) query.hints = opts.hints;

    dns.lookup(hostname, query, (err, addresses) => {
      if (err) {
        callback(err, []);
        return;
      }
      if (addresses.length === 0) {
        callback(notFound(hostname), []);
        return;
      }
      if (!allowInsecure && addresses.some((a) => isBlockedAddress(a.address))) {
        callback(new BlockedAddressError(hostname), []);
        return;
      }

      if (opts.all === true) {
        callback(null, addresses);
        return;
      }
      const first = addresses[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

/**
 * Node skips `lookup` entirely when the host is already an IP address, so the
 * sender must run this before connecting. Names are left to the lookup.
 */
export function checkLiteralHost(hostname: string, allowInsecure: boolean): void {
  if (allowInsecure) return;
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (isIP(bare) !== 0 && isBlockedAddress(bare)) {
    throw new BlockedAddressError(hostname);
  }
}

function notFound(hostname: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
  err.code = 'ENOTFOUND';
  err.syscall = 'getaddrinfo';
  return err;
}
