import pg from 'pg';
import { APP_ROLE } from './db.js';

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
    // Catalog rows are not updated under row locks: two sessions altering or
    // granting one role at once fail with "tuple concurrently updated". The
    // API and a worker starting together do exactly that, so they take turns.
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`storekeep.provisionAppLogin:${role}`]);
    const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
    if (rowCount === 0) await client.query(`CREATE ROLE ${name}`);
    await client.query(
      `ALTER ROLE ${name} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${client.escapeLiteral(password)}`,
    );
    await client.query(`GRANT ${APP_ROLE} TO ${name}`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
  return loggedInAs(ownerUrl, role, password);
}

/**
 * Refuses a login that could take requests out of row-level security — one
 * that is, or can become (through any chain of granted roles), a superuser, a
 * role that bypasses RLS, the tables' owner or one of the server-file roles;
 * one that can create roles (and so grant itself any of those); or one not
 * granted storekeep_app — saying which (DATABASE_APP_URL is checked at
 * start-up).
 */
export async function checkAppLogin(url: string, setting: string): Promise<void> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    // pg_has_role(…, 'MEMBER') follows memberships transitively, whatever
    // their INHERIT or SET options: a role one can only SET ROLE to is as
    // much within reach as one whose rights are inherited.
    const { rows } = await client.query<{ role: string; login: boolean; superuser: boolean; bypassrls: boolean; createrole: boolean; owns: boolean; files: boolean }>(
      `SELECT r.rolname AS role, r.rolname = session_user AS login, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
              r.rolcreaterole AS createrole,
              EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = 'public' AND t.tableowner = r.rolname) AS owns,
              r.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program') AS files
       FROM pg_roles r
       WHERE r.rolname = session_user OR pg_has_role(session_user, r.oid, 'MEMBER')
       ORDER BY r.rolname = session_user DESC, r.rolname`,
    );
    const login = rows.find((row) => row.login)!;
    const member = rows.some((row) => row.role === APP_ROLE);
    let why: string | undefined;
    for (const row of rows) {
      const what = row.superuser
        ? 'is a superuser'
        : row.bypassrls
          ? 'bypasses row-level security'
          : row.owns
            ? "owns the service's tables"
            : row.files
              ? "reads or writes the server's files"
              : row.createrole
                ? 'can create and grant roles'
                : undefined;
      if (what) {
        why = row.login ? what : `can become ${row.role}, which ${what}`;
        break;
      }
    }
    why ??= member ? undefined : `is not granted ${APP_ROLE}`;
    if (why) throw new AppLoginRefused(`${setting} logs in as ${login.role}, which ${why}: give it a login role granted ${APP_ROLE} and nothing else`);
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
