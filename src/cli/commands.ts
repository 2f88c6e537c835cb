// The command line's commands, as one function: `runCli(argv, io)` parses the arguments, runs the
// command and answers its exit code, writing only through `io`. src/cli.ts runs it as a process;
// tests call it in the same process, which takes milliseconds where starting a process takes seconds.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { openDatabase, type Database } from '../db/connections.js';
import { migrate } from '../db/orm.js';
import { printSchemaText } from '../graphql/schema.js';
import { verifyInfraAuditSignature, verifyStandardWebhooks } from '../worker/signature.js';
import { createLogger } from '../logger.js';
import { ApiKeyService } from '../modules/api-keys/api-key.service.js';
import { EventService } from '../modules/events/event.service.js';

export interface CliIo {
  /** The settings (DATABASE_URL, DATA_DIR, ...) as environment variables; by default the process's. */
  env?: NodeJS.ProcessEnv;
  stdout(text: string): void;
  stderr(text: string): void;
}

const silentLogger = () => createLogger('silent');

const HELP = `Usage: gateway-cli <command> [options]

Commands:
  migrate                                  apply pending database migrations
  api-key create --tenant T --name N       create an API key for tenant T (printed once)
  api-key list --tenant T                  list the tenant's active API keys
  api-key revoke --tenant T --id ID        revoke an API key at once
  schema print [--out FILE]                print the GraphQL schema (default: stdout)
  schema check [--file FILE] [--types F]   exit 1 when FILE (default schema.graphql) is stale, or
                                           F (default src/rest/graphql-env.d.ts, the REST rows'
                                           types) is not what gql.tada makes of schema.graphql
  publish --tenant T --event E [--data JSON]
                                           publish an event (default data: {"test":true})
  verify --secret S (--body B | --body-file F) [--signature H]
         [--webhook-id I --webhook-timestamp T --webhook-signature V] [--tolerance SECONDS]
                                           check a delivery's signatures as a receiver would;
                                           exit 0 when every given signature is valid

The database comes from DATABASE_URL, or the embedded database in DATA_DIR (stop the server
first: the embedded database serves one process at a time).
`;

