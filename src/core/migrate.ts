import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PG_MIGRATE_LOCK_ID, runner } from 'node-pg-migrate';
import { Logger as WorkerLogger, runMigrations as runWorkerMigrations } from 'graphile-worker';
import type { Logger } from './logger.js';
import { PG, pgCode } from './pgErrors.js';
import { StartupRefused } from './startupFailure.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
const MIGRATIONS_TABLE = 'schema_migrations';

/**
 * How long a start's migrations wait for a lock (ms; STARTUP_LOCK_TIMEOUT_MS):
 * PostgreSQL's lock_timeout on their sessions. A migration that waits longer
 * — a CREATE INDEX or an ALTER TABLE behind a transaction left open in psql,
 * a long report — is rolled back whole and the start fails with a line naming
 * the migration, the lock and the session holding it (MigrationLockTimeout),
 * instead of hanging for ever while every request on that table queues
 * behind it. Generous, so a migration that needs its lock on a busy table
 * still gets it; 0 waits as long as it takes (PostgreSQL's own default). The
 * wait for another process's migration (the advisory lock that serialises
 * them) is not bounded: that process is working, and is bounded itself.
 */
export const STARTUP_LOCK_TIMEOUT_MS = 60_000;

export interface MigrateOptions {
  /** lock_timeout of the migrations' sessions (ms; 0: none). Default STARTUP_LOCK_TIMEOUT_MS. */
  lockTimeoutMs?: number;
  /** The folder of numbered SQL files (default MIGRATIONS_DIR; tests give a copy with a migration of their own added). */
  dir?: string;
}

/**
 * Applies the numbered SQL files in migrations/, each in its own transaction,
 * under node-pg-migrate's advisory lock so two processes starting at once do
 * not migrate twice (the second waits, then has nothing to do). Runs as the connecting (owner) user, never as the app role.
 * Every lock but that advisory one is waited for at most `lockTimeoutMs`
 * (STARTUP_LOCK_TIMEOUT_MS): past it, the migration is rolled back and this
 * fails with a StartupRefused naming what it waited for.
 */
