import pg from 'pg';
import { Kysely, PostgresDialect, sql, type RawBuilder, type Transaction } from 'kysely';
import { AppError, assert } from './errors.js';
import { DatabaseSilent, isDataException } from './pgErrors.js';

// int8 (bigint) arrives as a JS number: money and quantities are integers far
// below 2^53. A value beyond that is a corrupted row, never something to round.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => {
  const parsed = Number(value);
  assert(Number.isSafeInteger(parsed), `int8 value ${value} is outside the safe integer range`);
  return parsed;
});
// `date` stays a 'YYYY-MM-DD' string: turning it into a Date would shift it by
// the process's time zone.
pg.types.setTypeParser(pg.types.builtins.DATE, (value: string) => value);

/**
 * Row types of each module's tables are added to this interface by the module
 * itself (`declare module '../core/db.js' { interface Database { … } }`), so the
 * query builder knows every table without one central file that all modules edit.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface Database {}

export type Db = Kysely<Database>;
/** A function that takes a `Tx` can only run inside a transaction. */
export type Tx = Transaction<Database>;
export type Executor = Db | Tx;

/** The role every request runs as: no superuser, no BYPASSRLS, not a table owner. */
export const APP_ROLE = 'storekeep_app';

/**
 * Parameterised statements are sent as named prepared statements, so each
 * connection parses and plans a statement once instead of on every call.
 *
 * Why: a sale is ~8 statements, several of them multi-CTE inserts; with
 * node-pg's unnamed statements PostgreSQL parses and plans every one of them
 * every time. Measured on the sale path (scratch profile, 400 sequential sales
 * through the group committer on PostgreSQL 15): 4.7 ms → 3.4 ms per sale.
 *
 * Names come from one process-wide table (same SQL text → same name on every
 * connection). Only statements with parameters are named — a parameterless
 * text may hold several statements, which the extended protocol refuses — and
 * the table is capped, so SQL built with varying text cannot grow every
 * connection's prepared statements without bound.
 */
const statementNames = new Map<string, string>();
const MAX_NAMED_STATEMENTS = 2000;

function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `sk_${statementNames.size}`;
    statementNames.set(text, name);
  }
  return name;
}

/** Server-side limits of every session of createPool (ms): a statement that runs or waits for a lock longer is cancelled by PostgreSQL. */
export const STATEMENT_TIMEOUT_MS = 30_000;
export const LOCK_TIMEOUT_MS = 15_000;
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

/**
 * How long a connection of createPool waits for the answer to a statement
 * before it gives up on the connection (ms): statement_timeout, past which
 * PostgreSQL itself cancels the statement and answers, plus a margin for the
 * cancellation and the answer to arrive. No statement on these pools sets a
 * longer statement_timeout, so only a connection that went silent — the
 * network stopped passing data (a partition, a NAT or firewall that forgot
 * the flow), or the database host froze — waits this long.
 *
 * Why: statement_timeout cannot help when the server's answer never
 * arrives, and TCP gives up on a connection with unacknowledged data only
 * after ~15 minutes (tcp_retries2) — a request, or a tenant's whole
 * group-commit lane, waited that long. node-postgres' own query_timeout is
 * not enough: it rejects the statement but leaves the connection busy with
 * it (still queryable), so the pool hands it out again and the next holder's
 * statements queue behind the silent one (tried: src/core/db.int.spec.ts).
 */
export const DATABASE_ANSWER_TIMEOUT_MS = STATEMENT_TIMEOUT_MS + 15_000;

/**
 * TCP keepalive of the pools' connections: an idle connection (nothing
 * written and unanswered) is probed after this long without traffic, and
 * closed when 10 probes a second apart (what Node sets) go unanswered —
 * a silent network found on a connection held idle (graphile-worker's
 * LISTEN connection; pg-pool closes one idle in the pool after 10 s anyway)
 * instead of never; and a NAT or firewall sees the flow in use. It does not
 * cover a connection waiting for an answer (data
 * written and unacknowledged: TCP retransmits instead of probing, and Node
 * does not expose TCP_USER_TIMEOUT), nor a database process that froze on
 * a host whose kernel still acknowledges: the answer timeout covers both.
 */
export const DATABASE_KEEPALIVE_IDLE_MS = 10_000;

type QueryCallback = (...result: unknown[]) => void;

/**
 * The pools' connection: statements with parameters are named prepared
 * statements (when `prepareStatements`), and a statement not answered within
 * `answerTimeoutMs` fails with DatabaseSilent and closes the connection: the
 * statements queued behind it fail the same way at once, the client is no
 * longer queryable, and pg-pool drops it when it is released instead of
 * handing it out again.
 */
