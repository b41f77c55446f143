import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_STATUS, type ErrorCode, type FieldError } from '../core/errors.js';
import { databaseWaitOf, isConnectionFailure, isDatabaseTimeout, isDataException, isRetryableTransactionError, LIMIT_CONSTRAINTS, PG, pgCode, pgConstraint } from '../core/pgErrors.js';
import { databaseWaitRefusals } from '../core/metrics.js';
import { briefly } from '../core/logger.js';
import { PATTERN_MESSAGE } from './schemas.js';

/**
 * Every error leaves as application/problem+json (RFC 9457) with a stable
 * `code`. Nothing about the server's internals (stack, SQL) is ever included.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  correlation_id: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}

const TITLES: Partial<Record<ErrorCode, string>> = {
  validation_failed: 'The request is not valid',
  malformed_json: 'The request body is not valid JSON',
  unauthorized: 'Authentication required',
  forbidden: 'Not allowed',
  not_found: 'Not found',
  insufficient_stock: 'Not enough stock',
  internal_error: 'Internal server error',
};

function titleOf(code: ErrorCode): string {
  return TITLES[code] ?? code.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

export function problemOf(error: AppError, correlationId: string): Problem {
  return {
    ...error.extra,
    type: `https://storekeep.dev/problems/${error.code.replace(/_/g, '-')}`,
    title: titleOf(error.code),
    status: error.status,
    detail: error.message,
    code: error.code,
    correlation_id: correlationId,
    ...(error.errors ? { errors: error.errors } : {}),
  };
}

interface AjvError {
  instancePath?: string;
  schemaPath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
  /** The failing keyword's own schema and the schema holding it (the body and text validators are `verbose`). */
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
}

const listOf = (values: unknown[]): string => values.map((value) => JSON.stringify(value)).join(', ');

/** The one value a branch of an `anyOf` allows, when the branch is a single value (`const`, or `null` by type). */
function singleValueOf(branch: AjvError): { value: unknown } | undefined {
  if (branch.keyword === 'const' && branch.params && 'allowedValue' in branch.params) return { value: branch.params.allowedValue };
  if (branch.keyword === 'type' && branch.params?.type === 'null') return { value: null };
  return undefined;
}

function validationErrors(error: FastifyError): FieldError[] {
  const context = (error as FastifyError & { validationContext?: string }).validationContext ?? 'body';
  const items = (error.validation ?? []) as AjvError[];
  // A closed list of values (a union of literals: payment methods, roles,
  // units…) fails as one "must be equal to constant" per value plus "must
  // match a schema in anyOf": folded here into one error naming the values.
  const folded = new Set<AjvError>();
  const allowedBy = new Map<AjvError, unknown[]>();
  for (const anyOf of items) {
    if (anyOf.keyword !== 'anyOf' || anyOf.schemaPath === undefined) continue;
    // A value that may also be null (an optional body: `{ … } | null`; a
    // setting removed with null) and is of the other branch's type is judged
    // by that branch alone: its own errors, at their fields — not one more
    // at the value itself saying it "must be one of null" (it was: a bad
    // `reason` on an order's cancel was refused at /body/reason and at /body).
    const inside = items.filter((item) => item !== anyOf && item.schemaPath?.startsWith(`${anyOf.schemaPath}/`));
    const nullBranch = inside.find((item) => item.instancePath === anyOf.instancePath && item.keyword === 'type' && item.params?.type === 'null');
    const others = inside.filter((item) => item !== nullBranch);
    const otherTypeOrValue = others.some((item) => item.instancePath === anyOf.instancePath && ['type', 'const', 'enum'].includes(item.keyword ?? ''));
    if (nullBranch && others.length > 0 && !otherTypeOrValue) {
      folded.add(nullBranch);
      folded.add(anyOf);
      continue;
    }
    const branches = items.filter((item) => item !== anyOf && item.instancePath === anyOf.instancePath && item.schemaPath?.startsWith(`${anyOf.schemaPath}/`));
    const values = branches.map(singleValueOf);
    if (branches.length === 0 || values.some((value) => value === undefined)) continue;
    for (const branch of branches) folded.add(branch);
    allowedBy.set(anyOf, values.map((value) => value!.value));
  }
  return items
    .filter((item) => !folded.has(item))
    .map((item) => {
      let path = `/${context}${item.instancePath ?? ''}`;
      let message = item.message ?? 'is not valid';
      const allowed = allowedBy.get(item);
      if (allowed) {
        message = `must be one of ${listOf(allowed)}`;
      } else if (item.keyword === 'enum' && Array.isArray(item.params?.allowedValues)) {
        message = `must be one of ${listOf(item.params.allowedValues)}`;
      } else if (item.keyword === 'not' && typeof item.schema === 'object' && item.schema !== null && 'const' in item.schema) {
        message = `must not be ${JSON.stringify((item.schema as { const: unknown }).const)}`;
      } else if (item.keyword === 'pattern' && typeof item.parentSchema?.[PATTERN_MESSAGE] === 'string') {
        message = item.parentSchema[PATTERN_MESSAGE] as string;
      } else if (item.keyword === 'additionalProperties' && typeof item.params?.additionalProperty === 'string') {
        path += `/${item.params.additionalProperty}`;
        message = 'is not a known field';
      } else if (item.keyword === 'required' && typeof item.params?.missingProperty === 'string') {
        path += `/${item.params.missingProperty}`;
        message = 'is required';
      }
      return { path, message };
    });
}

