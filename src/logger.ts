import { pino, type Logger } from 'pino';

// Secrets must never reach a log line, even through an error object or a header dump.
const REDACT = [
  'secret',
  '*.secret',
  'key',
  '*.key',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.headers["x-infraaudit-signature"]',
  '*.headers["webhook-signature"]',
];

// Database errors carry the statement and its values (MikroORM puts the SQL, with parameters
// inlined, into the message; pg adds `detail` with the conflicting values), which may hold
// tenants' data. Logged errors keep the database's own message and SQLSTATE, never those.
const STATEMENT_FIELDS = ['sql', 'query', 'params', 'parameters', 'values', 'detail', 'where', 'internalQuery', 'bindings'];

type SerializedError = Record<string, unknown> & { message?: string; stack?: string };

function withoutStatements(serialized: SerializedError, original: unknown, depth = 0): SerializedError {
  for (const field of STATEMENT_FIELDS) delete serialized[field];
  const source = original as { sqlMessage?: unknown; sqlState?: unknown; code?: unknown } | null;
  // MikroORM's exceptions keep the driver's SQLSTATE in `code` (five characters, e.g. 42P01).
  const fromDatabase =
    typeof source?.sqlState === 'string' ||
    typeof source?.sqlMessage === 'string' ||
    (typeof source?.code === 'string' && /^[0-9A-Z]{5}$/.test(source.code) && / - /.test(serialized.message ?? ''));
  if (fromDatabase && typeof serialized.message === 'string') {
    const ownMessage = typeof source?.sqlMessage === 'string' ? source.sqlMessage : serialized.message.split(' - ').pop()!;
    serialized.stack = serialized.stack?.replace(serialized.message, ownMessage);
    serialized.message = ownMessage;
  }
  const cause = serialized['cause'];
  if (cause && typeof cause === 'object' && depth < 5) {
    serialized['cause'] = withoutStatements(cause as SerializedError, (original as { cause?: unknown } | null)?.cause, depth + 1);
  }
  return serialized;
}

function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  // A GraphQL error wraps what a resolver threw: the wrapped error is the one to log.
  const original = (err as { originalError?: unknown }).originalError;
  const logged = original instanceof Error ? original : err;
  return withoutStatements(pino.stdSerializers.err(logged), logged);
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
    },
    destination as pino.DestinationStream | undefined,
  );
}