async function withDatabase<T>(env: NodeJS.ProcessEnv | undefined, fn: (db: Database, applied: string[]) => Promise<T>): Promise<T> {
  const config = loadConfig(env);
  const db = await openDatabase(config);
  try {
    const applied = await migrate(db);
    return await fn(db, applied);
  } finally {
    await db.close();
  }
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

class UsageError extends Error {}

/** The REST rows' gql.tada types (see src/rest/graphql.ts); written by `npm run schema:print`. */
const GRAPHQL_ENV = 'src/rest/graphql-env.d.ts';

/**
 * What `gql.tada generate output` writes to GRAPHQL_ENV from the schema file named in
 * tsconfig.json. Loaded on demand: gql.tada's generator needs TypeScript, a development tool.
 */
async function generatedGraphqlEnv(): Promise<string> {
  const { generateOutput } = await import('@gql.tada/cli-utils');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'graphql-env-'));
  try {
    const output = path.join(dir, path.basename(GRAPHQL_ENV));
    await generateOutput({ output, tsconfig: undefined, silent: true });
    return await readFile(output, 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const OPTIONS = {
  tenant: { type: 'string' },
  name: { type: 'string' },
  id: { type: 'string' },
  out: { type: 'string' },
  file: { type: 'string' },
  types: { type: 'string' },
  event: { type: 'string' },
  data: { type: 'string' },
  secret: { type: 'string' },
  body: { type: 'string' },
  'body-file': { type: 'string' },
  signature: { type: 'string' },
  'webhook-id': { type: 'string' },
  'webhook-timestamp': { type: 'string' },
  'webhook-signature': { type: 'string' },
  tolerance: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  } catch (err) {
    // An unknown option or a missing option value is the caller's mistake, like an unknown command.
    throw new UsageError((err as Error).message);
  }
}

async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  const [command, sub] = positionals;
  if (values.help || command === undefined || command === 'help') {
    io.stdout(HELP);
    return 0;
  }
  switch (`${command} ${sub ?? ''}`.trim()) {
    case 'migrate': {
      const applied = await withDatabase(io.env, (_db, names) => Promise.resolve(names));
      io.stdout(applied.length ? `applied: ${applied.join(', ')}\n` : 'migrations up to date\n');
      return 0;
    }
    case 'api-key create': {
      const tenant = required(values, 'tenant');
      const name = required(values, 'name');
      const created = await withDatabase(io.env, (db) => new ApiKeyService(db.orm.em.fork()).create(tenant, name));
      io.stdout(`${created.key}\n`);
      io.stderr(`created ${created.apiKey.id} for tenant ${tenant}; the key is shown only this once\n`);
      return 0;
    }
    case 'api-key list': {
      const tenant = required(values, 'tenant');
      const keys = await withDatabase(io.env, (db) => new ApiKeyService(db.orm.em.fork()).list(tenant));
      for (const k of keys) {
        io.stdout(`${k.id}\t${k.prefix}…\t${k.name}\t${k.createdAt.toISOString()}\t${k.lastUsedAt?.toISOString() ?? '-'}\n`);
      }
      return 0;
    }
    case 'api-key revoke': {
      const tenant = required(values, 'tenant');
      const id = required(values, 'id');
      await withDatabase(io.env, (db) => new ApiKeyService(db.orm.em.fork()).revoke(tenant, id));
      io.stdout(`revoked ${id}\n`);
      return 0;
    }
    case 'schema print': {
      const text = printSchemaText();
      if (values.out) await writeFile(values.out, text);
      else io.stdout(text);
      return 0;
    }
    case 'schema check': {
      const file = values.file ?? path.resolve('schema.graphql');
      const current = await readFile(file, 'utf8').catch(() => '');
      if (current !== printSchemaText()) {
        io.stderr(`${file} is stale: run \`npm run schema:print\`\n`);
        return 1;
      }
      const env = values.types ?? path.resolve(GRAPHQL_ENV);
      if ((await readFile(env, 'utf8').catch(() => '')) !== (await generatedGraphqlEnv())) {
        io.stderr(`${env} is stale: run \`npm run schema:print\`\n`);
        return 1;
      }
      return 0;
    }
    case 'publish': {
      const tenant = required(values, 'tenant');
      const event = required(values, 'event');
      let data: unknown = { test: true };
      if (values.data !== undefined) {
        try {
          data = JSON.parse(values.data);
        } catch {
          throw new UsageError('--data must be JSON');
        }
      }
      const result = await withDatabase(io.env, async (db) => {
        const notifier = db.createNotifier(silentLogger());
        try {
          return await new EventService(db.orm.em.fork(), notifier).publish(
            { tenantId: null, role: 'service', via: 'jwt' },
            { event, data, tenantId: tenant },
          );
        } finally {
          await notifier.close();
        }
      });
      io.stdout(`${JSON.stringify({ id: result.id, event: result.event, deliveries: result.deliveries })}\n`);
      return 0;
    }
    case 'verify': {
      const secret = required(values, 'secret');
      const body =
        values.body ?? (values['body-file'] !== undefined ? await readFile(values['body-file'], 'utf8') : undefined);
      if (body === undefined) throw new UsageError('--body or --body-file is required');
      const checks: [string, boolean][] = [];
      if (values.signature !== undefined) {
        checks.push(['X-InfraAudit-Signature', verifyInfraAuditSignature(secret, body, values.signature)]);
      }
      if (values['webhook-signature'] !== undefined) {
        const toleranceSec = values.tolerance !== undefined ? Number(values.tolerance) : undefined;
        checks.push([
          'webhook-signature',
          verifyStandardWebhooks(
            secret,
            { id: values['webhook-id'], timestamp: values['webhook-timestamp'], signature: values['webhook-signature'] },
            body,
            toleranceSec !== undefined && Number.isFinite(toleranceSec) ? { toleranceSec } : {},
          ),
        ]);
      }
      if (checks.length === 0) throw new UsageError('give --signature and/or --webhook-signature');
      for (const [name, ok] of checks) io.stdout(`${name}: ${ok ? 'valid' : 'INVALID'}\n`);
      return checks.every(([, ok]) => ok) ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command "${positionals.join(' ')}"`);
  }
}

/** Runs one command line; answers the exit code: 0 done, 1 failed, 2 a usage error. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    if (err instanceof UsageError) io.stderr(`${err.message}\n\n${HELP}`);
    else if (err instanceof ConfigError) io.stderr(`${err.message}\n`);
    else io.stderr(`error: ${(err as Error).message}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}
