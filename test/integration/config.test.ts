import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { killAll, runTsx } from '../helpers/processes.js';

const KEY = 'ab'.repeat(32);

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('loadConfig accepted the environment');
}

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: undefined,
      databasePreparedStatements: true,
      dataDir: './.data',
      encryptionKey: undefined,
      jwt: { secret: undefined, jwksUrl: undefined, issuer: undefined, audience: undefined, tenantClaim: 'sub' },
      role: 'all',
      workerConcurrency: 32,
      webhookTimeoutMs: 10_000,
      retryScheduleMs: [5 * 60_000, 30 * 60_000, 2 * 3_600_000],
      allowInsecureUrls: false,
      rateLimitPerMinute: 600,
      allowedOrigins: [],
      metricsToken: undefined,
      logLevel: 'info',
      maxBodyBytes: 1_048_576,
    });
  });

  it('reads every documented name', () => {
    const config = loadConfig({
      PORT: '9090',
      HOST: '127.0.0.1',
      DATABASE_URL: 'postgres://u:p@db.internal:5432/gateway',
      DATABASE_PREPARED_STATEMENTS: 'false',
      DATA_DIR: '/var/lib/gateway',
      ENCRYPTION_KEY: KEY.toUpperCase(),
      JWT_JWKS_URL: 'https://project.supabase.co/auth/v1/.well-known/jwks.json',
      JWT_ISSUER: 'https://project.supabase.co/auth/v1',
      JWT_AUDIENCE: 'authenticated',
      JWT_TENANT_CLAIM: 'tenant_id',
      ROLE: 'worker',
      WORKER_CONCURRENCY: '8',
      WEBHOOK_TIMEOUT: '5s',
      WEBHOOK_RETRY_SCHEDULE: '1m,10m',
      WEBHOOK_ALLOW_INSECURE_URLS: 'true',
      RATE_LIMIT_PER_MINUTE: '0',
      ALLOWED_ORIGINS: 'https://app.infraaudit.test, https://admin.infraaudit.test',
      METRICS_TOKEN: 'scrape-me',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      port: 9090,
      host: '127.0.0.1',
      databaseUrl: 'postgres://u:p@db.internal:5432/gateway',
      databasePreparedStatements: false,
      dataDir: '/var/lib/gateway',
      encryptionKey: KEY,
      jwt: {
        secret: undefined,
        jwksUrl: 'https://project.supabase.co/auth/v1/.well-known/jwks.json',
        issuer: 'https://project.supabase.co/auth/v1',
        audience: 'authenticated',
        tenantClaim: 'tenant_id',
      },
      role: 'worker',
      workerConcurrency: 8,
      webhookTimeoutMs: 5_000,
      retryScheduleMs: [60_000, 600_000],
      allowInsecureUrls: true,
      rateLimitPerMinute: 0,
      allowedOrigins: ['https://app.infraaudit.test', 'https://admin.infraaudit.test'],
      metricsToken: 'scrape-me',
      logLevel: 'debug',
    });
  });

  it.each([
    ['300ms', 300],
    ['10s', 10_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1.5s', 1_500],
  ])('reads the duration %s', (text, ms) => {
    expect(loadConfig({ WEBHOOK_TIMEOUT: text }).webhookTimeoutMs).toBe(ms);
  });

  it('reads a retry schedule with mixed units', () => {
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE: '300ms,10s,2h' }).retryScheduleMs).toEqual([300, 10_000, 7_200_000]);
  });

  it('caps Retry-After at WEBHOOK_RETRY_AFTER_MAX, an hour unless set', () => {
    expect(loadConfig({}).retryAfterMaxMs).toBe(3_600_000);
    expect(loadConfig({ WEBHOOK_RETRY_AFTER_MAX: '2s' }).retryAfterMaxMs).toBe(2_000);
    expect(problemsOf({ WEBHOOK_RETRY_AFTER_MAX: 'soon' }).filter((p) => p.startsWith('WEBHOOK_RETRY_AFTER_MAX:'))).toHaveLength(1);
  });

  it('names every problem at once', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      ENCRYPTION_KEY: 'too-short',
      WEBHOOK_TIMEOUT: 'forever',
      WEBHOOK_RETRY_SCHEDULE: '5m,soon',
      ROLE: 'boss',
      WEBHOOK_ALLOW_INSECURE_URLS: 'maybe',
      LOG_LEVEL: 'loud',
      JWT_JWKS_URL: 'not a url',
    });
    for (const name of [
      'PORT',
      'ENCRYPTION_KEY',
      'WEBHOOK_TIMEOUT',
      'WEBHOOK_RETRY_SCHEDULE',
      'ROLE',
      'WEBHOOK_ALLOW_INSECURE_URLS',
      'LOG_LEVEL',
      'JWT_JWKS_URL',
    ]) {
      expect(problems.filter((p) => p.startsWith(`${name}:`)), name).toHaveLength(1);
    }
    expect(problems).toHaveLength(8);
  });

  it.each([
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['WORKER_CONCURRENCY', '0'],
    ['RATE_LIMIT_PER_MINUTE', '1.5'],
    ['WEBHOOK_TIMEOUT', '10 minutes'],
    ['WEBHOOK_TIMEOUT', '0s'],
    ['DATABASE_URL', 'mysql://db/gateway'],
    ['ENCRYPTION_KEY', 'g'.repeat(64)],
  ])('refuses %s=%s', (name, value) => {
    const env: Record<string, string> = { [name]: value };
    if (name === 'DATABASE_URL') env['ENCRYPTION_KEY'] = KEY;
    const problems = problemsOf(env);
    expect(problems.some((p) => p.startsWith(`${name}:`)), problems.join('; ')).toBe(true);
  });

  it('refuses DATABASE_URL without ENCRYPTION_KEY', () => {
    const problems = problemsOf({ DATABASE_URL: 'postgres://db.internal/gateway' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^ENCRYPTION_KEY:/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://db.internal/gateway', ENCRYPTION_KEY: KEY })).not.toThrow();
  });

  it('refuses JWT_SECRET together with JWT_JWKS_URL', () => {
    const problems = problemsOf({ JWT_SECRET: 's', JWT_JWKS_URL: 'https://idp.test/jwks.json' });
    expect(problems.join('\n')).toMatch(/JWT_SECRET/);
    expect(problems.join('\n')).toMatch(/JWT_JWKS_URL/);
  });

  it('treats empty values as unset', () => {
    const config = loadConfig({ DATABASE_URL: '', ENCRYPTION_KEY: '', JWT_SECRET: '', METRICS_TOKEN: ' ' });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.encryptionKey).toBeUndefined();
    expect(config.jwt.secret).toBeUndefined();
    expect(config.metricsToken).toBeUndefined();
  });
});

describe('src/main.ts with a bad environment', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await killAll();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('exits with code 1 and names every bad setting on stderr', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'gateway-config-'));
    dirs.push(dataDir);
    const result = await runTsx('src/main.ts', [], {
      DATA_DIR: dataDir,
      PORT: 'not-a-port',
      WEBHOOK_RETRY_SCHEDULE: '5m,later',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/PORT/);
    expect(result.stderr).toMatch(/WEBHOOK_RETRY_SCHEDULE/);
    expect(result.stdout).not.toMatch(/gateway on http/);
  }, 120_000);
});
