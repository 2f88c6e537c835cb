import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import type { LookupAddress } from 'node:dns';
import type { OptionsInit } from 'got';
import { afterAll, afterEach, beforeAll, describe, it, expect, vi } from 'vitest';
import { BlockedAddressError, checkLiteralHost, createSafeLookup } from '../../src/worker/safe-lookup.js';

type StubCallback = (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void;
type LookupResult = { err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number };

function lookup(fn: LookupFunction, hostname: string, options: Parameters<LookupFunction>[1]): Promise<LookupResult> {
  return new Promise((resolve) => {
    fn(hostname, options, (err, address, family) => resolve({ err, address, family }));
  });
}

describe('createSafeLookup', () => {
  it('fits got dnsLookup and net/http lookup options', () => {
    const gotOptions: OptionsInit = { dnsLookup: createSafeLookup(false) };
    const agent = new http.Agent({ lookup: createSafeLookup(false) });
    expect(typeof gotOptions.dnsLookup).toBe('function');
    agent.destroy();
  });

  for (const all of [true, false]) {
    it(`refuses localhost with all: ${all}`, async () => {
      const { err, address } = await lookup(createSafeLookup(false), 'localhost', { all });
      expect(err).toBeInstanceOf(BlockedAddressError);
      expect(err?.code).toBe('EBLOCKED');
      expect(err?.message).toContain('localhost');
      expect(err?.message).not.toContain('127.0.0.1');
      expect(address).toEqual([]);
    });

    it(`refuses a loopback literal passed to lookup with all: ${all}`, async () => {
      const { err } = await lookup(createSafeLookup(false), '127.0.0.1', { all });
      expect(err?.code).toBe('EBLOCKED');
    });
  }

  it('resolves localhost with allowInsecure in the all: true shape', async () => {
    const { err, address } = await lookup(createSafeLookup(true), 'localhost', { all: true });
    expect(err).toBeNull();
    expect(Array.isArray(address)).toBe(true);
    const list = address as LookupAddress[];
    expect(list.length).toBeGreaterThan(0);
    for (const entry of list) {
      expect(['127.0.0.1', '::1']).toContain(entry.address);
      expect([4, 6]).toContain(entry.family);
    }
  });

  it('resolves localhost with allowInsecure in the all: false shape', async () => {
    const { err, address, family } = await lookup(createSafeLookup(true), 'localhost', { all: false });
    expect(err).toBeNull();
    expect(typeof address).toBe('string');
    expect(['127.0.0.1', '::1']).toContain(address);
    expect(family).toBe(address === '::1' ? 6 : 4);
  });

  it('honours the requested family', async () => {
    const { err, address, family } = await lookup(createSafeLookup(true), 'localhost', { family: 4 });
    expect(err).toBeNull();
    expect(address).toBe('127.0.0.1');
    expect(family).toBe(4);
  });

  describe('with a stubbed resolver', () => {
    afterEach(() => {
      vi.restoreAllMocks();
    });

    function stubResolver(err: NodeJS.ErrnoException | null, addresses: LookupAddress[]): void {
      vi.spyOn(dns, 'lookup').mockImplementation(((_host: string, _opts: unknown, cb: StubCallback) => {
        queueMicrotask(() => cb(err, addresses));
      }) as unknown as typeof dns.lookup);
    }

    it('refuses when any one of several answers is private', async () => {
      stubResolver(null, [
        { address: '93.184.215.14', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ]);
      const { err } = await lookup(createSafeLookup(false), 'mixed.example', { all: true });
      expect(err?.code).toBe('EBLOCKED');
      expect(err?.message).not.toContain('10.0.0.7');
    });

    it('hands back exactly the checked public answers', async () => {
      const answers = [
        { address: '2606:4700:4700::1111', family: 6 },
        { address: '93.184.215.14', family: 4 },
      ];
      stubResolver(null, answers);
      expect(await lookup(createSafeLookup(false), 'public.example', { all: true })).toEqual({
        err: null,
        address: answers,
        family: undefined,
      });
      expect(await lookup(createSafeLookup(false), 'public.example', { all: false })).toEqual({
        err: null,
        address: '2606:4700:4700::1111',
        family: 6,
      });
    });

    it('passes resolver errors through', async () => {
      const failure: NodeJS.ErrnoException = Object.assign(new Error('getaddrinfo ENOTFOUND x.example'), {
        code: 'ENOTFOUND',
      });
      stubResolver(failure, []);
      const { err } = await lookup(createSafeLookup(false), 'x.example', { all: false });
      expect(err).toBe(failure);
    });

    it('treats an empty answer as not found', async () => {
      stubResolver(null, []);
      const { err } = await lookup(createSafeLookup(false), 'empty.example', { all: true });
      expect(err?.code).toBe('ENOTFOUND');
    });
  });
});

describe('checkLiteralHost', () => {
  it.each(['127.0.0.1', '10.0.0.1', '169.254.169.254', '::1', '[::1]', '[::ffff:127.0.0.1]', '[fd00:ec2::254]', '0.0.0.0'])(
    'throws for blocked literal %s',
    (host) => {
      expect(() => checkLiteralHost(host, false)).toThrow(BlockedAddressError);
      try {
        checkLiteralHost(host, false);
      } catch (err) {
        expect((err as BlockedAddressError).code).toBe('EBLOCKED');
        expect((err as BlockedAddressError).message).toContain(host);
      }
    },
  );

  it.each(['93.184.215.14', '2606:4700:4700::1111', '[2606:4700:4700::1111]', 'example.com', 'localhost', '0x7f.1'])(
    'lets %s through (names are checked at lookup time)',
    (host) => {
      expect(() => checkLiteralHost(host, false)).not.toThrow();
    },
  );

  it('allows blocked literals with allowInsecure', () => {
    expect(() => checkLiteralHost('127.0.0.1', true)).not.toThrow();
    expect(() => checkLiteralHost('[::1]', true)).not.toThrow();
  });
});

describe('http.get through the safe lookup', () => {
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('inside'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function get(allowInsecure: boolean): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.get(
        { host: 'localhost', port, path: '/', agent: false, lookup: createSafeLookup(allowInsecure) },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
    });
  }

  it('refuses to connect to localhost', async () => {
    await expect(get(false)).rejects.toMatchObject({ code: 'EBLOCKED' });
  });

  it('connects with allowInsecure', async () => {
    await expect(get(true)).resolves.toEqual({ status: 200, body: 'inside' });
  });
});
