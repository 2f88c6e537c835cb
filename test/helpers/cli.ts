// Runs a command of the command line in this process (src/cli/commands.ts), as `npm run cli`
// would with `env` as its whole environment. Only the tests of the entry itself start a process.
import { runCli } from '../../src/cli/commands.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env,
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}