export async function migrate(databaseUrl: string, logger?: Logger, { lockTimeoutMs = STARTUP_LOCK_TIMEOUT_MS, dir = MIGRATIONS_DIR }: MigrateOptions = {}): Promise<string[]> {
  await keepDefaultPrivileges(databaseUrl, lockTimeoutMs).catch((error: unknown) => {
    throw startupLockTimeout(error, 'the refresh of the default privileges (ALTER DEFAULT PRIVILEGES)', lockTimeoutMs);
  });
  const client = new pg.Client(databaseUrl);
  // A connection the server ends fails the query waiting on it; without a listener its error event would also crash the process.
  client.on('error', (error) => logger?.warn({ err: error }, 'the migration connection failed'));
  await client.connect();
  let applied: Array<{ name: string }>;
  try {
    // Two processes starting at once (an API and a worker): the second waits
    // for the first to finish, then finds nothing to apply, instead of
    // failing — taken here, before the lock timeout is set, so that wait is
    // not bounded by it; node-pg-migrate takes it again on this session (a
    // session's advisory locks are re-entrant: at once).
    await client.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    await client.query(`SELECT set_config('lock_timeout', $1, false)`, [String(lockTimeoutMs)]);
    const watch = watchLockWaits(databaseUrl, (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid, lockTimeoutMs, logger);
    try {
      applied = await runner({
        dbClient: client,
        dir,
        migrationsTable: MIGRATIONS_TABLE,
        direction: 'up',
        count: Infinity,
        singleTransaction: false,
        checkOrder: true,
        advisoryLockMode: 'wait',
        log: (message: string) => logger?.debug({ migration: message.trim() }, 'migrate'),
        verbose: false,
      });
    } catch (error) {
      // A migration that failed left its transaction open and aborted on this session (ours, not node-pg-migrate's to close).
      await client.query('ROLLBACK').catch(() => undefined);
      if (pgCode(error) !== PG.LOCK_NOT_AVAILABLE) throw error;
      const pending = await pendingMigrations(client, dir).catch(() => []);
      throw new MigrationLockTimeout(pending[0], lockTimeoutMs, await watch.lastWait(), { cause: error });
    } finally {
      await watch.stop();
    }
  } finally {
    // Ending the session releases its advisory locks (both holds: ours and node-pg-migrate's).
    await client.end().catch(() => undefined);
  }
  for (const migration of applied) logger?.info({ migration: migration.name }, 'migration applied');
  await migrateJobQueue(databaseUrl, lockTimeoutMs, logger).catch((error: unknown) => {
    throw startupLockTimeout(error, "the job queue's schema (graphile-worker's migrations and storekeep's index on its jobs)", lockTimeoutMs);
  });
  return applied.map((migration) => migration.name);
}

/** A lock a migration's session was seen waiting for, and the sessions holding it (pg_blocking_pids). */
export interface LockWait {
  locktype: string;
  mode: string;
  relation: string | null;
  holders: Array<{ pid: number; application_name: string | null; usename: string | null; client_addr: string | null; state: string | null; xact_start: string | null }>;
}

/** How often a migration's lock waits are looked at (ms), and after how long a wait is logged. */
const LOCK_WATCH_MS = 250;
const LOCK_WAIT_LOGGED_AFTER_MS = 5_000;

/**
 * Looks, on a connection of its own, at what the migration session `pid`
 * waits for, every LOCK_WATCH_MS while the migrations run: the lock (its
 * relation when it is one) and the sessions holding it. PostgreSQL's
 * lock_timeout error names neither (a table lock's says only "canceling
 * statement due to lock timeout"), and once the statement has given up the
 * wait is gone: the last one seen is what the start-up failure names. A
 * wait that lasts LOCK_WAIT_LOGGED_AFTER_MS is logged (warn), once, while it
 * still waits. With no lock timeout nothing is watched.
 */
function watchLockWaits(databaseUrl: string, pid: number, lockTimeoutMs: number, logger?: Logger): { lastWait(): Promise<LockWait | undefined>; stop(): Promise<void> } {
  if (lockTimeoutMs <= 0) return { lastWait: async () => undefined, stop: async () => undefined };
  const watcher = new pg.Client({ connectionString: databaseUrl, application_name: 'storekeep migrate (lock watch)', connectionTimeoutMillis: 10_000 });
  watcher.on('error', () => undefined);
  let last: LockWait | undefined;
  let since: { key: string; at: number; logged: boolean } | undefined;
  let stopped = false;
  let looking: Promise<void> = Promise.resolve();
  const look = async () => {
    const { rows } = await watcher.query<LockWait>(
      `SELECT l.locktype, l.mode, CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END AS relation,
              coalesce((SELECT json_agg(json_build_object('pid', a.pid, 'application_name', nullif(a.application_name, ''), 'usename', a.usename,
                                                          'client_addr', host(a.client_addr), 'state', a.state, 'xact_start', a.xact_start) ORDER BY a.pid)
                        FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1))), '[]') AS holders
       FROM pg_locks l WHERE l.pid = $1 AND NOT l.granted LIMIT 1`,
      [pid],
    );
    const wait = rows[0];
    if (wait === undefined) {
      since = undefined;
      return;
    }
    last = wait;
    const key = JSON.stringify([wait.locktype, wait.mode, wait.relation, wait.holders.map((holder) => holder.pid)]);
    if (since?.key !== key) since = { key, at: Date.now(), logged: false };
    if (!since.logged && Date.now() - since.at >= LOCK_WAIT_LOGGED_AFTER_MS) {
      since.logged = true;
      logger?.warn({ wait: describeLockWait(wait), lock_timeout_ms: lockTimeoutMs }, 'a migration is waiting for a lock another session holds');
    }
  };
  const connected = watcher.connect().then(
    () => true,
    () => false,
  );
  const timer = setInterval(() => {
    looking = looking.then(async () => {
      if (!stopped && (await connected)) await look().catch(() => undefined);
    });
  }, LOCK_WATCH_MS);
  timer.unref();
  return {
    lastWait: async () => {
      await looking;
      return last;
    },
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await looking;
      if (await connected) await watcher.end().catch(() => undefined);
    },
  };
}

/** A lock wait in words: `a ShareLock lock on relation sale_returns held by pid 123 (application psql, user owner, from 10.0.0.5, idle in transaction since …)`. */
function describeLockWait(wait: LockWait): string {
  const what = wait.relation !== null ? `a ${wait.mode} lock on relation ${wait.relation}` : wait.locktype === 'transactionid' ? `a ${wait.mode} lock on a row (the transaction holding it)` : `a ${wait.mode} ${wait.locktype} lock`;
  if (wait.holders.length === 0) return what;
  const holders = wait.holders.map((holder) => {
    const about = [
      holder.application_name === null ? 'no application name' : `application ${holder.application_name}`,
      ...(holder.usename === null ? [] : [`user ${holder.usename}`]),
      ...(holder.client_addr === null ? [] : [`from ${holder.client_addr}`]),
      ...(holder.state === null ? [] : [holder.xact_start === null ? holder.state : `${holder.state}, in a transaction since ${new Date(holder.xact_start).toISOString()}`]),
    ];
    return `pid ${holder.pid} (${about.join(', ')})`;
  });
  return `${what} held by ${holders.join(' and ')}`;
}

