// Child processes of the benchmark runner. Each one is tracked so that a failed run still ends
// them all, by pid, before the runner exits.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const children = new Set<ChildProcess>();

export function startChild(args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: repoRoot, ...options });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Resolves when the child has exited; sends SIGKILL if it has not after `graceMs`. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 20_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

export async function stopAllChildren(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, 'SIGKILL', 5_000)));
}

/** A clean environment for a child: only what node needs, plus `env`. */
export function childEnv(env: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) {
    const value = process.env[name];
    if (value !== undefined) base[name] = value;
  }
  return { ...base, ...env };
}

/** Resident set size of a process in bytes, from /proc (Linux); NaN elsewhere. */
export async function rssBytes(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux); NaN elsewhere. */
export async function cpuMs(pid: number): Promise<number> {
  try {
    return statCpuMs(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time (user + system) used so far by every process named postgres on this machine: the
 * server's backends, which do the database's share of the gateway's work when DATABASE_URL
 * points at a local server. A backend that exits takes its time with it, so compare two readings
 * taken while the gateway's pool is open. NaN when there is no such process.
 */
export async function postgresCpuMs(): Promise<number> {
  let total = 0;
  let seen = false;
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (!stat.includes('(postgres)')) continue;
    total += statCpuMs(stat);
    seen = true;
  }
  return seen ? total : Number.NaN;
}

/** utime + stime of one /proc/<pid>/stat line, in ms. */
function statCpuMs(stat: string): number {
  // Fields after the command name (which may hold spaces) start at ")"; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SEC;
}

/** USER_HZ: 100 on every Linux the benchmarks run on. */
const CLOCK_TICKS_PER_SEC = 100;

/** Samples a process's RSS every `everyMs` until stopped; reports the peak and the last sample. */
export function sampleRss(pid: number, everyMs = 200): { stop(): Promise<{ peak: number; last: number }> } {
  let peak = 0;
  let last = Number.NaN;
  let pending: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    pending = rssBytes(pid).then((rss) => {
      if (Number.isFinite(rss)) {
        last = rss;
        peak = Math.max(peak, rss);
      }
    });
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await pending;
      const rss = await rssBytes(pid);
      if (Number.isFinite(rss)) {
        last = rss;
        peak = Math.max(peak, rss);
      }
      return { peak, last };
    },
  };
}

/**
 * Runs a bench entry point: on success stops every child and exits 0; on failure prints the error
 * as `<name> failed: ...`, stops every child and exits 1.
 */
export function runMain(name: string, main: () => Promise<void>): void {
  main()
    .then(() => stopAllChildren())
    .then(() => process.exit(0))
    .catch(async (err: unknown) => {
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      await stopAllChildren();
      process.exit(1);
    });
}
