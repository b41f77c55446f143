import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate, migrationFiles } from './migrate.js';

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
});
