/**
 * `npm test`: starts a PostgreSQL for the run (the embedded one, or the server
 * in DATABASE_URL), migrates a template database once, then runs every
 * `*.spec.ts` file with node:test. Each test file clones its own database from
 * the template (CREATE DATABASE … TEMPLATE, ~100 ms), so files run in parallel
 * without seeing each other's rows.
 *
 *   npm test                      all tests
 *   npm test -- src/sales         only files whose path contains "src/sales"
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/core/embeddedPostgres.js';
import { buildForTests, builtPath } from './build.js';
import { dropAppLogin, provisionAppLogin } from '../src/core/appLogin.js';
import { migrate } from '../src/core/migrate.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function findSpecs(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry.startsWith('.')) continue;
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) found.push(...findSpecs(full));
    else if (entry.endsWith('.spec.ts')) found.push(full);
  }
  return found;
}

/** A run killed before its clean-up leaves its folder of JavaScript behind: removed when its process is gone. */
function removeBuildsOfEndedRuns(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = /^test-(\d+)$/.exec(entry)?.[1];
    if (pid === undefined || isRunning(Number(pid))) continue;
    rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const specs = ['src', 'test']
    .flatMap((dir) => findSpecs(path.join(root, dir)))
    .map((file) => path.relative(root, file))
    .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
    // The end-to-end files first: each runs the real CLI in processes of its
    // own for 35–55 s; sorted by path (test/… after src/…) they started last
    // and ended the run, the last of them with fewer files beside it than the
    // concurrency allows (the gain was not measurable on this noisy machine).
    // (test/runFiles.ts keeps this order.)
    .sort((a, b) => Number(b.includes('.e2e.')) - Number(a.includes('.e2e.')) || a.localeCompare(b));
  if (specs.length === 0) {
    process.stderr.write(`no test files match ${filters.join(' ')}\n`);
    return 1;
  }

  let serverUrl: string;
  let stopServer = async () => {};
  const dataDir = path.join(os.tmpdir(), `storekeep-test-${process.pid}`);
  if (process.env.DATABASE_URL) {
    serverUrl = process.env.DATABASE_URL;
    process.stdout.write(`tests use the PostgreSQL server in DATABASE_URL\n`);
  } else {
    const started = Date.now();
    // Durability settings off: tests never survive a crash of the test database.
    const server = await startEmbeddedPostgres({
      dataDir,
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '400' },
    });
    serverUrl = server.url;
    stopServer = async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    };
    process.stdout.write(`tests use an embedded PostgreSQL (started in ${Date.now() - started} ms)\n`);
  }

  const template = `sk_tpl_${randomBytes(4).toString('hex')}`;
  // Inside the repository, so that bare imports resolve from its node_modules.
  const buildDir = path.join(root, '.build', `test-${process.pid}`);
  removeBuildsOfEndedRuns(path.dirname(buildDir));
  const admin = new pg.Client(serverUrl);
  await admin.connect();
  let exitCode = 1;
  let dropRole = async () => {};
  try {
    await admin.query(`CREATE DATABASE ${template}`);
    const templateUrl = new URL(serverUrl);
    templateUrl.pathname = `/${template}`;
    await migrate(templateUrl.toString());
    // The app pools log in as a role of this run's own (roles belong to the
    // whole server, which another run may share): a member of storekeep_app only, like the service's.
    const appRole = `storekeep_api_${randomBytes(4).toString('hex')}`;
    const appPassword = randomBytes(18).toString('base64url');
    await provisionAppLogin(templateUrl.toString(), appPassword, appRole);
    dropRole = () => dropAppLogin(serverUrl, appRole);

    const built = Date.now();
    const count = await buildForTests(root, buildDir);
    process.stdout.write(`tests run as JavaScript (${count} files transformed in ${Date.now() - built} ms)\n`);
    const concurrency = process.env.TEST_CONCURRENCY ?? '3';
    const child = spawn(
      process.execPath,
      ['--enable-source-maps', builtPath(root, buildDir, 'test/runFiles.ts'), concurrency, ...specs.map((spec) => builtPath(root, buildDir, spec))],
      {
        cwd: root,
        stdio: 'inherit',
        env: {
          ...process.env,
          STOREKEEP_TEST_SERVER_URL: serverUrl,
          STOREKEEP_TEST_TEMPLATE: template,
          STOREKEEP_TEST_APP_ROLE: appRole,
          STOREKEEP_TEST_APP_PASSWORD: appPassword,
          LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
        },
      },
    );
    exitCode = await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  } finally {
    // Databases cloned by the test files carry the template's name as prefix.
    const leftovers = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${template}%`]);
    for (const { datname } of leftovers.rows) {
      await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`).catch(() => undefined);
    }
    await dropRole().catch(() => undefined);
    await admin.end();
    await stopServer();
    rmSync(buildDir, { recursive: true, force: true });
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
