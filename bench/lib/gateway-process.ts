// Builds the gateway once and runs it as a child process, compiled (`node dist/src/main.js`), the
// way it runs in production.
import type { ChildProcess } from 'node:child_process';
import { childEnv, cpuMs, repoRoot, startChild, stopChild } from './processes.js';

export const BENCH_JWT_SECRET = 'bench-jwt-secret-that-is-long-enough-for-hs256';
export const BENCH_ENCRYPTION_KEY = 'b'.repeat(64);

/** WEBHOOK_TIMEOUT of every benchmarked gateway: how long a receiver that never answers holds a slot. */
export const WEBHOOK_TIMEOUT_MS = 2000;

/** The settings every benchmarked gateway runs with (the report lists them). */
export const GATEWAY_SETTINGS: Record<string, string> = {
  LOG_LEVEL: 'warn',
  RATE_LIMIT_PER_MINUTE: '0',
  WEBHOOK_ALLOW_INSECURE_URLS: 'true',
  WORKER_CONCURRENCY: '96',
  WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '4',
  WORKER_POLL_INTERVAL: '1s',
  WEBHOOK_TIMEOUT: `${WEBHOOK_TIMEOUT_MS}ms`,
};

/**
 * The compiled entry point every benchmark starts: `npm run build`'s output, or another build
 * (BENCH_GATEWAY_ENTRY, e.g. of an older tree, for before/after comparisons in one way of running).
 */
export const GATEWAY_ENTRY = process.env['BENCH_GATEWAY_ENTRY'] || 'dist/src/main.js';

export interface GatewayProcess {
  /** Base URL of its HTTP server ('' for ROLE=worker, which has none). */
  url: string;
  pid: number;
  /** CPU time (user + system) the process has used so far, in ms. */
  cpuMs(): Promise<number>;
  output(): string;
  stop(): Promise<void>;
}

/** Compiles src and migrations (`npm run build`), into `outDir` when given (relative to the repository). */
export async function buildGateway(outDir?: string): Promise<void> {
  const child = startChild(['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', ...(outDir ? ['--outDir', outDir] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`npm run build failed:\n${out}`);
}

const OUTPUT_KEEP = 64 * 1024;

export async function startGatewayProcess(
  env: Record<string, string>,
  options: { nodeArgs?: string[]; timeoutMs?: number; entry?: string } = {},
): Promise<GatewayProcess> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const child: ChildProcess = startChild([...(options.nodeArgs ?? []), options.entry ?? GATEWAY_ENTRY], {
    cwd: repoRoot,
    env: childEnv({
      PORT: '0',
      HOST: '127.0.0.1',
      ENCRYPTION_KEY: BENCH_ENCRYPTION_KEY,
      JWT_SECRET: BENCH_JWT_SECRET,
      ...GATEWAY_SETTINGS,
      ...env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-OUTPUT_KEEP);
  };
  child.stderr?.on('data', keep);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) while starting:\n${out}`));
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      keep(chunk);
      const match = /webhook gateway (?:on (http:\/\/\S+)|worker started)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] ?? '');
      }
    });
  });
  child.removeAllListeners('exit');
  return {
    url,
    pid: child.pid!,
    cpuMs: () => cpuMs(child.pid!),
    output: () => out,
    stop: () => stopChild(child, 'SIGTERM', 20_000),
  };
}
