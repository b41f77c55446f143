import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PG_MIGRATE_LOCK_ID } from 'node-pg-migrate';
import { migrate, migrationFiles, MIGRATIONS_DIR } from './migrate.js';
import { StartupRefused } from './startupFailure.js';

describe('migrate', () => {
  const server = process.env.STOREKEEP_TEST_SERVER_URL!;
  const template = process.env.STOREKEEP_TEST_TEMPLATE!;
  const name = `${template}_empty_${randomBytes(4).toString('hex')}`;
  const url = new URL(server);
  url.pathname = `/${name}`;

  const control = async (query: string) => {
    const client = new pg.Client(server);
    await client.connect();
    try {
      await client.query(query);
    } finally {
      await client.end();
    }
  };
  before(() => control(`CREATE DATABASE ${name}`));
  after(() => control(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));

  it('is safe for two processes starting at once on an empty database, and idempotent', async () => {
    // When an API and a worker start together
    const [first, second] = await Promise.all([migrate(url.toString()), migrate(url.toString())]);
    // Then every migration was applied exactly once, by one of them, and the job queue exists
    assert.deepEqual([...first, ...second].sort(), (await migrationFiles()).sort());
    const client = new pg.Client(url.toString());
    await client.connect();
    try {
      const queue = await client.query(`SELECT count(*)::int AS n FROM graphile_worker.migrations`);
      assert.ok(queue.rows[0].n > 0);
    } finally {
      await client.end();
    }
    // and a third run has nothing to do
    assert.deepEqual(await migrate(url.toString()), []);
  });

  it("on a migrated database, does not hold the job queue behind a transaction that has a job in flight (no lock on graphile-worker's jobs for an index already there)", async () => {
    // Given a migrated database (the test above) and a business transaction that enqueued a job and is still open
    await migrate(url.toString());
    const holder = new pg.Client(url.toString());
    const other = new pg.Client(url.toString());
    await holder.connect();
    await other.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT graphile_worker.add_job('test.held')`);
      // When a worker or an API starts (and migrates) meanwhile
      const migrating = migrate(url.toString()).then(() => 'done' as const);
      const outcome = await Promise.race([migrating, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 1_500))]);
      // and another transaction adds a job
      await other.query(`SET lock_timeout = '1s'`);
      const added = await other.query(`SELECT graphile_worker.add_job('test.other')`).then(
        () => 'added',
        (error: Error) => error.message,
      );
      await holder.query('COMMIT');
      await migrating;
      // Then migrate did not wait for the open transaction, and the other job was added, not queued behind migrate
      assert.deepEqual({ outcome, added }, { outcome: 'done', added: 'added' });
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await other.query(`DELETE FROM graphile_worker._private_jobs`);
      await holder.end();
      await other.end();
    }
  });

  it("on a database migrated by 0997's version, replaces its tenant-turn index with the one that has run_at", async () => {
    // Given the index 0997's migrate made (tenant, priority), and not the new one
    const client = new pg.Client(url.toString());
    await client.connect();
    try {
      await client.query(`DROP INDEX graphile_worker.storekeep_jobs_tenant_turn_due_idx`);
      await client.query(`CREATE INDEX storekeep_jobs_tenant_turn_idx ON graphile_worker._private_jobs ((payload ->> 'tenant_id'), priority) WHERE is_available`);
      // When this version migrates
      await migrate(url.toString());
      // Then the new index is there (valid) and the old one is gone
      const indexes = await client.query<{ name: string; valid: boolean }>(
        `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = 'graphile_worker._private_jobs'::regclass AND c.relname LIKE 'storekeep_%' ORDER BY 1`,
      );
      assert.deepEqual(indexes.rows, [{ name: 'storekeep_jobs_tenant_turn_due_idx', valid: true }]);
    } finally {
      await client.end();
    }
  });

  it('on a database restored by another login (pg_restore --no-owner: no default privileges), a table the next migration makes is open to storekeep_app again', async () => {
    // Given a migrated database as a restore by another login leaves it: the
    // dump's ALTER DEFAULT PRIVILEGES name the old owner, and are refused or dropped
    await migrate(url.toString());
    const client = new pg.Client(url.toString());
    await client.connect();
    try {
      await client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM storekeep_app`);
      await client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM storekeep_app`);
      await client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM storekeep_app`);
      // and a server hardened as many are: a new function is not executable by
      // everyone (PostgreSQL's default), so only a grant to storekeep_app opens it
      await client.query(`ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC`);
      // When this version starts (and migrates), then a later migration makes a table, as 0830 and 1070 did
      await migrate(url.toString());
      await client.query(`CREATE TABLE restored_then_added (tenant_id uuid, n bigserial)`);
      await client.query(`CREATE FUNCTION restored_then_added_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'`);
      // Then the app role can use them, as it could every table made before the move
      await client.query('BEGIN');
      await client.query('SET LOCAL ROLE storekeep_app');
      const used = await client.query(`INSERT INTO restored_then_added (tenant_id) VALUES (NULL) RETURNING n, restored_then_added_fn() AS one`).then(
        (result) => result.rows[0],
        (error: Error) => error.message,
      );
      await client.query('ROLLBACK');
      assert.deepEqual(used, { n: '1', one: 1 });
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      await client.query(`DROP TABLE IF EXISTS restored_then_added`);
      await client.query(`DROP FUNCTION IF EXISTS restored_then_added_fn()`);
      await client.query(`ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC`);
      await client.end();
    }
  });

  it('prints nothing of its own on the console (graphile-worker warned on every start, outside the log, that our pool had no connect handler)', async () => {
    const printed: unknown[][] = [];
    const { warn, error, log } = console;
    console.warn = (...args: unknown[]) => void printed.push(args);
    console.error = (...args: unknown[]) => void printed.push(args);
    console.log = (...args: unknown[]) => void printed.push(args);
    try {
      await migrate(url.toString());
    } finally {
      Object.assign(console, { warn, error, log });
    }
    assert.deepEqual(printed, []);
  });

  it('a server that ends every connection the moment it returns does not crash the process (no connection of its own left behind without an error handler)', async () => {
    const admin = new pg.Client(server);
    await admin.connect();
    // A pool that is slow to close its connections (as on a loaded machine): what migrate leaves open shows.
    const end = pg.Pool.prototype.end;
    pg.Pool.prototype.end = function (this: pg.Pool, ...args: unknown[]) {
      return new Promise((resolve) => setTimeout(resolve, 300)).then(() => (end as (...a: unknown[]) => Promise<void>).apply(this, args));
    } as typeof end;
    try {
      await migrate(url.toString());
      // what DROP DATABASE … WITH (FORCE), a failover or a restart does
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
      await new Promise((resolve) => setTimeout(resolve, 600));
    } finally {
      pg.Pool.prototype.end = end;
      await admin.end();
    }
  });

  it('a migration blocked behind a lock another session holds gives up after the lock timeout: a start-up failure naming the migration, the relation, the lock and its holder; nothing of it applied; applied once the lock is gone', async () => {
    // Given a migrated database and, pending, a migration of its own after the last (in a copy of the folder):
    // an index on sales, then one on sale_returns
    await migrate(url.toString());
    const dir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-migrations-'));
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const last = '99990_probe_lock_wait';
    writeFileSync(
      path.join(dir, `${last}.sql`),
      '-- Up Migration\nCREATE INDEX probe_sales_idx ON sales (tenant_id, created_at);\nCREATE INDEX probe_returns_idx ON sale_returns (tenant_id, created_at);\n',
    );
    const client = new pg.Client(url.toString());
    const holder = new pg.Client({ connectionString: url.toString(), application_name: 'psql-by-hand' });
    await client.connect();
    await holder.connect();
    const state = async () =>
      (
        await client.query(
          `SELECT to_regclass('probe_sales_idx') IS NOT NULL AS sales_index, to_regclass('probe_returns_idx') IS NOT NULL AS returns_index,
                  EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1) AS recorded`,
          [last],
        )
      ).rows[0];
    try {
      // and a session in a transaction that wrote to sale_returns (ROW EXCLUSIVE, as any request's), left open
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE sale_returns IN ROW EXCLUSIVE MODE');
      const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      // (a start that never gives up would wait for ever: the holder lets go after 20 s, and the test fails instead of hanging)
      const letGo = setTimeout(() => void holder.query('ROLLBACK').catch(() => undefined), 20_000);
      // When a start migrates meanwhile, with a lock timeout of 1.5 s
      const started = Date.now();
      const failure = await migrate(url.toString(), undefined, { lockTimeoutMs: 1_500, dir }).then(
        () => undefined,
        (error: unknown) => error,
      );
      const took = Date.now() - started;
      clearTimeout(letGo);
      // Then it gives up after about that long, with one line naming the migration, what it waited for and who holds it
      assert.ok(failure instanceof StartupRefused, String((failure as Error | undefined)?.stack ?? failure));
      assert.ok(took >= 1_400 && took < 15_000, `gave up after ${took} ms`);
      const message = failure.message;
      assert.match(message, new RegExp(`migration ${last}`));
      assert.match(message, /waited more than 1\.5 s \(STARTUP_LOCK_TIMEOUT_MS\)/);
      assert.match(message, /ShareLock lock on relation sale_returns/);
      assert.match(message, new RegExp(`held by pid ${holderPid} \\(application psql-by-hand`));
      assert.match(message, /nothing of it was applied/);
      assert.doesNotMatch(message, /\n/, 'one line');
      // and nothing of that migration is there: its first index (on a table nobody held) rolled back with it
      assert.deepEqual(await state(), { sales_index: false, returns_index: false, recorded: false });
      // and the holder's transaction was left alone
      assert.equal((await holder.query('SELECT 1 AS one')).rows[0].one, 1);
      await holder.query('ROLLBACK');
      // Once the lock is gone, the next start applies it
      assert.deepEqual(await migrate(url.toString(), undefined, { lockTimeoutMs: 1_500, dir }), [last]);
      assert.deepEqual(await state(), { sales_index: true, returns_index: true, recorded: true });
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
      // This database now has a migration the folder lacks: drop it from the record (and its indexes), as the other tests expect the folder's.
      await client.query(`DROP INDEX IF EXISTS probe_sales_idx; DROP INDEX IF EXISTS probe_returns_idx; DELETE FROM schema_migrations WHERE name = '${last}'`);
      await client.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("waits as long as it takes for another process's migration (the advisory lock), whatever the lock timeout", async () => {
    // Given another process migrating: it holds node-pg-migrate's advisory lock for 2.5 s
    const other = new pg.Client(url.toString());
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
      const released = new Promise<void>((resolve) => setTimeout(() => void other.query('SELECT pg_advisory_unlock($1)', [PG_MIGRATE_LOCK_ID]).then(() => resolve()), 2_500));
      // When this one starts with a lock timeout of 0.5 s
      const started = Date.now();
      const applied = await migrate(url.toString(), undefined, { lockTimeoutMs: 500 });
      await released;
      // Then it waited for the other, and found nothing to do
      assert.ok(Date.now() - started >= 2_400, 'waited for the other process');
      assert.deepEqual(applied, []);
    } finally {
      await other.end();
    }
  });
});
