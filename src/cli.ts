// The command line: `npm run cli -- <command>` (or `node dist/src/cli.js <command>`). The commands
// are in src/cli/commands.ts; this entry gives them the process's streams and exits with their code.
import { runCli } from './cli/commands.js';

const code = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
process.exit(code);
