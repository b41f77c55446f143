import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { Logger as WorkerLogger, runMigrations as runWorkerMigrations } from 'graphile-worker';
import type { Logger } from './logger.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
const MIGRATIONS_TABLE = 'schema_migrations';

/**
 * Applies the numbered SQL files in migrations/, each in its own transaction,
 * under node-pg-migrate's advisory lock so two processes starting at once do
 * not migrate twice (the second waits, then has nothing to do). Runs as the connecting (owner) user, never as the app role.
 */
export async function migrate(databaseUrl: string, logger?: Logger): Promise<string[]> {
  await keepDefaultPrivileges(databaseUrl);
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    count: Infinity,
    singleTransaction: false,
    checkOrder: true,
    // Two processes starting at once (an API and a worker): the second waits
    // for the first to finish, then finds nothing to apply, instead of failing.
    advisoryLockMode: 'wait',
    log: (message: string) => logger?.debug({ migration: message.trim() }, 'migrate'),
    verbose: false,
  });
  for (const migration of applied) logger?.info({ migration: migration.name }, 'migration applied');
  await migrateJobQueue(databaseUrl, logger);
  return applied.map((migration) => migration.name);
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
async function keepDefaultPrivileges(databaseUrl: string): Promise<void> {
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    await client.query('BEGIN');
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
async function migrateJobQueue(databaseUrl: string, logger?: Logger): Promise<void> {
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
    const pool = new pg.Pool({ connectionString: databaseUrl });
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

export async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql')).map((name) => name.slice(0, -4)).sort();
}

/** Names of migrations on disk that the database has not applied. */
export async function pendingMigrations(client: pg.Pool | pg.Client): Promise<string[]> {
  const files = await migrationFiles();
  const exists = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    `public.${MIGRATIONS_TABLE}`,
  ]);
  if (!exists.rows[0]?.exists) return files;
  const done = await client.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
  const applied = new Set(done.rows.map((row) => row.name));
  return files.filter((name) => !applied.has(name));
}
