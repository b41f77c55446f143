import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PG_MIGRATE_LOCK_ID } from 'node-pg-migrate';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { freePort, root } from './support/processes.js';
import { waitFor } from './support/wait.js';

/**
 * What an operator sees when the service cannot start or `storekeep check`
 * cannot run: one line that says what is wrong and a non-zero exit — never a
 * stack trace, never the database password.
 */
const PASSWORD = 'hunter2-do-not-print';

function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn', WORKER_METRICS_PORT: '0', ...env };
    const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), ...args], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`storekeep ${args.join(' ')} still running after ${timeoutMs} ms: ${output}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function assertOneClearLine(output: string, pattern: RegExp): void {
  assert.match(output, pattern);
  assert.doesNotMatch(output, /\n\s+at /, `a refusal, not a crash: no stack trace\n${output}`);
  assert.ok(!output.includes(PASSWORD), `the password is not printed\n${output}`);
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  return freePort();
}

describe('storekeep given an option it does not take', { timeout: 120_000 }, () => {
  it('exits 2 with one line naming the option, before it opens any database — `storekeep serve --port 9000` served on 8080 and `check --jsn` printed text, both silently', async () => {
    // A database nothing listens on: a command that went on would say it cannot reach it.
    const url = `postgres://storekeep:${PASSWORD}@127.0.0.1:${await closedPort()}/storekeep`;
    const cases: Array<[string[], RegExp]> = [
      [['serve', '--port', '9000'], /^storekeep serve: unknown option "--port" \(settings are environment variables, such as PORT: see the README's Configuration\)$/m],
      [['start', '--verbose'], /^storekeep start: unknown option "--verbose"/m],
      [['migrate', '--force'], /^storekeep migrate: unknown option "--force"/m],
      [['worker', '-v'], /^storekeep worker: unknown option "-v"/m],
      [['check', '--jsn'], /^storekeep check: unknown option "--jsn" \(it takes --timeout, --json\)$/m],
      [['provider-sim', '--fail-rat', '0.5'], /^storekeep provider-sim: unknown option "--fail-rat" \(it takes --port, --webhook-url, --latency-ms, --fail-rate, --duplicate-webhooks, --out-of-order-webhooks, --no-webhooks\)$/m],
      [['provider-sim', '--port'], /^storekeep provider-sim: --port needs a value$/m],
    ];
    // (the commands run side by side: each is a process of its own, refused before any database)
    const results = await Promise.all(cases.map(([args]) => runCli(args, { DATABASE_URL: url, FULFILMENT_WEBHOOK_SECRET: 'dev-secret' })));
    for (const [i, [args, pattern]] of cases.entries()) {
      const result = results[i]!;
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.output}`);
      assertOneClearLine(result.output, pattern);
      assert.equal(result.output.trim().split('\n').length, 1, `one line: ${result.output}`);
      assert.doesNotMatch(result.output, /database/, `refused before any database: ${result.output}`);
    }
  });
});

describe('storekeep asked for help after a command', { timeout: 60_000 }, () => {
  it('prints the usage and exits 0 (`storekeep check --help` was refused as an unknown option)', async () => {
    const url = `postgres://storekeep:${PASSWORD}@127.0.0.1:${await closedPort()}/storekeep`;
    const commands = [['check', '--help'], ['start', '-h'], ['provider-sim', '--help']];
    // (side by side: each is a process of its own)
    const results = await Promise.all(commands.map((args) => runCli(args, { DATABASE_URL: url, FULFILMENT_WEBHOOK_SECRET: 'dev-secret' })));
    for (const [i, args] of commands.entries()) {
      const result = results[i]!;
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.output}`);
      assert.match(result.output, /^usage: storekeep <command>/m, `${args.join(' ')}: ${result.output}`);
    }
  });
});

describe('storekeep cannot reach its database', { timeout: 120_000 }, () => {
  it('check exits 2 (1 means findings), serve, migrate and worker exit non-zero — each with one line naming the database problem', async () => {
    const url = `postgres://storekeep:${PASSWORD}@127.0.0.1:${await closedPort()}/storekeep`;
    // (the commands run side by side: each is a process of its own, and none reaches a database)
    const commands = ['serve', 'migrate', 'worker'];
    const [check, json, unknownHost, ...others] = await Promise.all([
      runCli(['check'], { DATABASE_URL: url }),
      runCli(['check', '--json'], { DATABASE_URL: url }),
      runCli(['check'], { DATABASE_URL: `postgres://storekeep:${PASSWORD}@no-such-host.invalid:5432/storekeep` }),
      ...commands.map((command) => runCli([command], { DATABASE_URL: url })),
    ]);
    assert.equal(check!.code, 2, check!.output);
    assertOneClearLine(check!.output, /^storekeep: cannot reach the database: .*ECONNREFUSED/m);
    assert.equal(json!.code, 2, json!.output);
    for (const [i, command] of commands.entries()) {
      const result = others[i]!;
      assert.notEqual(result.code, 0, `${command}: ${result.output}`);
      assertOneClearLine(result.output, /^storekeep: cannot reach the database: .*ECONNREFUSED/m);
    }
    assert.equal(unknownHost!.code, 2, unknownHost!.output);
    assertOneClearLine(unknownHost!.output, /^storekeep: cannot reach the database: .*no-such-host\.invalid/m);
  });
});

