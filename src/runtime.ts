import { existsSync } from 'node:fs';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { Config } from './config.js';
import { randomBytes } from 'node:crypto';
import { checkAppLogin, provisionAppLogin } from './core/appLogin.js';
import { generateToken, hashToken } from './core/auth.js';
import { EmbeddedDatabaseInUse, embeddedOwner, runningEmbeddedPostgres, startEmbeddedPostgres } from './core/embeddedPostgres.js';
import type { Logger } from './core/logger.js';

export interface DatabaseHandle {
  /** Owner connection (migrations, maintenance). Requests use the app role on top of it. */
  url: string;
  embedded: boolean;
  stop(): Promise<void>;
}

const EMBEDDED_DATABASE = 'storekeep';

/** How long a worker or a check waits for the embedded server a starting `npm start` is bringing up. */
const ATTACH_WAIT_MS = 60_000;
/** How long one look at that server waits for it to let us in. */
const ATTACH_TRY_MS = 5_000;

/**
 * Whether the embedded server at `url` lets us into the storekeep database
 * (made by its owner after the server starts) within `timeoutMs`: a server
 * that takes the connection and never answers (stopped, or hung on its disk)
 * held the wait past its deadline, for ever.
 */
async function acceptsConnections(url: string, timeoutMs: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The embedded server of the data folder to attach to, or undefined (none:
 * start one). A server already up is attached to at once, as before. One
 * that another live storekeep process (`npm start`) is still bringing up —
 * initdb, start, its database — is waited for, up to ATTACH_WAIT_MS: a worker
 * started next to `npm start` at once used to find no server yet, try to start
 * its own, and be refused as a second owner (a message telling it to do what it
 * was doing). Not running when the wait ends: EmbeddedDatabaseInUse, naming
 * the process that claims the folder.
 */
async function attachableEmbeddedPostgres(dataDir: string, logger: Logger, waitMs: number): Promise<string | undefined> {
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    const running = await runningEmbeddedPostgres(dataDir);
    const owner = await embeddedOwner(dataDir);
    if (owner === undefined) return running;
    if (Date.now() > deadline) {
      if (running) return running;
      // Starting one of its own would be refused as a second owner, with a message telling it to run as the worker it is.
      throw new EmbeddedDatabaseInUse(
        `storekeep process ${owner} claims the embedded PostgreSQL under ${path.resolve(dataDir)} and has not started it ${waitMs / 1000} s later: ` +
          'see that process\'s log, and start this one again once it runs (or give this process DATABASE_URL)',
      );
    }
    if (running) {
      const url = new URL(running);
      url.pathname = `/${EMBEDDED_DATABASE}`;
      if (await acceptsConnections(url.toString(), Math.min(ATTACH_TRY_MS, Math.max(deadline - Date.now(), 1)))) return running;
    }
    if (!said) {
      logger.info({ dataDir, owner_pid: owner }, 'waiting for the embedded PostgreSQL another storekeep process is starting');
      said = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** DATABASE_URL when set; otherwise the embedded PostgreSQL under the data folder. */
export async function openDatabase(
  config: Config,
  logger: Logger,
  /** attachWaitMs: how long to wait for a server its owner is starting (default ATTACH_WAIT_MS; tests shorten it). */
  options: { attach?: boolean; attachWaitMs?: number } = {},
): Promise<DatabaseHandle> {
  if (config.databaseUrl) return { url: config.databaseUrl, embedded: false, stop: async () => {} };
  // A worker or a check next to a running `npm start` shares its embedded server (and never stops it).
  const running = options.attach ? await attachableEmbeddedPostgres(config.dataDir, logger, options.attachWaitMs ?? ATTACH_WAIT_MS) : undefined;
  if (running) {
    const url = new URL(running);
    url.pathname = `/${EMBEDDED_DATABASE}`;
    logger.info({ dataDir: config.dataDir }, 'using the embedded PostgreSQL already running');
    return { url: url.toString(), embedded: true, stop: async () => {} };
  }
  const server = await startEmbeddedPostgres({ dataDir: config.dataDir, logger, logFileSizeKb: config.embeddedLogFileMb * 1024, logFiles: config.embeddedLogFiles });
  try {
    const admin = new pg.Client(server.url);
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
  const url = new URL(server.url);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return { url: url.toString(), embedded: true, stop: () => server.stop() };
}

/**
 * The connection string request pools log in with (after migrating: the
 * login is a member of the storekeep_app role the migrations make):
 * DATABASE_APP_URL when set; on the embedded server, the storekeep_api login
 * made here, whose password stays in <data dir>/pg-app-password; otherwise
 * DATABASE_URL's own login, which the pools switch to storekeep_app — said
 * once as a warning, since such a session can switch back.
 */
export async function appDatabaseUrl(config: Config, database: DatabaseHandle, logger: Logger): Promise<string> {
  if (config.databaseAppUrl) {
    await checkAppLogin(config.databaseAppUrl, 'DATABASE_APP_URL');
    return config.databaseAppUrl;
  }
  if (database.embedded) return provisionAppLogin(database.url, await embeddedAppPassword(config.dataDir));
  logger.warn(
    'DATABASE_APP_URL is not set: request pools log in as the DATABASE_URL role and switch to storekeep_app, and a session could switch back. ' +
      'Set DATABASE_APP_URL to a login role granted storekeep_app and nothing else.',
  );
  return database.url;
}

/**
 * The embedded server's app login password: made once, then read. Written
 * whole to a file of its own and then linked into place, which fails if the
 * name exists — so the API and a worker starting together agree on one
 * password, and a start killed mid-write never leaves an empty one.
 */
export async function embeddedAppPassword(dataDir: string): Promise<string> {
  const file = path.join(path.resolve(dataDir), 'pg-app-password');
  const draft = `${file}.${randomBytes(6).toString('hex')}`;
  await writeFile(draft, randomBytes(18).toString('base64url'), { mode: 0o600 });
  try {
    await link(draft, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await unlink(draft);
  }
  const password = (await readFile(file, 'utf8')).trim();
  // The file is never written empty (see above), so someone emptied it; an
  // empty PASSWORD would leave the login without one.
  if (password === '') throw new Error(`${file} is empty: delete it and start again, and a new password is made`);
  return password;
}

/**
 * The operator token. STOREKEEP_ROOT_TOKEN wins; otherwise one is generated on
 * the first start against a database, its hash stored there (so every process
 * accepts it) and the token itself written to <data dir>/root-token and printed once.
 */
export async function operatorTokenHashes(config: Config, adminUrl: string, logger: Logger): Promise<{ hashes: Buffer[]; generated?: string; file: string }> {
  const file = path.join(config.dataDir, 'root-token');
  if (config.rootToken) return { hashes: [hashToken(config.rootToken)], file };
  const client = new pg.Client(adminUrl);
  await client.connect();
  try {
    // Two processes starting at once on a fresh database (replicas) take
    // turns: each made a token of its own, accepted by itself only, and the
    // second overwrote the first's file. The file is written before the
    // commit, so a token is never stored that no file holds.
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('storekeep.operatorToken'))");
    const existing = await client.query<{ token_hash: Buffer }>('SELECT token_hash FROM operator_tokens');
    if (existing.rows.length > 0) {
      await client.query('COMMIT');
      return { hashes: existing.rows.map((row) => row.token_hash), file };
    }
    const token = generateToken();
    await client.query('INSERT INTO operator_tokens (token_hash) VALUES ($1)', [hashToken(token)]);
    await mkdir(config.dataDir, { recursive: true });
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    await client.query('COMMIT');
    logger.info({ file }, 'generated the operator token');
    return { hashes: [hashToken(token)], generated: token, file };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

export async function readOperatorTokenFile(file: string): Promise<string | undefined> {
  return existsSync(file) ? (await readFile(file, 'utf8')).trim() : undefined;
}