/** Retry-After of a request refused because the database could not be reached. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;
/** Retry-After of a database out of disk space or memory: freeing either takes someone a while. */
const RESOURCES_RETRY_AFTER_SECONDS = 30;

/** Turns anything thrown into an AppError (unknown errors become internal_error). */
export function toAppError(error: unknown): { appError: AppError; unexpected: boolean } {
  if (error instanceof AppError) return { appError: error, unexpected: false };
  const fastifyError = error as FastifyError;
  if (fastifyError?.validation) {
    const errors = validationErrors(fastifyError);
    return {
      appError: new AppError('validation_failed', errors.map((e) => `${e.path} ${e.message}`).join('; '), { errors }),
      unexpected: false,
    };
  }
  switch (fastifyError?.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { appError: new AppError('malformed_json', fastifyError.message), unexpected: false };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { appError: new AppError('payload_too_large', 'the request body is larger than the server accepts'), unexpected: false };
    case 'FST_ERR_BAD_URL':
      return {
        appError: new AppError('validation_failed', 'the path is not valid percent-encoding', { errors: [{ path: '/url', message: 'is not valid percent-encoding' }] }),
        unexpected: false,
      };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return {
        appError: new AppError('validation_failed', 'a path segment is longer than any identifier', { errors: [{ path: '/params', message: 'is too long' }] }),
        unexpected: false,
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { appError: new AppError('unsupported_media_type', 'send the body as application/json'), unexpected: false };
  }
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return { appError: new AppError('malformed_json', 'the request body is not valid JSON'), unexpected: false };
  }
  // A value the request carried that PostgreSQL refused as data (the command
  // rolled back): the request's fault, not the server's.
  if (isDataException(error)) {
    return {
      appError: new AppError('validation_failed', `a value in the request cannot be stored: ${(error as Error).message}`, {
        errors: [{ path: '/', message: (error as Error).message }],
      }),
      unexpected: false,
    };
  }
  const limit = pgCode(error) === PG.CHECK_VIOLATION ? LIMIT_CONSTRAINTS[pgConstraint(error) ?? ''] : undefined;
  if (limit !== undefined) return { appError: new AppError('limit_exceeded', limit), unexpected: false };
  // PostgreSQL unreachable or the connection lost: the service is, for the
  // moment, unavailable — not broken (the pool reconnects when it is back).
  if (isConnectionFailure(error)) {
    return {
      appError: new AppError('service_unavailable', 'the database is unavailable at the moment; retry shortly with the same Idempotency-Key', {
        cause: error,
        retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
      }),
      unexpected: false,
    };
  }
  // The database out of disk space (53100) or memory (53200): the statement
  // failed and its transaction rolled back, so nothing was written, and the
  // same request may succeed once space is freed — 503 with Retry-After, as
  // for a database that cannot be reached, not a 500 that says "bug" to a
  // till. Still unexpected: logged at error and reported, for the operator
  // must act. The answer names no file of the database.
  const resources = pgCode(error);
  if (resources === PG.DISK_FULL || resources === PG.OUT_OF_MEMORY) {
    return {
      appError: new AppError(
        'service_unavailable',
        `the database is out of ${resources === PG.DISK_FULL ? 'disk space' : 'memory'}; nothing was written — retry later with the same Idempotency-Key`,
        { cause: error, retryAfterSeconds: RESOURCES_RETRY_AFTER_SECONDS },
      ),
      unexpected: true,
    };
  }
  // A deadlock or serialization failure still there after the command's
  // retries (transactions are retried, bounded, before this): contention of
  // the moment, nothing written — the same request can simply be sent again.
  if (isRetryableTransactionError(error)) {
    return {
      appError: new AppError('service_unavailable', 'the database was too busy with conflicting changes to finish this request; nothing was written — retry shortly with the same Idempotency-Key', {
        cause: error,
        retryAfterSeconds: 1,
      }),
      unexpected: false,
    };
  }
  // PostgreSQL gave up waiting (lock_timeout, 15 s, for a row another
  // transaction held; statement_timeout, 30 s): rolled back, nothing written —
  // the request may be sent again, like one the database could not take.
  if (isDatabaseTimeout(error)) {
    return {
      appError: new AppError('service_unavailable', 'the database gave up waiting for a record another transaction held (or for this request to finish); nothing was written — retry shortly with the same Idempotency-Key', {
        cause: error,
        retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
      }),
      unexpected: false,
    };
  }
  const status = fastifyError?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = (Object.entries(ERROR_STATUS).find(([, s]) => s === status)?.[0] ?? 'validation_failed') as ErrorCode;
    return { appError: new AppError(code, fastifyError.message), unexpected: false };
  }
  return { appError: new AppError('internal_error', 'an unexpected error occurred; it has been logged'), unexpected: true };
}

