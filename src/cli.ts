// The command line: `npm run cli -- <command>` (or `node dist/src/cli.js <command>`).
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase, type Database } from './db/connections.js';
import { migrate } from './db/orm.js';
import { printSchemaText } from './graphql/schema.js';
import { verifyInfraAuditSignature, verifyStandardWebhooks } from './delivery/signature.js';
import { createLogger } from './logger.js';
import { ApiKeyService } from './modules/api-keys/api-key.service.js';
import { EventService } from './modules/events/event.service.js';

const silentLogger = () => createLogger('silent');

const HELP = `Usage: gateway-cli <command> [options]

Commands:
  migrate                                  apply pending database migrations
  api-key create --tenant T --name N       create an API key for tenant T (printed once)
  api-key list --tenant T                  list the tenant's active API keys
  api-key revoke --tenant T --id ID        revoke an API key at once
  schema print [--out FILE]                print the GraphQL schema (default: stdout)
  schema check [--file FILE]               exit 1 when FILE (default schema.graphql) is stale
  publish --tenant T --event E [--data JSON]
                                           publish an event (default data: {"test":true})
  verify --secret S (--body B | --body-file F) [--signature H]
         [--webhook-id I --webhook-timestamp T --webhook-signature V] [--tolerance SECONDS]
                                           check a delivery's signatures as a receiver would;
                                           exit 0 when every given signature is valid

The database comes from DATABASE_URL, or the embedded database in DATA_DIR (stop the server
first: the embedded database serves one process at a time).
`;

async function withDatabase<T>(fn: (db: Database, applied: string[]) => Promise<T>): Promise<T> {
  const config = loadConfig();
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

const OPTIONS = {
  tenant: { type: 'string' },
  name: { type: 'string' },
  id: { type: 'string' },
  out: { type: 'string' },
  file: { type: 'string' },
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

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  const [command, sub] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  switch (`${command} ${sub ?? ''}`.trim()) {
    case 'migrate': {
      const applied = await withDatabase(async (_db, names) => names);
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'migrations up to date\n');
      return 0;
    }
    case 'api-key create': {
      const tenant = required(values, 'tenant');
      const name = required(values, 'name');
      const created = await withDatabase((db) => new ApiKeyService(db.orm.em.fork()).create(tenant, name));
      process.stdout.write(`${created.key}\n`);
      process.stderr.write(`created ${created.apiKey.id} for tenant ${tenant}; the key is shown only this once\n`);
      return 0;
    }
    case 'api-key list': {
      const tenant = required(values, 'tenant');
      const keys = await withDatabase((db) => new ApiKeyService(db.orm.em.fork()).list(tenant));
      for (const k of keys) {
        process.stdout.write(`${k.id}\t${k.prefix}…\t${k.name}\t${k.createdAt.toISOString()}\t${k.lastUsedAt?.toISOString() ?? '-'}\n`);
      }
      return 0;
    }
    case 'api-key revoke': {
      const tenant = required(values, 'tenant');
      const id = required(values, 'id');
      await withDatabase((db) => new ApiKeyService(db.orm.em.fork()).revoke(tenant, id));
      process.stdout.write(`revoked ${id}\n`);
      return 0;
    }
    case 'schema print': {
      const text = printSchemaText();
      if (values.out) await writeFile(values.out, text);
      else process.stdout.write(text);
      return 0;
    }
    case 'schema check': {
      const file = values.file ?? path.resolve('schema.graphql');
      const current = await readFile(file, 'utf8').catch(() => '');
      if (current !== printSchemaText()) {
        process.stderr.write(`${file} is stale: run \`npm run schema:print\`\n`);
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
      const result = await withDatabase(async (db) => {
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
      process.stdout.write(`${JSON.stringify({ id: result.id, event: result.event, deliveries: result.deliveries })}\n`);
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
      for (const [name, ok] of checks) process.stdout.write(`${name}: ${ok ? 'valid' : 'INVALID'}\n`);
      return checks.every(([, ok]) => ok) ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command "${positionals.join(' ')}"`);
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`${err.message}\n\n${HELP}`);
    else if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
