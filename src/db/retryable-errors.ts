// Which database errors a retry can fix. Only these are retried (by the recorder, with p-retry);
// anything else fails at once, since running the same statement again gives the same answer, or,
// when the statement may have run (a connection lost while it was on its way, a statement that
// outlasted its time limit), could do its work twice.
import pg from 'pg';

/** SQLSTATEs after which the statement did not run, or ran and was rolled back. */
const RETRYABLE_STATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '53300', // too_many_connections: refused at connect time
  '57P01', // admin_shutdown: the server ended the session (a restart); its transaction rolled back
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: the server is starting up
  '08001', // sqlclient_unable_to_establish_sqlconnection
  '08004', // sqlserver_rejected_establishment_of_sqlconnection
]);

/** Socket errors that only happen while connecting, before any statement was sent. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** pg's and its pools' messages for a connection that never carried the statement. */
const NOT_SENT = [
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
  /^timeout expired$/, // pg: connecting took longer than connectionTimeoutMillis
  /^Connection terminated due to connection timeout$/,
  /^timeout exceeded when trying to connect$/, // pg-pool: no connection within connectionTimeoutMillis
  /^Knex: Timeout acquiring a connection/, // MikroORM's pool: no connection within its acquire limit
];

export function isRetryableDatabaseError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof pg.DatabaseError) return err.code !== undefined && RETRYABLE_STATES.has(err.code);
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && CONNECT_CODES.has(code)) return true;
  return NOT_SENT.some((pattern) => pattern.test(err.message));
}

/**
 * A connection lost while a statement was on its way: it may or may not have run. Retrying is only
 * for statements that cannot do their work twice (a record keyed by its attempt id, say).
 */
export function isConnectionLostError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || /^Connection terminated/.test(err.message);
}