function storekeepClient(prepareStatements: boolean, answerTimeoutMs: number): typeof pg.Client {
  return class StorekeepClient extends pg.Client {
    /** Set once the connection was given up on: every later statement fails with it (not pg's generic "not queryable"). */
    private silence: DatabaseSilent | undefined;

    // pg's overloads are many: (text | config, values?, callback?), or a Submittable.
    override query(...args: unknown[]): never {
      const [text, values] = args;
      if (prepareStatements && typeof text === 'string' && Array.isArray(values) && values.length > 0) {
        const name = statementName(text);
        if (name !== undefined) args = [{ text, values, name }, ...args.slice(2)];
      }
      const send = () => (super.query as (...rest: unknown[]) => never)(...args);
      const config = args[0];
      // A Submittable (a cursor, a stream) reads on its holder's schedule: not timed.
      const submittable = typeof config === 'object' && config !== null && typeof (config as { submit?: unknown }).submit === 'function';
      if (answerTimeoutMs <= 0 || submittable) return send();
      const callbackAt = args.findIndex((arg) => typeof arg === 'function');
      if (this.silence) {
        const silence = this.silence;
        if (callbackAt < 0) return Promise.reject(silence) as never;
        process.nextTick(args[callbackAt] as QueryCallback, silence);
        return undefined as never;
      }
      const timer = setTimeout(() => this.giveUp(), answerTimeoutMs);
      const answered = () => clearTimeout(timer);
      if (callbackAt >= 0) {
        const callback = args[callbackAt] as QueryCallback;
        args[callbackAt] = (...result: unknown[]) => {
          answered();
          callback(...result);
        };
      }
      let result: unknown;
      try {
        result = send();
      } catch (error) {
        answered();
        throw error;
      }
      if (typeof (result as Promise<unknown> | undefined)?.then === 'function') (result as Promise<unknown>).then(answered, answered);
      else if (callbackAt < 0) answered(); // answered through a callback in its config: not timed
      return result as never;
    }

    private giveUp(): void {
      this.silence ??= new DatabaseSilent(answerTimeoutMs);
      // Destroying the socket with the error fails the running statement and
      // those queued behind it with it, and marks the client not queryable.
      (this as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream.destroy(this.silence);
    }
  };
}

export interface PoolOptions {
  max: number;
  /** Use named prepared statements (plans cached per connection). Default true. */
  prepareStatements?: boolean;
  /** Run every session as APP_ROLE so row-level security applies to it. */
  asAppRole: boolean;
  applicationName?: string;
  onError?: (error: Error) => void;
  /**
   * Give up on a connection whose statement is not answered within this many
   * ms (DatabaseSilent). Default DATABASE_ANSWER_TIMEOUT_MS; tests set a
   * short one. Never below what a statement may legitimately take.
   */
  answerTimeoutMs?: number;
  /**
   * lock_timeout of every session (ms). Default LOCK_TIMEOUT_MS; tests whose
   * point is what a wait past it does (not its length) set a short one.
   */
  lockTimeoutMs?: number;
}

export function createPool(connectionString: string, options: PoolOptions): pg.Pool {
  const settings = [
    // A statement or idle transaction that hangs must not hold stock rows locked forever.
    `-c statement_timeout=${STATEMENT_TIMEOUT_MS}`,
    `-c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_TIMEOUT_MS}`,
    `-c lock_timeout=${options.lockTimeoutMs ?? LOCK_TIMEOUT_MS}`,
    // Every statement here is short; JIT compilation costs tens of milliseconds
    // and kicks in on cost estimates alone — measured: a group-commit batch's
    // set-based statements went from ~4 ms to ~270 ms with it (bench/sales.ts).
    '-c jit=off',
    ...(options.asAppRole ? [`-c role=${APP_ROLE}`] : []),
  ];
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    options: settings.join(' '),
    application_name: options.applicationName ?? 'storekeep',
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: DATABASE_KEEPALIVE_IDLE_MS,
    Client: storekeepClient(options.prepareStatements !== false, options.answerTimeoutMs ?? DATABASE_ANSWER_TIMEOUT_MS),
  });
  // Without a listener an idle client's network error would crash the process.
  pool.on('error', (error) => options.onError?.(error));
  // pg-pool listens for errors only while a client is idle; a checked-out
  // client whose connection dies (PostgreSQL restarting, a failover, a
  // terminated backend, an answer that never came) emits 'error' with no
  // listener, which crashed the whole process. The query running on it (or
  // its holder's next one) fails on its own and the pool drops the client
  // on release, so this only keeps the event from being unhandled.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

