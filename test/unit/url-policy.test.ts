import { describe, it, expect } from 'vitest';
import { checkWebhookUrl } from '../../src/modules/webhooks/url-policy.js';
import type { UrlCheck } from '../../src/modules/webhooks/url-policy.js';

function messageOf(result: UrlCheck): string {
  if (result.ok) throw new Error(`expected rejection, got ok for ${result.url}`);
  return result.message;
}

const PRIVATE = 'url host is a private or reserved address';
const INVALID = 'url is not a valid absolute URL';

describe('checkWebhookUrl', () => {
  describe('accepts public https URLs unchanged', () => {
    it.each([
      'https://example.com',
      'https://example.com/hooks/infraaudit?x=1#frag',
      'https://EXAMPLE.com:8443/path',
      'https://93.184.215.14/hook',
      'https://[2606:4700:4700::1111]/hook',
      'https://[::ffff:93.184.215.14]/hook',
      'https://localhost.example.com/hook',
      'https://notlocalhost/hook',
      'https://127.0.0.1.example.com/hook',
    ])('%s', (raw) => {
      expect(checkWebhookUrl(raw, false)).toEqual({ ok: true, url: raw });
    });
  });

  describe('scheme', () => {
    it('refuses http without allowInsecure', () => {
      expect(messageOf(checkWebhookUrl('http://example.com/hook', false))).toBe('url must use https');
    });

    it('allows http with allowInsecure', () => {
      expect(checkWebhookUrl('http://example.com/hook', true)).toEqual({ ok: true, url: 'http://example.com/hook' });
    });

    it.each(['ftp://example.com/x', 'file:///etc/passwd', 'javascript:alert(1)', 'ws://example.com', 'data:text/plain,hi'])(
      'refuses %s even with allowInsecure',
      (raw) => {
        expect(messageOf(checkWebhookUrl(raw, false))).toBe('url must use https');
        expect(messageOf(checkWebhookUrl(raw, true))).toBe('url must use http or https');
      },
    );
  });

  describe('credentials', () => {
    it.each([
      'https://user:hunter2@example.com/hook',
      'https://user@example.com/hook',
      'https://:hunter2@example.com/hook',
    ])('refuses %s with and without allowInsecure, without echoing it', (raw) => {
      for (const insecure of [false, true]) {
        const message = messageOf(checkWebhookUrl(raw, insecure));
        expect(message).toBe('url must not contain credentials');
        expect(message).not.toContain('hunter2');
      }
    });

    it('refuses credentials on an http URL with allowInsecure', () => {
      expect(messageOf(checkWebhookUrl('http://user:hunter2@localhost:8080/hook', true))).toBe(
        'url must not contain credentials',
      );
    });
  });

  describe('length', () => {
    const base = 'https://example.com/';
    const ofLength = (n: number) => base + 'a'.repeat(n - base.length);

    it('accepts exactly 2048 characters', () => {
      const raw = ofLength(2048);
      expect(raw).toHaveLength(2048);
      expect(checkWebhookUrl(raw, false)).toEqual({ ok: true, url: raw });
    });

    it('refuses 2049 characters', () => {
      const raw = ofLength(2049);
      expect(messageOf(checkWebhookUrl(raw, false))).toBe('url must be at most 2048 characters');
      expect(messageOf(checkWebhookUrl(raw, true))).toBe('url must be at most 2048 characters');
    });
  });

  describe('malformed input', () => {
    it.each([
      '',
      ' ',
      'example.com',
      '/relative/path',
      '//example.com/hook',
      'https://',
      'https://exa mple.com/',
      'https://[::1/',
      'https://256.0.0.1/',
      'https://1.2.3.4.5/',
      'not a url at all',
      ' https://example.com/hook',
      'https://example.com/hook ',
      '\thttps://example.com/hook',
      'https://example.com/hook\n',
      'https://exa\tmple.com/hook',
      'https://example.com/ho\nok',
      'https://\u0000example.com/',
    ])('%j is not a valid absolute URL', (raw) => {
      expect(messageOf(checkWebhookUrl(raw, false))).toBe(INVALID);
      expect(messageOf(checkWebhookUrl(raw, true))).toBe(INVALID);
    });
  });

  describe('localhost', () => {
    it.each([
      'https://localhost/hook',
      'https://LOCALHOST./hook',
      'https://localhost../hook',
      'https://LocalHost:8443/hook',
      'https://foo.localhost/hook',
      'https://a.b.FOO.LOCALHOST./hook',
      'https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook',
    ])('refuses %s', (raw) => {
      expect(messageOf(checkWebhookUrl(raw, false))).toBe('url host must not be localhost');
    });

    it('allows localhost with allowInsecure', () => {
      expect(checkWebhookUrl('http://localhost:8080/hook', true)).toEqual({
        ok: true,
        url: 'http://localhost:8080/hook',
      });
    });
  });

  describe('IP literal hosts', () => {
    it.each([
      ['loopback', 'https://127.0.0.1/hook'],
      ['trailing dot', 'https://127.0.0.1./hook'],
      ['private', 'https://10.0.0.5/hook'],
      ['private 172.16/12', 'https://172.20.1.1/hook'],
      ['private 192.168/16', 'https://192.168.0.10:8443/hook'],
      ['link-local', 'https://169.254.10.10/hook'],
      ['metadata', 'https://169.254.169.254/latest/meta-data/'],
      ['ECS metadata', 'https://169.254.170.2/v2/credentials'],
      ['Alibaba metadata', 'https://100.100.100.200/latest/meta-data/'],
      ['CGNAT', 'https://100.64.1.1/hook'],
      ['unspecified', 'https://0.0.0.0/hook'],
      ['broadcast', 'https://255.255.255.255/hook'],
      ['multicast', 'https://224.0.0.251/hook'],
      ['documentation', 'https://192.0.2.10/hook'],
      ['IPv6 loopback', 'https://[::1]/hook'],
      ['IPv6 unspecified', 'https://[::]/hook'],
      ['IPv6 link-local', 'https://[fe80::1]/hook'],
      ['IPv6 unique-local', 'https://[fd12:3456::1]/hook'],
      ['IPv6 AWS metadata', 'https://[fd00:ec2::254]/hook'],
      ['IPv6 multicast', 'https://[ff02::1]/hook'],
      ['IPv6 documentation', 'https://[2001:db8::1]/hook'],
      ['IPv4-mapped dotted', 'https://[::ffff:127.0.0.1]/hook'],
      ['IPv4-mapped hex', 'https://[::ffff:7f00:1]/hook'],
      ['IPv4-mapped metadata', 'https://[::ffff:169.254.169.254]/hook'],
      ['IPv4-compatible', 'https://[::127.0.0.1]/hook'],
      ['NAT64 loopback', 'https://[64:ff9b::7f00:1]/hook'],
    ])('refuses %s (%s)', (_name, raw) => {
      expect(messageOf(checkWebhookUrl(raw, false))).toBe(PRIVATE);
    });

    it.each([
      ['decimal', 'https://2130706433/hook'],
      ['octal', 'https://0177.0.0.1/hook'],
      ['hex', 'https://0x7f.1/hook'],
      ['hex full', 'https://0x7f000001/hook'],
      ['short', 'https://127.1/hook'],
      ['octal private', 'https://012.0.0.1/hook'],
      ['decimal metadata', 'https://2852039166/hook'],
    ])('refuses the %s IPv4 spelling %s, which the URL parser normalizes', (_name, raw) => {
      expect(new URL(raw).hostname).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(messageOf(checkWebhookUrl(raw, false))).toBe(PRIVATE);
    });

    it('accepts odd spellings of a public address, returning the raw string', () => {
      expect(new URL('https://1572394766/').hostname).toBe('93.184.215.14');
      expect(checkWebhookUrl('https://1572394766/', false)).toEqual({ ok: true, url: 'https://1572394766/' });
    });

    it('allows private literals with allowInsecure', () => {
      for (const raw of ['http://127.0.0.1:3000/hook', 'http://[::1]:3000/hook', 'https://10.0.0.5/hook']) {
        expect(checkWebhookUrl(raw, true)).toEqual({ ok: true, url: raw });
      }
    });
  });
});