/** A lock wait of a start-up step past the lock timeout as a StartupRefused saying so (its relation when PostgreSQL names it); any other error as it is. */
function startupLockTimeout(error: unknown, step: string, lockTimeoutMs: number): unknown {
  if (pgCode(error) !== PG.LOCK_NOT_AVAILABLE) return error;
  const where = (error as { where?: unknown }).where;
  const relation = typeof where === 'string' ? /in relation "([^"]+)"/.exec(where)?.[1] : undefined;
  return new StartupRefused(
    `${step} waited more than ${lockTimeoutMs / 1000} s (STARTUP_LOCK_TIMEOUT_MS) for a lock another session holds${relation === undefined ? '' : ` (on relation ${relation})`}, and was rolled back: ` +
      'let that session finish or end it, then start again — or set STARTUP_LOCK_TIMEOUT_MS higher (0: wait as long as it takes)',
    { cause: error },
  );
}

/**
 * A migration that waited past the start-up's lock timeout: rolled back
 * whole (each migration is one transaction), so nothing of it was applied;
 * the migrations before it stay applied. The message names the migration,
 * the lock it waited for and the session holding it.
 */
export class MigrationLockTimeout extends StartupRefused {
  constructor(migration: string | undefined, lockTimeoutMs: number, wait: LockWait | undefined, options: { cause: unknown }) {
    const holders = wait?.holders.map((holder) => holder.pid) ?? [];
    super(
      `${migration === undefined ? 'a migration' : `migration ${migration}`} waited more than ${lockTimeoutMs / 1000} s (STARTUP_LOCK_TIMEOUT_MS) for ` +
        `${wait === undefined ? 'a lock another session holds' : describeLockWait(wait)}, and was rolled back: nothing of it was applied. ` +
        (holders.length > 0 ? `Let that session finish or end it (SELECT pg_terminate_backend(${holders[0]})), then start again` : 'Let the session holding it finish or end it, then start again') +
        ' — or set STARTUP_LOCK_TIMEOUT_MS higher (0: wait as long as it takes)',
      options,
    );
  }
}

// Any constant: the key of the transaction advisory lock that serialises the default privileges' refresh.
const DEFAULT_PRIVILEGES_LOCK = 740_002;

/**
 * The default privileges 0001 gave storekeep_app on what the migrating login
 * makes later (tables, sequences, functions), given again before each run, for
 * the login migrating now. A default privilege belongs to the login that
 * made it: a database restored by another login (`pg_restore --no-owner`
 * onto a new server, whose restore cannot set them for the old owner) or
 * migrated by a new DATABASE_URL login had none, and every table a later
 * migration made (0830 and 1070 rely on them) was closed to the API —
 * `permission denied` on every request using it. Skipped before 0001 made
 * the role; idempotent. The tables a migration restricts (operator_tokens,
 * stock_snapshots, …) keep their own GRANT/REVOKE.
 */
