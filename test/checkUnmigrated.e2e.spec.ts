import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { runStorekeepCheck } from './support/processes.js';

/**
 * `storekeep check` exits 1 on findings and 2 when it could not check at all.
 * A database the checks cannot read — not migrated (a DATABASE_URL naming the
 * wrong database, a fresh data directory), or missing migrations this version
 * has — is "we do not know", not "the data is wrong": every check would fail
 * and be reported as a check_failed finding, exit 1.
 */
const runCheck = (databaseUrl: string) => runStorekeepCheck(databaseUrl);

describe('storekeep check on a database that is not migrated', { timeout: 120_000 }, () => {
  let t: TestDatabase;
  let emptyUrl: string;
  let emptyName: string;
  const server = () => process.env.STOREKEEP_TEST_SERVER_URL!;

  before(async () => {
    t = await createTestDatabase();
    emptyName = `storekeep_empty_${randomBytes(5).toString('hex')}`;
    const control = new pg.Client(server());
    await control.connect();
    try {
      await control.query(`CREATE DATABASE ${emptyName}`);
    } finally {
      await control.end();
    }
    const url = new URL(server());
    url.pathname = `/${emptyName}`;
    emptyUrl = url.toString();
  });
  after(async () => {
    await t.drop();
    const control = new pg.Client(server());
    await control.connect();
    try {
      await control.query(`DROP DATABASE IF EXISTS ${emptyName} WITH (FORCE)`);
    } finally {
      await control.end();
    }
  });

  it('an empty database (never migrated): exit 2 with one line saying so, no findings on stdout', async () => {
    const result = await runCheck(emptyUrl);
    assert.equal(result.code, 2, `${result.stdout}${result.stderr}`);
    assert.equal(result.stdout, '', result.stdout);
    assert.match(result.stderr, /^storekeep: the database is not migrated: \d+ migrations? not applied \(first: 0001_core\); run storekeep migrate$/m, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  });

  it('a database missing the latest migration: exit 2 naming it; migrated again, exit 0', async () => {
    const latest = (await t.admin.query<{ name: string }>(`SELECT name FROM schema_migrations ORDER BY name DESC LIMIT 1`)).rows[0]!.name;
    await t.admin.query(`DELETE FROM schema_migrations WHERE name = $1`, [latest]);
    const result = await runCheck(t.url);
    assert.equal(result.code, 2, `${result.stdout}${result.stderr}`);
    assert.equal(result.stdout, '', result.stdout);
    assert.match(result.stderr, new RegExp(`^storekeep: the database is not migrated: 1 migration not applied \\(first: ${latest}\\); run storekeep migrate$`, 'm'), result.stderr);
    await t.admin.query(`INSERT INTO schema_migrations (name, run_on) VALUES ($1, now())`, [latest]);
    const clean = await runCheck(t.url);
    assert.equal(clean.code, 0, `${clean.stdout}${clean.stderr}`);
  });
});
