/**
 * One error type for everything the service refuses on purpose. `code` is a
 * closed union and the HTTP status of each code lives in exactly one table, so
 * a client can rely on `code` and the edge never guesses a status.
 */
export const ERROR_STATUS = {
  validation_failed: 400,
  malformed_json: 400,
  unauthorized: 401,
  invalid_signature: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  insufficient_stock: 409,
  invalid_transition: 409,
  idempotency_key_in_flight: 409,
  conflict: 409,
  already_exists: 409,
  piece_unavailable: 409,
  return_exceeds_sale: 409,
  piece_not_returnable: 409,
  return_exceeds_purchase: 409,
  operation_already_used: 409,
  version_conflict: 412,
  precondition_required: 428,
  payload_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  idempotency_key_reused: 422,
  geofence_violation: 422,
  unprocessable: 422,
  limit_exceeded: 422,
  rate_limited: 429,
  internal_error: 500,
  service_unavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface FieldError {
  path: string;
  message: string;
}

/** Members every problem document has (RFC 9457 and ours); extras take other names. */
const PROBLEM_MEMBERS = new Set(['type', 'title', 'status', 'detail', 'instance', 'code', 'correlation_id', 'errors']);

export class AppError extends Error {
  readonly code: ErrorCode;
  /** Extra members of the problem document (e.g. `shortages`, `distance_m`). */
  readonly extra: Record<string, unknown>;
  readonly errors: FieldError[] | undefined;
  /** Sent as `Retry-After` (seconds): when a client may try again (load shed, rate limits). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { extra?: Record<string, unknown>; errors?: FieldError[]; cause?: unknown; retryAfterSeconds?: number } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.extra = options.extra ?? {};
    // The problem document's own members win over extras, so an extra of the
    // same name would vanish from the answer (a settlement's `status` once did).
    const taken = Object.keys(this.extra).filter((name) => PROBLEM_MEMBERS.has(name));
    if (taken.length > 0) throw new Error(`problem extras may not be named ${taken.join(', ')}: the problem document's own members would replace them`);
    this.errors = options.errors;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string): AppError => new AppError('not_found', `${what} was not found`);

export const validationFailed = (path: string, message: string): AppError =>
  new AppError('validation_failed', message, { errors: [{ path, message }] });

/** An invariant the code relies on; breaking it is a bug, never a user error. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