async function keepDefaultPrivileges(databaseUrl: string, lockTimeoutMs: number): Promise<void> {
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [String(lockTimeoutMs)]);
    // Two processes starting at once would otherwise update the same catalog row together ("tuple concurrently updated").
    await client.query('SELECT pg_advisory_xact_lock($1)', [DEFAULT_PRIVILEGES_LOCK]);
    const role = await client.query<{ exists: boolean }>(`SELECT to_regrole('storekeep_app') IS NOT NULL AS exists`);
    if (role.rows[0]?.exists) {
      await client.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO storekeep_app');
      await client.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO storekeep_app');
      await client.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO storekeep_app');
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

// Any constant: the key of the session advisory lock that serialises job-queue
// schema installs across processes.
const JOB_QUEUE_MIGRATION_LOCK = 740_001;

/**
 * Installs or upgrades graphile-worker's schema (`graphile_worker`), after our
 * own migrations (so `enqueue_job`, created by 0400, finds `add_job` when first
 * called). graphile-worker copes with a concurrent install on its own, but two
 * processes starting at once would then log a clash and sleep; a session
 * advisory lock makes the second simply wait and find nothing to do.
 * Idempotent: an up-to-date schema is a no-op.
 */
async function migrateJobQueue(databaseUrl: string, lockTimeoutMs: number, logger?: Logger): Promise<void> {
  const client = new pg.Client(databaseUrl);
  // A connection the server ends fails the query waiting on it; without a listener its error event would also crash the process.
  client.on('error', (error) => logger?.warn({ err: error }, 'the job-queue migration lock connection failed'));
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [JOB_QUEUE_MIGRATION_LOCK]);
    // Our own pool, closed before we return: graphile-worker ends a pool it
    // made without waiting, after removing its error handlers, so a
    // connection still closing when the server ended it (a restart, a
    // failover, DROP DATABASE … WITH (FORCE)) raised an error nobody handled
    // and crashed the process.
    // Their locks waited for at most the start's lock timeout (the advisory lock above, another process's install, as long as it takes).
    const pool = new pg.Pool({ connectionString: databaseUrl, options: `-c lock_timeout=${lockTimeoutMs}` });
    pool.on('error', (error) => logger?.warn({ err: error }, 'a job-queue migration connection failed'));
    // graphile-worker wants both handlers on a pool it is given (otherwise it
    // installs its own and prints a warning on the console at every start).
    pool.on('connect', (connection) => connection.on('error', (error) => logger?.warn({ err: error }, 'a job-queue migration connection failed')));
    try {
      await runWorkerMigrations({
        pgPool: pool,
        logger: new WorkerLogger(() => (level, message) => {
          if (level === 'error' || level === 'warning') logger?.warn({ component: 'graphile-worker' }, message);
        }),
      });
      await ensureTenantTurnIndex(pool);
    } finally {
      await pool.end();
      await client.query('SELECT pg_advisory_unlock($1)', [JOB_QUEUE_MIGRATION_LOCK]);
    }
  } finally {
    await client.end();
  }
}

/**
 * enqueue_job's lookup of a tenant's last waiting job due no later than the
 * one it adds (0997, 1001: tenants take turns; run_at in the index, so the
 * tenant's jobs due later are passed over in it, not read one heap row each).
 * On graphile-worker's table, so made here, after its schema; an upgrade of
 * that schema that rebuilt the table gets it again here. 0997's index (no
 * run_at) is replaced by it. Every `serve` and `worker` start comes here while
 * the queue is in use: an index that is there is left alone without touching
 * the table — `CREATE INDEX IF NOT EXISTS` takes the table's SHARE lock before
 * it finds the index, so it waited for every open transaction that had added
 * a job while every later enqueue, claim and completion waited behind it.
 * Built (or the old one dropped) only once, by the first start of this
 * version. Not CONCURRENTLY: that waits for every transaction with a snapshot,
 * among them a second process waiting here for the advisory lock this one
 * holds.
 */
async function ensureTenantTurnIndex(pool: pg.Pool): Promise<void> {
  const present = await pool.query<{ due: boolean; old: boolean }>(
    `SELECT to_regclass('graphile_worker.storekeep_jobs_tenant_turn_due_idx') IS NOT NULL AS due, to_regclass('graphile_worker.storekeep_jobs_tenant_turn_idx') IS NOT NULL AS old`,
  );
  if (!present.rows[0]?.due) {
    await pool.query(
      `CREATE INDEX IF NOT EXISTS storekeep_jobs_tenant_turn_due_idx ON graphile_worker._private_jobs ((payload ->> 'tenant_id'), priority, run_at) WHERE is_available`,
    );
  }
  if (present.rows[0]?.old) await pool.query(`DROP INDEX IF EXISTS graphile_worker.storekeep_jobs_tenant_turn_idx`);
}

export async function migrationFiles(dir = MIGRATIONS_DIR): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.sql')).map((name) => name.slice(0, -4)).sort();
}

/** Names of migrations on disk that the database has not applied. */
export async function pendingMigrations(client: pg.Pool | pg.Client, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = await migrationFiles(dir);
  const exists = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    `public.${MIGRATIONS_TABLE}`,
  ]);
  if (!exists.rows[0]?.exists) return files;
  const done = await client.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
  const applied = new Set(done.rows.map((row) => row.name));
  return files.filter((name) => !applied.has(name));
}
