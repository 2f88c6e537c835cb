// Invariant: only ordinary public unicast addresses pass. Everything else —
// loopback, private, link-local, CGNAT, multicast, reserved, documentation,
// tunnelling prefixes, cloud metadata, and anything that fails to parse — is
// blocked, so a webhook can never be pointed at infrastructure behind us.
import ipaddr from 'ipaddr.js';

// Every entry here already falls inside a blocked range; they are listed
// explicitly so a future change to ipaddr.js range tables cannot unblock them.
const METADATA_ADDRESSES = new Set([
  '169.254.169.254', // AWS, GCP, Azure, OpenStack instance metadata
  '169.254.170.2', // AWS ECS task metadata
  '100.100.100.200', // Alibaba Cloud metadata
  'fd00:ec2::254', // AWS IMDS over IPv6
]);

// IANA has only allocated 2000::/3 for global unicast; ipaddr.js reports the
// rest of the unassigned space as 'unicast', which is not something a public
// webhook receiver can legitimately live on.
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');

// Prefixes whose low 32 bits carry an IPv4 address that the packet really
// ends up at, so the embedded address is what must be judged.
const IPV4_COMPATIBLE = ipaddr.IPv6.parseCIDR('::/96');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

export function isBlockedAddress(ip: string): boolean {
  const parsed = parseStrict(ip);
  if (parsed === null) return true;
  if (parsed.kind() === 'ipv4') return isBlockedV4(parsed as ipaddr.IPv4);
  return isBlockedV6(parsed as ipaddr.IPv6);
}

function parseStrict(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  // inet_aton-style spellings (0x7f.1, 0177.0.0.1, 127.1) are read differently
  // by different parsers; resolvers and the URL parser always hand us dotted
  // decimal, so anything else is treated as hostile rather than guessed at.
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) return ipaddr.IPv4.parse(ip);
  if (ipaddr.IPv6.isValid(ip)) return ipaddr.IPv6.parse(ip);
  return null;
}

function isBlockedV4(addr: ipaddr.IPv4): boolean {
  if (METADATA_ADDRESSES.has(addr.toString())) return true;
  return addr.range() !== 'unicast';
}

function isBlockedV6(addr: ipaddr.IPv6): boolean {
  // A zone id only has meaning for link-scoped destinations.
  if (addr.zoneId !== undefined) return true;
  if (METADATA_ADDRESSES.has(addr.toString())) return true;

  const embedded = embeddedIPv4(addr);
  if (embedded !== null) return isBlockedV4(embedded);

  if (addr.range() !== 'unicast') return true;
  return !addr.match(GLOBAL_UNICAST_V6);
}

function embeddedIPv4(addr: ipaddr.IPv6): ipaddr.IPv4 | null {
  const range = addr.range();
  const carriesV4 =
    range === 'ipv4Mapped' || // ::ffff:a.b.c.d
    range === 'rfc6145' || // ::ffff:0:a.b.c.d (SIIT translated)
    addr.match(NAT64_WELL_KNOWN) || // 64:ff9b::a.b.c.d
    addr.match(IPV4_COMPATIBLE); // ::a.b.c.d, which also covers :: and ::1
  if (!carriesV4) return null;
  const bytes = addr.toByteArray().slice(12);
  return new ipaddr.IPv4(bytes);
}
