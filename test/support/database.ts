import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loggedInAs } from '../../src/core/appLogin.js';
import { createDb, createPool, type Db } from '../../src/core/db.js';

export interface TestDatabase {
  /** Owner (superuser) connection string of this file's own database. */
  url: string;
  /** Owner pool: bypasses RLS — for Given/Then steps that set up or inspect rows directly. */
  admin: pg.Pool;
  /** The app login's connection string (a member of storekeep_app only, like the service's). */
  appUrl: string;
  /** App-role pool and Kysely: what the service itself runs as (RLS applies), logged in as the app login. */
  appPool: pg.Pool;
  db: Db;
  drop(): Promise<void>;
}

function serverUrl(): { server: string; template: string; appRole: string; appPassword: string } {
  const server = process.env.STOREKEEP_TEST_SERVER_URL;
  const template = process.env.STOREKEEP_TEST_TEMPLATE;
  const appRole = process.env.STOREKEEP_TEST_APP_ROLE;
  const appPassword = process.env.STOREKEEP_TEST_APP_PASSWORD;
  if (!server || !template || !appRole || !appPassword) throw new Error('run tests with `npm test` (it starts PostgreSQL and migrates the template database)');
  return { server, template, appRole, appPassword };
}

/**
 * A fresh database cloned from the migrated template: one per test file.
 * `lockTimeoutMs`: the app pool's lock_timeout (createPool's default, 15 s, when unset).
 */
export async function createTestDatabase(options: { lockTimeoutMs?: number } = {}): Promise<TestDatabase> {
  const { server, template, appRole, appPassword } = serverUrl();
  const name = `${template}_${randomBytes(5).toString('hex')}`;
  const control = new pg.Client(server);
  await control.connect();
  try {
    await control.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await control.end();
  }
  const url = new URL(server);
  url.pathname = `/${name}`;
  const admin = new pg.Pool({ connectionString: url.toString(), max: 5 });
  admin.on('error', () => undefined);
  const appUrl = loggedInAs(url.toString(), appRole, appPassword);
  const appPool = createPool(appUrl, { max: 30, asAppRole: true, lockTimeoutMs: options.lockTimeoutMs });
  const db = createDb(appPool);
  let dropped = false;
  return {
    url: url.toString(),
    appUrl,
    admin,
    appPool,
    db,
    async drop() {
      if (dropped) return;
      dropped = true;
      await db.destroy();
      await admin.end();
      const control = new pg.Client(server);
      await control.connect();
      try {
        await control.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await control.end();
      }
    },
  };
}

/** SQL statements with their parameters, run in order. */
export type Statements = Array<[statement: string, params?: unknown[]]>;

/** Runs statements on `pool` in one transaction: all of them, or (on an error, rethrown) none. */
export async function inOneTransaction(pool: pg.Pool, statements: Statements): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (const [statement, params] of statements) await client.query(statement, params);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Runs statements on the owner pool in one transaction with triggers off
 * (`session_replication_role = replica`): how a test back-dates or corrupts
 * rows the database otherwise protects (immutable columns, append-only
 * tables), to see a check or a rule react.
 */
export async function withTriggersOff(admin: pg.Pool, statements: Statements): Promise<void> {
  await inOneTransaction(admin, [['SET LOCAL session_replication_role = replica'], ...statements]);
}

/**
 * Runs statements as the app role (the app pool: row-level security and the
 * app's grants apply) in `tenantId`'s context, in one transaction: how a test
 * sees what the service's own login may and may not do to a table.
 */
export async function asAppInTenant(appPool: pg.Pool, tenantId: string, statements: Statements): Promise<void> {
  await inOneTransaction(appPool, [[`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]], ...statements]);
}
