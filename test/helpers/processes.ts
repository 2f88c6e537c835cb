// Child processes for tests that must run the real entry points (src/main.ts, src/cli.ts). Every
// process started here is tracked so a suite's afterAll can kill whatever is still running.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface RunningProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout; rejects on exit or after `timeoutMs`. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<number | string>;
}

const running = new Set<ChildProcessWithoutNullStreams>();

/**
 * A clean environment for a child: only what node and npx need, plus `env`. The test process's
 * own settings (DATABASE_URL in CI, for one) never leak into the child.
 */
export function childEnv(env: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'NODE_OPTIONS', 'npm_config_cache']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

/**
 * Runs a TypeScript entry point the way `npx tsx <script>` does, but as one node process with tsx
 * as its loader, so signals reach the script itself and nothing outlives a kill.
 */
export function startTsx(script: string, args: string[], env: Record<string, string>): RunningProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: repoRoot,
    env: childEnv(env),
    stdio: 'pipe',
  });
  running.add(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const l of listeners) l();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      for (const l of listeners) l();
      resolve(code ?? signal ?? 'unknown');
    });
  });
  let ended = false;
  void exited.then(() => {
    ended = true;
  });

  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForStdout(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(out);
          if (match) {
            cleanup();
            resolve(match);
          } else if (ended || child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`process ended before ${pattern} appeared\nstdout:\n${out}\nstderr:\n${err}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}\nstdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Runs a command to completion. */
export async function runTsx(
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = startTsx(script, args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Kills every child this module started that is still running (for afterAll). */
export async function killAll(): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const child of running) {
    waits.push(new Promise<void>((resolve) => child.once('exit', () => resolve())));
    child.kill('SIGKILL');
  }
  await Promise.all(waits);
}