describe('storekeep with a database that refuses the login, or a port it cannot listen on', { timeout: 120_000 }, () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('check exits 0 on a clean database and 2 when the login is refused; serve says so in one line', async () => {
    const clean = await runCli(['check'], { DATABASE_URL: t.url });
    assert.equal(clean.code, 0, clean.output);
    const wrong = new URL(t.url);
    wrong.password = PASSWORD;
    const refused = await runCli(['check'], { DATABASE_URL: wrong.toString() });
    assert.equal(refused.code, 2, refused.output);
    assertOneClearLine(refused.output, /^storekeep: the database refused the connection: password authentication failed/m);
    const serve = await runCli(['serve'], { DATABASE_URL: wrong.toString(), PORT: String(await freePort()) });
    assert.notEqual(serve.code, 0, serve.output);
    assertOneClearLine(serve.output, /^storekeep: the database refused the connection: password authentication failed/m);
  });

  it('serve on a database whose operator token is in no file of this data folder (a new host, a restore) says so and what to do — it said nothing of the token', async () => {
    /** What serve prints once it listens; then it is stopped. */
    const banner = async (dataDir: string) => {
      const port = String(await freePort());
      return new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'serve'], {
          cwd: root,
          env: { ...process.env, LOG_LEVEL: 'warn', DATABASE_URL: t.url, DATABASE_APP_URL: t.appUrl, STOREKEEP_DATA_DIR: dataDir, PORT: port },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('API docs:')) setTimeout(() => child.kill('SIGTERM'), 200);
        });
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.on('error', reject);
        child.on('close', () => {
          clearTimeout(timer);
          resolve(output);
        });
      });
    };
    const first = mkdtempSync(path.join(os.tmpdir(), 'storekeep-token-first-'));
    const second = mkdtempSync(path.join(os.tmpdir(), 'storekeep-token-second-'));
    try {
      assert.match(await banner(first), /operator token: {2}sk_\S+ {3}\(also saved to /);
      const again = await banner(second);
      assert.match(again, new RegExp(`operator token: {2}not in ${second}/root-token: the database keeps only its hash — copy that file from where it was made, or set STOREKEEP_ROOT_TOKEN \\(it replaces the token\\)`), again);
    } finally {
      rmSync(first, { recursive: true, force: true });
      rmSync(second, { recursive: true, force: true });
    }
  });

  it('serve on a PORT another process holds, or a HOST that is not this machine: one line naming the setting, non-zero exit', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const env = { DATABASE_URL: t.url, DATABASE_APP_URL: t.appUrl, STOREKEEP_ROOT_TOKEN: 'startup-failures-operator-token' };
      const busy = await runCli(['serve'], { ...env, PORT: String(port) });
      assert.notEqual(busy.code, 0, busy.output);
      assertOneClearLine(busy.output, new RegExp(`^storekeep: cannot listen on 127\\.0\\.0\\.1:${port} \\(PORT, HOST\\): the port is already in use`, 'm'));
      // 192.0.2.1 (TEST-NET-1) is an address of no machine
      const foreign = await runCli(['serve'], { ...env, PORT: String(await freePort()), HOST: '192.0.2.1' });
      assert.notEqual(foreign.code, 0, foreign.output);
      assertOneClearLine(foreign.output, /^storekeep: cannot listen on 192\.0\.2\.1:\d+ \(PORT, HOST\): HOST is not an address of this machine/m);
    } finally {
      holder.close();
    }
  });

  it('SIGTERM while start-up waits (here on another process\'s migration lock) stops it within seconds, saying so — it was ignored until the start finished, for ever if it never did', async () => {
    // Given another process migrating (it holds the migration lock) and the API starting behind it
    const holder = new pg.Client(t.url);
    await holder.connect();
    await holder.query(`SELECT pg_advisory_lock(${PG_MIGRATE_LOCK_ID})`);
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: t.url, DATABASE_APP_URL: t.appUrl, PORT: String(await freePort()), LOG_LEVEL: 'warn', STOREKEEP_ROOT_TOKEN: 'startup-failures-operator-token' };
    const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'serve'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await waitFor('the API to wait for the migration lock', async () => {
        // This file's database only: pg_locks is the whole server's, and another
        // test file may be waiting on an advisory lock of its own (the SIGTERM
        // then reached the API before it had even connected: exit, no line).
        const { rows } = await holder.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ${PG_MIGRATE_LOCK_ID} % 4294967296
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        );
        return rows.length > 0;
      }, 60_000, 100);
      // When it is told to stop
      child.kill('SIGTERM');
      // Then it stops within seconds, with one line saying the start was abandoned
      const code = await Promise.race([exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 30_000))]);
      assert.notEqual(code, 'running', `still running 30 s after SIGTERM: ${output}`);
      assert.notEqual(code, 0, output);
      assertOneClearLine(output, /^storekeep: start-up abandoned on SIGTERM/m);
      // and once the other process's migration ends, nothing of it lingers (its backend, blocked on the
      // lock, notices the closed connection only when it gets the lock, and then ends)
      await holder.query(`SELECT pg_advisory_unlock(${PG_MIGRATE_LOCK_ID})`);
      await waitFor('its backend to end', async () => {
        const { rows } = await holder.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = ${PG_MIGRATE_LOCK_ID} % 4294967296`);
        return rows.length === 0;
      }, 10_000, 100);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await holder.end();
    }
  });

});

describe('storekeep whose migration waits for a lock another session holds', { timeout: 120_000 }, () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t.drop();
  });

  it('migrate blocked behind a lock another session holds stops after STARTUP_LOCK_TIMEOUT_MS with one line naming the relation and the holder — it waited for ever — and applies nothing', async () => {
    // Given a session in psql holding a transaction open with the migration record locked (whatever the migrations are:
    // every start reads that table first). The lock wait of a migration itself, with its name: src/core/migrate.int.spec.ts.
    const admin = new pg.Client(t.url);
    const holder = new pg.Client({ connectionString: t.url, application_name: 'psql' });
    await admin.connect();
    await holder.connect();
    try {
      const recorded = async () => (await admin.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0].n as number;
      const before = await recorded();
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE');
      const pid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      // When it is migrated, with a lock timeout of 1 s
      const result = await runCli(['migrate'], { DATABASE_URL: t.url, STARTUP_LOCK_TIMEOUT_MS: '1000' }, 30_000);
      // Then it exits non-zero with one line saying what waited for what, and who holds it
      assert.notEqual(result.code, 0, result.output);
      assertOneClearLine(
        result.output,
        new RegExp(`^storekeep: a migration waited more than 1 s \\(STARTUP_LOCK_TIMEOUT_MS\\) for an? \\w+ lock on relation schema_migrations held by pid ${pid} \\(application psql,.*nothing of it was applied`, 'm'),
      );
      // and once the session is gone, it runs (nothing left to apply) and the record is as it was
      await holder.query('ROLLBACK');
      const again = await runCli(['migrate'], { DATABASE_URL: t.url, STARTUP_LOCK_TIMEOUT_MS: '1000' }, 60_000);
      assert.equal(again.code, 0, again.output);
      assert.equal(await recorded(), before);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
      await admin.end();
    }
  });
});

describe('storekeep whose STOREKEEP_DATA_DIR cannot be a folder', { timeout: 120_000 }, () => {
  it('start and check say so in one line naming the setting (they printed a mkdir stack trace); check exits 2', async () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'storekeep-data-dir-'));
    try {
      const file = path.join(scratch, 'a-file');
      writeFileSync(file, '');
      const start = await runCli(['start'], { PORT: String(await freePort()), STOREKEEP_DATA_DIR: file });
      assert.equal(start.code, 1, start.output);
      assertOneClearLine(start.output, /^storekeep: cannot use the data folder .*a-file \(STOREKEEP_DATA_DIR\): it is a file, not a folder$/m);
      const check = await runCli(['check'], { STOREKEEP_DATA_DIR: path.join(file, 'below') });
      assert.equal(check.code, 2, check.output);
      assertOneClearLine(check.output, /^storekeep: cannot use the data folder .*a-file\/below \(STOREKEEP_DATA_DIR\): a part of its path is a file, not a folder$/m);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

/** A small tmpfs of our own at `dir` (root with mount rights: CI and the machines here), or why not. */
function mountTmpfs(dir: string, sizeKb: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `cannot mount a tmpfs here: ${(error as Error).message.split('\n')[0]}`;
  }
}

describe('storekeep whose data folder is on a full or read-only disk', { timeout: 180_000 }, () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'storekeep-disk-'));
  const cannotMount = mountTmpfs(scratch, 64 * 1024);
  /** Fills the tmpfs but for `leftBytes`. */
  const fill = (name: string, leftBytes: number) => {
    const free = Number(execFileSync('df', ['-B1', '--output=avail', scratch]).toString().trim().split('\n').at(-1));
    execFileSync('fallocate', ['-l', String(free - leftBytes), path.join(scratch, name)]);
  };
  after(() => {
    if (cannotMount === undefined) execFileSync('umount', ['-l', scratch]);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('start and check say so in one line naming STOREKEEP_DATA_DIR (they printed initdb\'s, chmod\'s or mkdir\'s stack trace), and leave no claim on the folder', { skip: cannotMount }, async () => {
    // A full disk: initdb cannot write the database (1 MiB left)
    fill('filler', 1024 * 1024);
    const full = path.join(scratch, 'full');
    const start = await runCli(['start'], { PORT: String(await freePort()), STOREKEEP_DATA_DIR: full });
    assert.equal(start.code, 1, start.output);
    assertOneClearLine(start.output, /^storekeep: cannot use the data folder .*\/full \(STOREKEEP_DATA_DIR\): the disk is full\b/m);
    assert.ok(!existsSync(path.join(full, 'pg-owner')), 'no claim left behind');
    // A database made, then the disk filled but for one page (the claim's): the server cannot start (pg_ctl said only "Examine the log output")
    rmSync(path.join(scratch, 'filler'));
    const made = path.join(scratch, 'made');
    assert.equal((await runCli(['migrate'], { STOREKEEP_DATA_DIR: made })).code, 0);
    fill('filler', 4096);
    const restart = await runCli(['start'], { PORT: String(await freePort()), STOREKEEP_DATA_DIR: made });
    assert.equal(restart.code, 1, restart.output);
    assertOneClearLine(restart.output, /^storekeep: cannot use the data folder .*\/made \(STOREKEEP_DATA_DIR\): the disk is full \(PostgreSQL: could not write lock file "postmaster.pid": No space left on device\)$/m);
    assert.ok(!existsSync(path.join(made, 'pg-owner')), 'no claim left behind');
    // A read-only disk: a folder on it, and one still to be made
    mkdirSync(path.join(scratch, 'kept'));
    execFileSync('mount', ['-o', 'remount,ro', scratch]);
    for (const folder of ['kept', 'new']) {
      const dataDir = path.join(scratch, folder);
      const started = await runCli(['start'], { PORT: String(await freePort()), STOREKEEP_DATA_DIR: dataDir });
      assert.equal(started.code, 1, started.output);
      assertOneClearLine(started.output, new RegExp(`^storekeep: cannot use the data folder .*/${folder} \\(STOREKEEP_DATA_DIR\\): it is on a read-only file system$`, 'm'));
      const check = await runCli(['check'], { STOREKEEP_DATA_DIR: dataDir });
      assert.equal(check.code, 2, check.output);
      assertOneClearLine(check.output, /^storekeep: cannot use the data folder .* \(STOREKEEP_DATA_DIR\): it is on a read-only file system$/m);
    }
  });
});

/** Every process whose command line names `dir` (initdb, postgres under a data folder). */
function processesNaming(dir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
      } catch {
        return false;
      }
    });
}

describe('storekeep whose first start lost power while it made the embedded database', { timeout: 180_000 }, () => {
  it('starts at the next start — it failed for good on the missing pg-password, with a stack trace, until someone removed the half-made database by hand', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-first-start-'));
    try {
      // Given a first start, killed with its initdb once initdb has begun writing the database (a power cut)
      const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'start'], {
        cwd: root,
        env: { ...process.env, LOG_LEVEL: 'warn', PORT: String(await freePort()), STOREKEEP_DATA_DIR: dataDir },
        stdio: 'ignore',
      });
      try {
        await waitFor('initdb writing the database', async () => readdirSync(dataDir).some((entry) => existsSync(path.join(dataDir, entry, 'PG_VERSION'))), 60_000, 10);
      } finally {
        child.kill('SIGKILL');
        for (const pid of processesNaming(dataDir)) process.kill(pid, 'SIGKILL');
      }
      // When it starts again, then it makes its database and runs
      const again = await runCli(['migrate'], { STOREKEEP_DATA_DIR: dataDir });
      assert.equal(again.code, 0, again.output);
      assert.match(again.output, /^applied: 0001_core/m);
    } finally {
      for (const pid of processesNaming(dataDir)) process.kill(pid, 'SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a database whose pg-password is gone is refused in one line saying what to do, not a stack trace', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-no-password-'));
    try {
      assert.equal((await runCli(['migrate'], { STOREKEEP_DATA_DIR: dataDir })).code, 0);
      rmSync(path.join(dataDir, 'pg-password'));
      const again = await runCli(['migrate'], { STOREKEEP_DATA_DIR: dataDir });
      assert.equal(again.code, 1, again.output);
      assertOneClearLine(again.output, /^storekeep: the embedded database under .* has no password file \(pg-password\)/m);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