export function createDb(pool: pg.Pool): Db {
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

export async function all<T>(db: Executor, query: RawBuilder<T>): Promise<T[]> {
  return (await query.execute(db)).rows;
}

export async function maybeOne<T>(db: Executor, query: RawBuilder<T>): Promise<T | undefined> {
  const rows = (await query.execute(db)).rows;
  assert(rows.length <= 1, `expected at most one row, got ${rows.length}`);
  return rows[0];
}

export async function one<T>(db: Executor, query: RawBuilder<T>): Promise<T> {
  const rows = (await query.execute(db)).rows;
  assert(rows.length === 1, `expected exactly one row, got ${rows.length}`);
  return rows[0] as T;
}

/**
 * A timestamptz (an SQL expression) as UTC text to the microsecond
 * (`2026-11-23T10:00:00.123456Z`): what a JS Date would cut to milliseconds,
 * for cursors and values that must name a row's exact moment.
 */
export function utcMicros(moment: RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${moment} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/**
 * utcMicros, or NULL for a moment outside the years 0001–9999 in UTC (which
 * to_char would print without its era, or with a fifth year digit): how a
 * moment a client sent is read before it is accepted.
 */
export function utcMicrosWithinYears(moment: RawBuilder<unknown>): RawBuilder<string | null> {
  return sql<string | null>`CASE WHEN ${moment} >= '0001-01-01 00:00:00+00' AND ${moment} < '10000-01-01 00:00:00+00' THEN ${utcMicros(moment)} END`;
}

/**
 * A moment a client sent (`as_of`, a till's `client_created_at`), as
 * PostgreSQL reads it (`::timestamptz`: any offset form, a leap second as the
 * next minute, microseconds kept), in UTC with microseconds
 * (`…T10:00:00.123456Z`). A value PostgreSQL cannot read (year 0,
 * `23:59:60.5`, an offset beyond ±15:59…) or one outside the years 0001–9999
 * in UTC (`0001-01-01T00:00:00+01:00` is 1 BC) is a 400 at `field.path`.
 */
export async function readClientMoment(tx: Executor, text: string, field: { name: string; path: string }): Promise<string> {
  let row: { at: string | null };
  try {
    row = await one(tx, sql<{ at: string | null }>`SELECT ${utcMicrosWithinYears(sql.ref('t'))} AS at FROM (SELECT ${text}::timestamptz AS t) AS parsed`);
  } catch (error) {
    if (!isDataException(error)) throw error;
    throw new AppError('validation_failed', `${field.name} cannot be read as a moment: ${(error as Error).message}`, {
      errors: [{ path: field.path, message: 'must be a date-time PostgreSQL can read, within the years 0001–9999 in UTC' }],
    });
  }
  if (row.at === null) {
    throw new AppError('validation_failed', `${field.name} is outside the years 0001–9999 (UTC)`, {
      errors: [{ path: field.path, message: 'must fall within the years 0001–9999 in UTC' }],
    });
  }
  return row.at;
}

/**
 * Waits for the transaction-scoped advisory lock named `name` (held until the
 * transaction ends): work under one name takes turns. Take it before reading
 * what the work decides on — under READ COMMITTED a later statement then sees
 * what the previous holder committed.
 */
export async function lockNamed(tx: Executor, name: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${name}, 0))`.execute(tx);
}

/**
 * `AND <condition>` when `value` is given, nothing when it is not: how a
 * list's query writes its cursor's start (`AND id > $after`) and its optional
 * filters (`AND status = $status`, `AND store_id = ANY($storeIds)`).
 *
 * Why not `($after IS NULL OR id > $after)`, one text for both cases: that is
 * a range of an index only in a plan made with the values (as the service's
 * unnamed statements are). A generic plan — a prepared statement reused by a
 * driver or a pooler (node-pg's named statements switch to one after five
 * runs), or a server set to plan_cache_mode = force_generic_plan — cannot
 * know the value is not null, keeps the OR as a filter, and reads the
 * tenant's rows from the first one on every page. Two texts, two plans, each
 * a range scan of the page's rows: the plan tests of the lists
 * (src/http/listPlans.int.spec.ts, src/inventory/stockList.int.spec.ts) read
 * them under force_generic_plan.
 */
export function andIf<T>(value: T | null | undefined, condition: (value: T) => RawBuilder<unknown>): RawBuilder<unknown> {
  return value === undefined || value === null ? sql`` : sql`AND ${condition(value)}`;
}
