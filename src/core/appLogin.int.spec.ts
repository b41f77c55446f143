import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { AppLoginRefused, checkAppLogin, dropAppLogin, provisionAppLogin } from './appLogin.js';
import { createPool } from './db.js';
import { pgCode } from './pgErrors.js';

describe('the app login: request sessions cannot leave row-level security', () => {
  let t: TestDatabase;
  const tenants = ['a1a1a1a1-0000-4000-8000-000000000001', 'b2b2b2b2-0000-4000-8000-000000000002'];

  before(async () => {
    t = await createTestDatabase();
    for (const [index, id] of tenants.entries()) await t.admin.query(`INSERT INTO tenants (id, name) VALUES ($1, $2)`, [id, `login-${index}`]);
  });
  after(() => t.drop());

  /** Runs statements on one connection of `pool`; returns the last result, or the SQLSTATE it failed with. */
  async function onOneConnection(pool: pg.Pool, statements: string[]): Promise<{ rows: Record<string, unknown>[] } | { code: string | undefined }> {
    const client = await pool.connect();
    try {
      let last: pg.QueryResult | undefined;
      for (const statement of statements) last = await client.query(statement);
      return { rows: last?.rows ?? [] };
    } catch (error) {
      return { code: pgCode(error) };
    } finally {
      client.release(true);
    }
  }

  it('a request session that drops its role is still the app login: no superuser, no owner, every tenant row hidden but its own', async () => {
    const escaped = await onOneConnection(t.appPool, [
      'SET ROLE NONE',
      `SELECT current_user::text AS current_user, (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = session_user) AS privileged,
              (SELECT count(*)::int FROM tenants) AS visible`,
    ]);
    assert.deepEqual(escaped, { rows: [{ current_user: process.env.STOREKEEP_TEST_APP_ROLE, privileged: false, visible: 0 }] });
    const inTenant = await onOneConnection(t.appPool, ['SET ROLE NONE', `SELECT set_config('app.tenant_id', '${tenants[0]}', false)`, 'SELECT id FROM tenants']);
    assert.deepEqual(inTenant, { rows: [{ id: tenants[0] }] });
    // Nor can it become the owner, or write around the append-only rules.
    const owner = new URL(t.url).username;
    assert.deepEqual(await onOneConnection(t.appPool, [`SET ROLE ${owner}`]), { code: '42501' });
    assert.deepEqual(await onOneConnection(t.appPool, ['SET ROLE NONE', 'ALTER TABLE events DISABLE TRIGGER USER']), { code: '42501' });
  });

  it('why: the owner login switched to storekeep_app (the old pools, and DATABASE_URL without DATABASE_APP_URL) switches back to the owner', async () => {
    const switched = createPool(t.url, { max: 1, asAppRole: true });
    try {
      const before = await onOneConnection(switched, ['SELECT count(*)::int AS visible FROM tenants']);
      assert.deepEqual(before, { rows: [{ visible: 0 }] });
      const escaped = await onOneConnection(switched, ['SET ROLE NONE', 'SELECT count(*)::int AS visible FROM tenants']);
      assert.ok('rows' in escaped && (escaped.rows[0]!.visible as number) >= 2, 'the owner sees every tenant');
    } finally {
      await switched.end();
    }
  });

  it('provisioning twice is harmless and puts back what someone changed: login, password, no extra rights', async () => {
    const role = `storekeep_api_t${randomBytes(3).toString('hex')}`;
    try {
      const url = await provisionAppLogin(t.url, 'first-password', role);
      await t.admin.query(`ALTER ROLE ${role} CREATEDB CREATEROLE`);
      const again = await provisionAppLogin(t.url, 'second-password', role);
      assert.notEqual(again, url);
      const attributes = await t.admin.query(`SELECT rolcanlogin, rolcreatedb, rolcreaterole, rolsuper, rolbypassrls, pg_has_role($1, 'storekeep_app', 'MEMBER') AS member FROM pg_roles WHERE rolname = $1`, [role]);
      assert.deepEqual(attributes.rows, [{ rolcanlogin: true, rolcreatedb: false, rolcreaterole: false, rolsuper: false, rolbypassrls: false, member: true }]);
      const pool = new pg.Pool({ connectionString: again, max: 1 });
      try {
        assert.deepEqual((await pool.query('SELECT session_user::text AS login')).rows, [{ login: role }]);
      } finally {
        await pool.end();
      }
    } finally {
      await dropAppLogin(t.url, role);
    }
  });

  it('DATABASE_APP_URL is checked: a superuser, an RLS-bypassing login, the tables\' owner or one without storekeep_app is refused, saying which', async () => {
    await checkAppLogin(t.appUrl, 'DATABASE_APP_URL');
    await assert.rejects(checkAppLogin(t.url, 'DATABASE_APP_URL'), (error: unknown) => error instanceof AppLoginRefused && /which is a superuser/.test(error.message));
    const role = `storekeep_api_t${randomBytes(3).toString('hex')}`;
    try {
      const url = await provisionAppLogin(t.url, 'pw', role);
      await t.admin.query(`ALTER ROLE ${role} BYPASSRLS`);
      await assert.rejects(checkAppLogin(url, 'DATABASE_APP_URL'), /bypasses row-level security/);
      await t.admin.query(`ALTER ROLE ${role} NOBYPASSRLS`);
      await t.admin.query(`REVOKE storekeep_app FROM ${role}`);
      await assert.rejects(checkAppLogin(url, 'DATABASE_APP_URL'), /is not granted storekeep_app/);
      await t.admin.query(`GRANT storekeep_app TO ${role}; CREATE TABLE owned_by_login (id int); ALTER TABLE owned_by_login OWNER TO ${role}`);
      await assert.rejects(checkAppLogin(url, 'DATABASE_APP_URL'), /owns the service's tables/);
      await t.admin.query(`DROP TABLE owned_by_login`);
      await checkAppLogin(url, 'DATABASE_APP_URL');
    } finally {
      await dropAppLogin(t.url, role);
    }
  });

  it('DATABASE_APP_URL is checked through the roles it can become: one granted a superuser, an RLS-bypassing role, the owner or a file-access role is refused', async () => {
    const suffix = randomBytes(3).toString('hex');
    const role = `storekeep_api_t${suffix}`;
    const granted = `storekeep_granted_t${suffix}`;
    try {
      const url = await provisionAppLogin(t.url, 'pw', role);
      // A NOLOGIN role in between, so only a check that follows memberships all the way sees it.
      await t.admin.query(`CREATE ROLE ${granted} NOLOGIN; GRANT ${granted} TO ${role}`);
      await checkAppLogin(url, 'DATABASE_APP_URL');
      const owner = new URL(t.url).username;
      for (const [grant, undo, why] of [
        [`ALTER ROLE ${granted} SUPERUSER`, `ALTER ROLE ${granted} NOSUPERUSER`, `can become ${granted}, which is a superuser`],
        [`ALTER ROLE ${granted} BYPASSRLS`, `ALTER ROLE ${granted} NOBYPASSRLS`, `can become ${granted}, which bypasses row-level security`],
        [`CREATE TABLE granted_owns (id int); ALTER TABLE granted_owns OWNER TO ${granted}`, 'DROP TABLE granted_owns', `can become ${granted}, which owns the service's tables`],
        [`GRANT pg_write_server_files TO ${granted}`, `REVOKE pg_write_server_files FROM ${granted}`, `can become pg_write_server_files, which reads or writes the server's files`],
        [`ALTER ROLE ${role} CREATEROLE`, `ALTER ROLE ${role} NOCREATEROLE`, 'which can create and grant roles'],
      ] as const) {
        await t.admin.query(grant);
        await assert.rejects(checkAppLogin(url, 'DATABASE_APP_URL'), (error: unknown) => error instanceof AppLoginRefused && error.message.includes(why), grant);
        await t.admin.query(undo);
      }
      // The tables' owner itself, granted to the login.
      await t.admin.query(`GRANT ${owner} TO ${role}`);
      await assert.rejects(checkAppLogin(url, 'DATABASE_APP_URL'), (error: unknown) => error instanceof AppLoginRefused && error.message.includes(`can become ${owner}, which`));
      await t.admin.query(`REVOKE ${owner} FROM ${role}`);
      await checkAppLogin(url, 'DATABASE_APP_URL');
    } finally {
      await dropAppLogin(t.url, role);
      await t.admin.query(`DROP ROLE IF EXISTS ${granted}`);
    }
  });

  it('provisioning from several processes at once (the API and a worker starting together) succeeds for all and leaves one login', async () => {
    const role = `storekeep_api_t${randomBytes(3).toString('hex')}`;
    try {
      for (let round = 0; round < 3; round += 1) {
        const results = await Promise.allSettled(Array.from({ length: 8 }, () => provisionAppLogin(t.url, 'same-password', role)));
        const failed = results.filter((result) => result.status === 'rejected').map((result) => String((result as PromiseRejectedResult).reason));
        assert.deepEqual(failed, [], `round ${round}`);
      }
      const { rows } = await t.admin.query(`SELECT count(*)::int AS logins, bool_and(pg_has_role(rolname, 'storekeep_app', 'MEMBER')) AS member FROM pg_roles WHERE rolname = $1`, [role]);
      assert.deepEqual(rows, [{ logins: 1, member: true }]);
      const url = await provisionAppLogin(t.url, 'same-password', role);
      await checkAppLogin(url, 'DATABASE_APP_URL');
    } finally {
      await dropAppLogin(t.url, role);
    }
  });
});
