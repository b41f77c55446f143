/** PostgreSQL SQLSTATE codes the code reacts to, named in one place. */
export const PG = {
  UNIQUE_VIOLATION: '23505',
  DUPLICATE_OBJECT: '42710',
  FOREIGN_KEY_VIOLATION: '23503',
  CHECK_VIOLATION: '23514',
  NOT_NULL_VIOLATION: '23502',
  EXCLUSION_VIOLATION: '23P01',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  LOCK_NOT_AVAILABLE: '55P03',
  QUERY_CANCELED: '57014',
  INSUFFICIENT_PRIVILEGE: '42501',
  RAISE_EXCEPTION: 'P0001',
  INVALID_TEXT_REPRESENTATION: '22P02',
  NUMERIC_VALUE_OUT_OF_RANGE: '22003',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  TOO_MANY_CONNECTIONS: '53300',
  DISK_FULL: '53100',
  OUT_OF_MEMORY: '53200',
} as const;

export function pgCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && code.length === 5) return code;
  }
  return undefined;
}

export function pgConstraint(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'constraint' in error) {
    const constraint = (error as { constraint: unknown }).constraint;
    if (typeof constraint === 'string') return constraint;
  }
  return undefined;
}

/**
 * The data exceptions (SQLSTATE class 22) that a request's own values cause:
 * text that is not a value of its type (a malformed uuid in a cursor), a
 * number or a date out of range (year 0, an offset beyond ±15:59), a NUL or
 * untranslatable character, a string too long. Every statement of a command
 * runs in its transaction, so the error rolled everything back. Other class-22
 * errors (division by zero, a bad argument to a function…) are bugs: 500.
 */
const REQUEST_DATA_EXCEPTIONS: ReadonlySet<string> = new Set(['22001', '22003', '22007', '22008', '22009', '22021', '22P02', '22P05']);

export function isDataException(error: unknown): boolean {
  const code = pgCode(error);
  return code !== undefined && REQUEST_DATA_EXCEPTIONS.has(code);
}

/** CHECK constraints that bound stored amounts (migration 0804): exceeding one is the request's fault. */
export const LIMIT_CONSTRAINTS: Record<string, string> = {
  stock_balances_quantity_limit: 'the stock of a SKU in a store would exceed 1,000,000,000,000,000 base units',
  accounts_totals_limit: "an account's debit or credit total would exceed 9,000,000,000,000,000 minor units",
};

/** Failures where running the whole transaction again is the right answer. */
export function isRetryableTransactionError(error: unknown): boolean {
  const code = pgCode(error);
  return code === PG.SERIALIZATION_FAILURE || code === PG.DEADLOCK_DETECTED;
}

/**
 * PostgreSQL gave up on a statement: it waited past lock_timeout for a row
 * another transaction held (lock_not_available), or ran past
 * statement_timeout (query_canceled). The transaction is rolled back, so
 * nothing of the request was written, and sending it again may succeed once
 * the holder is gone (src/core/db.ts sets both timeouts on every session).
 */
export function isDatabaseTimeout(error: unknown): boolean {
  const code = pgCode(error);
  return code === PG.LOCK_NOT_AVAILABLE || code === PG.QUERY_CANCELED;
}

/**
 * A lock that was not waited for: a row another transaction held, found so
 * by a lock taken without waiting (group commit's SKIP LOCKED:
 * RowHeldElsewhere, src/sales/saleRows.ts) and refused at once. SQLSTATE
 * lock_not_available, as a lock wait that timed out, and answered the same
 * way (503 with Retry-After, nothing written) — but nothing waited its limit:
 * it is what a long stock count or receipt holding a balance means for the
 * sales of that SKU meanwhile, an expected refusal, counted and logged
 * briefly, never reported as an error (logAnsweredError, src/http/problem.ts).
 */
export class LockNotWaitedFor extends Error {
  readonly code = PG.LOCK_NOT_AVAILABLE;
}

/**
 * What a database wait answered 503 was, for the log and the metrics:
 * `row_held` (LockNotWaitedFor), `lock_timeout` (a lock waited for past
 * lock_timeout), `statement_timeout` (a statement cancelled: past
 * statement_timeout, or cancelled by an operator); undefined for any other
 * error. `relation`: the table whose row a lock wait was for, when
 * PostgreSQL names it in the error's context (`while locking tuple (0,3) in
 * relation "stock_balances"`; a wait for a table lock names none).
 */
export function databaseWaitOf(error: unknown): { kind: 'row_held' | 'lock_timeout' | 'statement_timeout'; relation?: string } | undefined {
  if (error instanceof LockNotWaitedFor) return { kind: 'row_held' };
  const code = pgCode(error);
  if (code === PG.QUERY_CANCELED) return { kind: 'statement_timeout' };
  if (code !== PG.LOCK_NOT_AVAILABLE) return undefined;
  const where = (error as { where?: unknown }).where;
  const relation = typeof where === 'string' ? /\bin relation "((?:[^"]|"")+)"/.exec(where)?.[1]?.replace(/""/g, '"') : undefined;
  return relation === undefined ? { kind: 'lock_timeout' } : { kind: 'lock_timeout', relation };
}

/**
 * A statement whose answer did not come within the connection's answer
 * timeout (createPool's `answerTimeoutMs`, src/core/db.ts): the network to
 * PostgreSQL stopped passing data, or the server froze. The connection was
 * closed, and the statement and any queued behind it fail with this error.
 * PostgreSQL rolls back what that session had not committed once it sees the
 * connection gone (at once if the close reaches it; across a partition at
 * the latest when statement_timeout and idle_in_transaction_session_timeout
 * end it). A COMMIT that fails so may or may not have happened: a retry with
 * the same Idempotency-Key replays it if it did.
 */
export class DatabaseSilent extends Error {
  constructor(readonly waitedMs: number) {
    super(`the database did not answer a statement within ${waitedMs} ms; its connection was closed`);
    this.name = 'DatabaseSilent';
  }
}

/** Socket errors of a database connection that could not be made or was cut. */
const CONNECTION_ERRNOS: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** What node-postgres and pg-pool say, without a code, when a connection ended, timed out or is unusable. */
const CONNECTION_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)/;

/**
 * The database could not be reached, or the connection was lost: PostgreSQL
 * down, restarting, failing over or out of connections. Nothing the request
 * did is at fault, and a retry (with the same Idempotency-Key: an ambiguous
 * commit replays) may succeed once it is back. Looks through `cause`.
 */
export function isConnectionFailure(error: unknown): boolean {
  for (let current = error, depth = 0; typeof current === 'object' && current !== null && depth < 5; current = (current as { cause?: unknown }).cause, depth++) {
    if (current instanceof DatabaseSilent) return true;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (CONNECTION_ERRNOS.has(code)) return true;
      if (code.startsWith('08') && code.length === 5) return true; // connection_exception class
      if (code === PG.ADMIN_SHUTDOWN || code === PG.CRASH_SHUTDOWN || code === PG.CANNOT_CONNECT_NOW || code === PG.TOO_MANY_CONNECTIONS) return true;
    }
    const message = (current as { message?: unknown }).message;
    if (typeof message === 'string' && CONNECTION_MESSAGES.test(message)) return true;
  }
  return false;
}

