import pg from 'pg';
import { APP_ROLE } from './db.js';
import { PG, pgCode } from './pgErrors.js';

/** The role the API and the worker log in as for requests (embedded PostgreSQL; with DATABASE_URL, DATABASE_APP_URL names one). */
export const APP_LOGIN_ROLE = 'storekeep_api';

/**
 * Creates — or brings back to exactly this — a login role that is a member of
 * storekeep_app and nothing more (no superuser, no owner rights, no RLS
 * bypass), with this password, and returns `ownerUrl` logged in as it.
 *
 * Why: a request pool that logs in as the owner and switches to storekeep_app
 * (`-c role=storekeep_app`) is one `SET ROLE NONE` away from the owner — on
 * the embedded server a superuser — with row-level security, the append-only
 * triggers and the filesystem within reach of any statement that gets through.
 * Logged in as this role, the session has nowhere to switch back to.
 *
 * Roles belong to the whole server: runs for different databases of one
 * server share the role, so they must share its password (the embedded server
 * keeps it in its data folder; the test runner makes a role of its own).
 */
export async function provisionAppLogin(ownerUrl: string, password: string, role = APP_LOGIN_ROLE): Promise<string> {
  const client = new pg.Client(ownerUrl);
  await client.connect();
  try {
    const name = client.escapeIdentifier(role);
    try {
      await client.query(`CREATE ROLE ${name}`);
    } catch (error) {
      // Made before, or by another process starting at the same moment.
      if (pgCode(error) !== PG.DUPLICATE_OBJECT && pgCode(error) !== PG.UNIQUE_VIOLATION) throw error;
    }
    await client.query(
      `ALTER ROLE ${name} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${client.escapeLiteral(password)}`,
    );
    await client.query(`GRANT ${APP_ROLE} TO ${name}`);
  } finally {
    await client.end();
  }
  return loggedInAs(ownerUrl, role, password);
}

/**
 * Refuses a login that would take requests out of row-level security — a
 * superuser, a role that bypasses RLS or owns the tables, or one not granted
 * storekeep_app — saying which (DATABASE_APP_URL is checked at start-up).
 */
export async function checkAppLogin(url: string, setting: string): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query<{ login: string; superuser: boolean; bypassrls: boolean; owns: boolean; member: boolean }>(
      `SELECT r.rolname AS login, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
              EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = 'public' AND t.tableowner = r.rolname) AS owns,
              pg_has_role(r.oid, $1, 'MEMBER') AS member
       FROM pg_roles r WHERE r.rolname = session_user`,
      [APP_ROLE],
    );
    const login = rows[0]!;
    const why = login.superuser
      ? 'is a superuser'
      : login.bypassrls
        ? 'bypasses row-level security'
        : login.owns
          ? "owns the service's tables"
          : !login.member
            ? `is not granted ${APP_ROLE}`
            : undefined;
    if (why) throw new AppLoginRefused(`${setting} logs in as ${login.login}, which ${why}: give it a login role granted ${APP_ROLE} and nothing else`);
  } finally {
    await client.end();
  }
}

export class AppLoginRefused extends Error {}

/** `url` with another login. */
export function loggedInAs(url: string, role: string, password: string): string {
  const login = new URL(url);
  login.username = encodeURIComponent(role);
  login.password = encodeURIComponent(password);
  return login.toString();
}

/** Drops a login role made by provisionAppLogin (the test runner's own, at the end of a run). */
export async function dropAppLogin(ownerUrl: string, role: string): Promise<void> {
  const client = new pg.Client(ownerUrl);
  await client.connect();
  try {
    await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`);
  } finally {
    await client.end();
  }
}
