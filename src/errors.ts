// Expected failures carry a stable machine code; the HTTP status follows from the code alone, so
// GraphQL (extensions.code) and REST ({error, code, details}) always agree.
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  QUERY_TOO_COMPLEX: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  VALIDATION_ERROR: 422,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'AppError';
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && value in ERROR_STATUS;
}

/** Over the tenant's request limit; carries the wait the client is told (Retry-After). */
export class RateLimitedError extends AppError {
  constructor(
    readonly retryAfterSec: number,
    readonly headers: Record<string, string>,
    message = `rate limit exceeded; retry in ${retryAfterSec} s`,
  ) {
    super('RATE_LIMITED', message);
    this.name = 'RateLimitedError';
  }
}
