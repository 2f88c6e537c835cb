import { describe, it, expect } from 'vitest';
import { isBlockedAddress } from '../../src/net/address-policy.js';

const blockedV4: Array<[string, string]> = [
  ['loopback', '127.0.0.1'],
  ['loopback top', '127.255.255.254'],
  ['private 10/8', '10.1.2.3'],
  ['private 172.16/12 low', '172.16.0.1'],
  ['private 172.16/12 high', '172.31.255.254'],
  ['private 192.168/16', '192.168.1.1'],
  ['link-local', '169.254.1.1'],
  ['CGNAT low', '100.64.0.1'],
  ['CGNAT high', '100.127.255.254'],
  ['multicast', '224.0.0.1'],
  ['multicast high', '239.255.255.250'],
  ['unspecified', '0.0.0.0'],
  ['this-network 0/8', '0.1.2.3'],
  ['broadcast', '255.255.255.255'],
  ['reserved 240/4', '240.0.0.1'],
  ['IETF protocol assignments', '192.0.0.8'],
  ['TEST-NET-1', '192.0.2.1'],
  ['TEST-NET-2', '198.51.100.7'],
  ['TEST-NET-3', '203.0.113.9'],
  ['benchmarking 198.18/15', '198.19.0.1'],
  ['6to4 relay anycast', '192.88.99.1'],
  ['AS112', '192.175.48.1'],
  ['AMT', '192.52.193.1'],
  ['AWS/GCP/Azure metadata', '169.254.169.254'],
  ['ECS task metadata', '169.254.170.2'],
  ['Alibaba metadata', '100.100.100.200'],
];

const blockedV6: Array<[string, string]> = [
  ['loopback', '::1'],
  ['loopback long form', '0:0:0:0:0:0:0:1'],
  ['unspecified', '::'],
  ['link-local', 'fe80::1'],
  ['link-local upper /10', 'febf::1'],
  ['link-local with zone', 'fe80::1%eth0'],
  ['unique-local fc00::/7 (fc)', 'fc00::1'],
  ['unique-local fc00::/7 (fd)', 'fd12:3456:789a::1'],
  ['multicast', 'ff02::1'],
  ['multicast global scope', 'ff0e::101'],
  ['deprecated site-local', 'fec0::1'],
  ['discard-only', '100::1'],
  ['documentation 2001:db8::/32', '2001:db8::1'],
  ['documentation 3fff::/20', '3fff::1'],
  ['teredo', '2001:0:4136:e378::1'],
  ['benchmarking', '2001:2::1'],
  ['ORCHIDv2', '2001:20::1'],
  ['6to4', '2002:c000:0204::1'],
  ['6to4 embedding a public v4', '2002:5db8:d70e::1'],
  ['NAT64 local-use', '64:ff9b:1::1'],
  ['segment routing', '5f00::1'],
  ['AWS IMDS over IPv6', 'fd00:ec2::254'],
  ['AWS IMDS over IPv6, uncompressed', 'fd00:ec2:0:0:0:0:0:254'],
  ['outside 2000::/3', '4000::1'],
  ['zone id on a global address', '2606:4700:4700::1111%eth0'],
];

const embedded: Array<[string, string]> = [
  ['IPv4-mapped dotted', '::ffff:127.0.0.1'],
  ['IPv4-mapped hex', '::ffff:7f00:1'],
  ['IPv4-mapped uppercase', '::FFFF:7F00:1'],
  ['IPv4-mapped long form', '0:0:0:0:0:ffff:7f00:1'],
  ['IPv4-mapped private', '::ffff:10.0.0.1'],
  ['IPv4-mapped metadata', '::ffff:169.254.169.254'],
  ['IPv4-mapped metadata hex', '::ffff:a9fe:a9fe'],
  ['IPv4-mapped CGNAT', '::ffff:100.100.100.200'],
  ['IPv4-compatible loopback dotted', '::127.0.0.1'],
  ['IPv4-compatible loopback hex', '::7f00:1'],
  ['IPv4-compatible private', '::192.168.0.1'],
  ['IPv4-translated loopback', '::ffff:0:127.0.0.1'],
  ['NAT64 loopback', '64:ff9b::127.0.0.1'],
  ['NAT64 loopback hex', '64:ff9b::7f00:1'],
  ['NAT64 private', '64:ff9b::10.0.0.1'],
];

const publicAddresses = [
  '93.184.215.14',
  '8.8.8.8',
  '1.1.1.1',
  '172.15.255.255',
  '172.32.0.1',
  '100.63.255.255',
  '100.128.0.1',
  '11.0.0.1',
  '223.255.255.254',
  '2606:4700:4700::1111',
  '2001:4860:4860::8888',
  '2a00:1450:4001:82b::200e',
  '::ffff:93.184.215.14',
  '::ffff:5db8:d70e',
  '64:ff9b::93.184.215.14',
];

const garbage = [
  '',
  ' ',
  'localhost',
  'example.com',
  '256.1.1.1',
  '1.2.3',
  '1.2.3.4.5',
  '1.1.1.1 ',
  ' 1.1.1.1',
  '[2606:4700:4700::1111]',
  '2606:4700:4700::1111::1',
  ':::',
  'gggg::1',
  '1.1.1.1/32',
  'null',
];

describe('isBlockedAddress', () => {
  it.each(blockedV4)('blocks IPv4 %s (%s)', (_name, ip) => {
    expect(isBlockedAddress(ip)).toBe(true);
  });

  it.each(blockedV6)('blocks IPv6 %s (%s)', (_name, ip) => {
    expect(isBlockedAddress(ip)).toBe(true);
  });

  it.each(embedded)('judges %s (%s) by the embedded IPv4 address', (_name, ip) => {
    expect(isBlockedAddress(ip)).toBe(true);
  });

  it.each(publicAddresses)('lets public unicast %s through', (ip) => {
    expect(isBlockedAddress(ip)).toBe(false);
  });

  it.each(garbage)('blocks unparseable input %j', (ip) => {
    expect(isBlockedAddress(ip)).toBe(true);
  });

  it.each(['127.1', '0x7f.1', '0x7f000001', '2130706433', '0177.0.0.1', '010.8.8.8', '8.8.8.010'])(
    'blocks non dotted-decimal IPv4 spelling %s instead of guessing what it means',
    (ip) => {
      expect(isBlockedAddress(ip)).toBe(true);
    },
  );
});
