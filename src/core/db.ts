import pg from 'pg';
import { Kysely, PostgresDialect, type RawBuilder, type Transaction } from 'kysely';
import { assert } from './errors.js';

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

export interface PoolOptions {
  max: number;
  /** Run every session as APP_ROLE so row-level security applies to it. */
  asAppRole: boolean;
  applicationName?: string;
  onError?: (error: Error) => void;
}

export function createPool(connectionString: string, options: PoolOptions): pg.Pool {
  const settings = [
    // A statement or idle transaction that hangs must not hold stock rows locked forever.
    '-c statement_timeout=30000',
    '-c idle_in_transaction_session_timeout=60000',
    '-c lock_timeout=15000',
    ...(options.asAppRole ? [`-c role=${APP_ROLE}`] : []),
  ];
  const pool = new pg.Pool({
    connectionString,
    max: options.max,
    options: settings.join(' '),
    application_name: options.applicationName ?? 'storekeep',
    connectionTimeoutMillis: 10_000,
  });
  // Without a listener an idle client's network error would crash the process.
  pool.on('error', (error) => options.onError?.(error));
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