/** How long after a database timeout is reported another of its kind and relation is not (per reporting function: one per process). */
export const TIMEOUT_REPORT_WINDOW_MS = 60_000;

/** The clock of the report windows (tests move it). */
export const timeoutReportClock = { now: (): number => Date.now() };

/** The windows of a process that reports nothing (no SENTRY_DSN): they still decide which timeouts are logged with their stack. */
const NO_REPORTER = (): void => undefined;

/** Per reporting function, per kind and relation: when one was last reported, and how many since were not. */
const timeoutReports = new WeakMap<(error: unknown) => void, Map<string, { reportedAt: number; unreported: number }>>();

/**
 * Whether a database timeout of this kind and relation is to be reported now
 * — the first, or the first once TIMEOUT_REPORT_WINDOW_MS has passed since
 * the last report — and how many went unreported before it (or, when not
 * reported, in the window so far, this one included).
 */
function admitReport(reportError: (error: unknown) => void, key: string): { report: boolean; unreported: number } {
  let windows = timeoutReports.get(reportError);
  if (!windows) timeoutReports.set(reportError, (windows = new Map()));
  const now = timeoutReportClock.now();
  const window = windows.get(key);
  if (window === undefined || now - window.reportedAt >= TIMEOUT_REPORT_WINDOW_MS) {
    windows.set(key, { reportedAt: now, unreported: 0 });
    return { report: true, unreported: window?.unreported ?? 0 };
  }
  window.unreported++;
  return { report: false, unreported: window.unreported };
}

/**
 * Logs, and reports where someone must act, an error answered as a problem
 * (toAppError), by what it is: unexpected (error, reported); a value the
 * database refused (warn, reported: a schema gap to close); the database
 * unreachable (warn, brief); a conflict left after the retries (warn); a row
 * held by another transaction, refused at once without waiting
 * (LockNotWaitedFor: info, brief, counted, never reported — a long stock
 * count or receipt holding a balance refuses every sale of that SKU
 * meanwhile, and each was a Sentry event); a lock or statement timeout
 * (warn, counted, and reported — something waited its full limit — but once
 * per kind and relation per TIMEOUT_REPORT_WINDOW_MS and reporting function,
 * so an incident is one alert: the others are logged briefly, `reported:
 * false`, and the next report's line says how many were not). The request
 * error handler and the sync route — whose synced sales' errors are answered
 * inside a 200, never reaching that handler — both log through it; `fields`
 * names what failed (a synced sale's key).
 */
export function logAnsweredError(
  log: FastifyBaseLogger,
  error: unknown,
  unexpected: boolean,
  reportError: ((error: unknown) => void) | undefined,
  fields: Record<string, unknown> = {},
): void {
  const wait = unexpected ? undefined : databaseWaitOf(error);
  if (unexpected) {
    log.error({ err: error, ...fields }, 'unexpected error');
    reportError?.(error);
  } else if (isDataException(error)) {
    log.warn({ err: error, ...fields }, 'a request value was refused by the database');
    reportError?.(error);
  } else if (isConnectionFailure(error)) {
    // The database is down or restarting (readyz says so too): no stack trace each time.
    log.warn({ error: briefly(error), ...fields }, 'the database is unavailable');
  } else if (isRetryableTransactionError(error)) {
    log.warn({ err: error, ...fields }, 'a transaction still conflicted after its retries');
  } else if (wait?.kind === 'row_held') {
    databaseWaitRefusals.inc({ kind: wait.kind });
    log.info({ error: briefly(error), kind: wait.kind, ...fields }, 'a row the request needs is held by another transaction: refused at once');
  } else if (wait !== undefined && isDatabaseTimeout(error)) {
    databaseWaitRefusals.inc({ kind: wait.kind });
    const about = { kind: wait.kind, ...(wait.relation === undefined ? {} : { relation: wait.relation }) };
    // Without a reporter (no SENTRY_DSN) the log is the record: the first of a window with its stack, the others brief.
    const admitted = admitReport(reportError ?? NO_REPORTER, `${wait.kind}/${wait.relation ?? ''}`);
    if (admitted.report) {
      log.warn({ err: error, ...about, reported: reportError !== undefined, unreported_before: admitted.unreported, ...fields }, 'the database gave up waiting for this request');
      reportError?.(error);
    } else {
      log.warn({ error: briefly(error), ...about, reported: false, unreported_in_window: admitted.unreported, ...fields }, 'the database gave up waiting for this request');
    }
  }
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: AppError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  // A 401 names the scheme that would be accepted (RFC 9110 §11.6.1).
  if (error.code === 'unauthorized') reply.header('www-authenticate', 'Bearer realm="storekeep"');
  return reply
    .status(error.status)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .send(JSON.stringify(problemOf(error, request.id)));
}

/** The problem a request Node could not parse gets, by Node's error code. */
function clientProblem(code: string): AppError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new AppError('headers_too_large', 'the request headers are larger than the server accepts');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new AppError('payload_too_large', 'the chunk extensions of the request body are larger than the server accepts');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new AppError('request_timeout', 'the request did not arrive in time');
    default:
      return new AppError('validation_failed', 'the request is not valid HTTP/1.1');
  }
}

/**
 * Node's `clientError`: a request it could not parse (bad request line or
 * header, headers too large, too slow) never becomes a Fastify request, so the
 * problem is written to the socket here — same document, same headers — and
 * the connection closed, as Node and Fastify do by default.
 */
export function answerClientError(error: ConnectionError, socket: Socket): void {
  // A reset connection has no one left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // Never write into a response already under way on this connection.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) writeProblem(socket, clientProblem(error.code), randomUUID());
  socket.destroy(error);
}

/**
 * Writes a problem straight to a socket no Fastify request owns (a request
 * Node could not parse, a CONNECT) — the same document and headers as any
 * other refusal, `extraHeaders` too (an `Allow`), announcing `Connection:
 * close`: the caller closes the connection.
 */
export function writeProblem(socket: Socket, appError: AppError, correlationId: string, extraHeaders: Record<string, string> = {}): void {
  const body = JSON.stringify(problemOf(appError, correlationId));
  socket.write(
    `HTTP/1.1 ${appError.status} ${STATUS_CODES[appError.status]}\r\n` +
      'Content-Type: application/problem+json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Correlation-ID: ${correlationId}\r\n` +
      Object.entries(extraHeaders).map(([name, value]) => `${name}: ${value}\r\n`).join('') +
      'Connection: close\r\n\r\n' +
      body,
  );
}
