import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createLogger } from './logger.js';
import { EmbeddedDatabaseInUse, postmasterAlive, processAlive, startEmbeddedPostgres, withPrivateTmpdir } from './embeddedPostgres.js';

/**
 * The owner's watch period in the tests that wait on the watch (its default is
 * 1 s): they wait a number of periods, which need not be seconds.
 */
const WATCH_MS = 250;

describe('embedded PostgreSQL: the superuser password never sits where others can read it', () => {
  it('withPrivateTmpdir: os.tmpdir() is a directory others cannot list, cleared of what a killed start left, removed after', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'storekeep-tmpdir-'));
    try {
      const systemTmp = os.tmpdir();
      mkdirSync(path.join(root, 'init-tmp'));
      writeFileSync(path.join(root, 'init-tmp', 'pg-password-left-by-a-kill'), 'secret');
      const seen = await withPrivateTmpdir(root, async () => ({ tmp: os.tmpdir(), mode: statSync(os.tmpdir()).mode & 0o777, files: readdirSync(os.tmpdir()) }));
      assert.deepEqual(seen, { tmp: path.join(root, 'init-tmp'), mode: 0o711, files: [] });
      assert.equal(os.tmpdir(), systemTmp, 'restored');
      assert.equal(existsSync(path.join(root, 'init-tmp')), false, 'removed');
      await assert.rejects(withPrivateTmpdir(root, async () => Promise.reject(new Error('initdb failed'))), /initdb failed/);
      assert.equal(os.tmpdir(), systemTmp, 'restored after a failure too');
      // Two at once in one process take turns: each sees its own directory, and the system's is back after both.
      const other = mkdtempSync(path.join(systemTmp, 'storekeep-tmpdir-'));
      try {
        const slow = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
        const seenBoth = await Promise.all([
          withPrivateTmpdir(root, async () => {
            const before = os.tmpdir();
            await slow(50);
            return [before, os.tmpdir()];
          }),
          withPrivateTmpdir(other, async () => [os.tmpdir()]),
        ]);
        assert.deepEqual(seenBoth, [[path.join(root, 'init-tmp'), path.join(root, 'init-tmp')], [path.join(other, 'init-tmp')]]);
        assert.equal(os.tmpdir(), systemTmp, 'restored after both');
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a first start writes no password file into the system temporary directory while initdb runs', { timeout: 120_000 }, async () => {
    const systemTmp = os.tmpdir();
    const dataDir = mkdtempSync(path.join(systemTmp, 'storekeep-initdb-'));
    const passwordFiles = () => readdirSync(systemTmp).filter((name) => name.startsWith('pg-password-'));
    const before = new Set(passwordFiles());
    const seen = new Set<string>();
    const watch = setInterval(() => {
      for (const name of passwordFiles()) if (!before.has(name)) seen.add(name);
    }, 2);
    try {
      const server = await startEmbeddedPostgres({ dataDir });
      await server.stop();
    } finally {
      clearInterval(watch);
      rmSync(dataDir, { recursive: true, force: true });
    }
    assert.deepEqual([...seen], []);
  });
});

describe('embedded PostgreSQL: a stale postmaster.pid', () => {
  it('naming a pid that another program now has (after a reboot or a container restart): that process is left alone and the server starts', { timeout: 120_000 }, async () => {
    // Given a data folder whose server was stopped, and a postmaster.pid left behind naming a live process that is not PostgreSQL
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-stalepid-'));
    const bystander = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      const first = await startEmbeddedPostgres({ dataDir });
      const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
      const lines = readFileSync(pidFile, 'utf8').split('\n');
      await first.stop();
      lines[0] = String(bystander.pid);
      writeFileSync(pidFile, lines.join('\n'));

      // When the service starts on it again (as root, the server runs as another OS user and
      // starts; as the bystander's own user, PostgreSQL itself refuses a lock file naming a live process)
      try {
        const second = await startEmbeddedPostgres({ dataDir });
        await second.stop();
      } catch (error) {
        assert.match((error as Error).message, /lock file .*postmaster\.pid.* already exists/);
      }

      // Then the other program was not signalled
      assert.equal(bystander.exitCode, null);
      assert.equal(bystander.signalCode, null);
      assert.ok(processAlive(bystander.pid!));
    } finally {
      bystander.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('postmasterAlive: only a postgres serving this data folder, not another PostgreSQL (the machine\'s own server) whose pid is in the file', async () => {
    // A process whose command line looks like a postgres of another data folder (node, run as "postgres")
    const bin = mkdtempSync(path.join(os.tmpdir(), 'storekeep-fakepg-'));
    symlinkSync(process.execPath, path.join(bin, 'postgres'));
    const ours = path.join(bin, 'ours', 'pg');
    const other = spawn(path.join(bin, 'postgres'), ['-e', 'setInterval(() => {}, 1000)', '--', '-D', path.join(bin, 'other', 'pg'), '-p', '5432'], { stdio: 'ignore' });
    const mine = spawn(path.join(bin, 'postgres'), ['-e', 'setInterval(() => {}, 1000)', '--', '-D', ours, '-p', '5433'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(postmasterAlive(other.pid!, ours), false, 'another data folder\'s server');
      assert.equal(postmasterAlive(mine.pid!, ours), true, 'this data folder\'s server');
      assert.equal(postmasterAlive(mine.pid!, `${ours}/`), true, 'the same folder, written differently');
      assert.equal(postmasterAlive(process.pid, ours), false, 'a process of another program');
    } finally {
      other.kill('SIGKILL');
      mine.kill('SIGKILL');
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

describe('embedded PostgreSQL: a stale pg-owner claim', () => {
  it('naming this very process\'s pid (a container restarted after a kill: the service gets the same pid each time) is taken as stale, and the server starts', { timeout: 120_000 }, async () => {
    // Given a data folder whose owner was killed (its pg-owner left behind), and this process now has the pid it named
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-samepid-'));
    try {
      const first = await startEmbeddedPostgres({ dataDir });
      await first.stop();
      writeFileSync(path.join(dataDir, 'pg-owner'), `${process.pid}\n`);

      // When the service starts on it again
      const second = await startEmbeddedPostgres({ dataDir });
      try {
        // Then it owns the server, and a second start in this process while it runs is still refused
        assert.equal(readFileSync(path.join(dataDir, 'pg-owner'), 'utf8').trim(), String(process.pid));
        await assert.rejects(startEmbeddedPostgres({ dataDir }), (error: Error) => error instanceof EmbeddedDatabaseInUse);
      } finally {
        await second.stop();
      }
      assert.equal(existsSync(path.join(dataDir, 'pg-owner')), false, 'the claim is given up on stop');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('embedded PostgreSQL: a restart keeps its port', () => {
  it('a worker or check attached to the server (they keep its address) reconnects after the API restarts it, instead of knocking on a port nobody listens on for good', { timeout: 120_000 }, async () => {
    // Given an embedded server, and a pool of an attached process (a worker) made while it ran
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-sameport-'));
    try {
      const first = await startEmbeddedPostgres({ dataDir });
      const attached = new pg.Pool({ connectionString: first.url, max: 1 });
      attached.on('error', () => undefined);
      try {
        assert.equal((await attached.query('SELECT 1 AS one')).rows[0].one, 1);

        // When the API stops it and starts it again (a restart, a deploy)
        await first.stop();
        await assert.rejects(attached.query('SELECT 1'));
        const second = await startEmbeddedPostgres({ dataDir });
        try {
          // Then it listens where it did, and the attached pool works again
          assert.equal(second.port, first.port);
          assert.equal((await attached.query('SELECT 2 AS two')).rows[0].two, 2);
        } finally {
          await second.stop();
        }
      } finally {
        await attached.end();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('embedded PostgreSQL: stopping a server that already stopped', () => {
  for (const [how, signal] of [['shut down (SIGINT)', 'SIGINT'], ['killed (SIGKILL)', 'SIGKILL']] as const) {
    it(`one whose postmaster was ${how} under the service: stop() resolves and gives up the claim — a SIGTERM of the API then exited 1 with "shutdown failed" and a pg_ctl stack`, { timeout: 120_000 }, async () => {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-gone-'));
      try {
        const server = await startEmbeddedPostgres({ dataDir });
        const pid = Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
        process.kill(pid, signal);
        while (processAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 50));
        await server.stop();
        assert.equal(existsSync(path.join(dataDir, 'pg-owner')), false, 'the claim is given up');
        // and the next start finds the folder usable
        const next = await startEmbeddedPostgres({ dataDir });
        await next.stop();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('embedded PostgreSQL: a server that stops under the service', () => {
  for (const [how, signal] of [['killed (SIGKILL, as the OOM killer does)', 'SIGKILL'], ['shut down by hand (SIGINT)', 'SIGINT']] as const) {
    it(`one whose postmaster was ${how} is started again on its port by its owner, and pools reconnect — it stayed down, the API answering 503 with /healthz 200, until someone restarted the whole service`, { timeout: 120_000 }, async () => {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-heal-'));
      try {
        const server = await startEmbeddedPostgres({ dataDir, watchIntervalMs: WATCH_MS });
        const pool = new pg.Pool({ connectionString: server.url, max: 1 });
        pool.on('error', () => undefined);
        try {
          assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1);
          const pid = Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);

          // When the postmaster goes away under the service
          process.kill(pid, signal);
          while (processAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 50));

          // Then, within seconds, a new postmaster serves the same folder on the same port
          const deadline = Date.now() + 60_000;
          let answered: number | undefined;
          while (answered === undefined && Date.now() < deadline) {
            answered = await pool.query('SELECT 2 AS two').then((result) => result.rows[0].two as number, () => undefined);
            if (answered === undefined) await new Promise((resolve) => setTimeout(resolve, 250));
          }
          assert.equal(answered, 2, 'the server is back and the pool reconnected');
          const next = Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
          assert.notEqual(next, pid);
          assert.ok(postmasterAlive(next, path.join(dataDir, 'pg')));

          // and the owner's stop stops that one, for good
          await pool.end();
          await server.stop();
          assert.equal(processAlive(next), false, 'stopped');
          await new Promise((resolve) => setTimeout(resolve, 4 * WATCH_MS)); // longer than the watch's period
          assert.equal(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), false, 'not started again after the stop');
        } finally {
          await pool.end().catch(() => undefined);
          await server.stop();
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('embedded PostgreSQL: stopped while its owner starts it again', () => {
  for (const signal of ['SIGINT', 'SIGKILL'] as const) {
    it(`stop() during a start again (its postmaster stopped by ${signal} just before) waits for that start and stops what it started: no postmaster left, none started after, the claim released`, { timeout: 120_000 }, async () => {
      const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-heal-stop-'));
      const pgData = path.join(dataDir, 'pg');
      const postmasterPid = () => (existsSync(path.join(pgData, 'postmaster.pid')) ? Number(readFileSync(path.join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]) : undefined);
      let healing!: () => void;
      const healStarted = new Promise<void>((resolve) => (healing = resolve));
      const logger = createLogger('info', 'storekeep', {
        write: (line: string) => {
          if (line.includes('starting it again')) healing();
        },
      });
      const keepAlive = setInterval(() => undefined, 1_000); // the watch's own timer does not keep a process alive
      try {
        const server = await startEmbeddedPostgres({ dataDir, logger, watchIntervalMs: WATCH_MS });
        try {
          const killed = postmasterPid()!;
          process.kill(killed, signal);
          await healStarted;
        } finally {
          await server.stop();
        }
        const left = postmasterPid();
        assert.ok(left === undefined || !processAlive(left), `no postmaster left running (${left})`);
        await new Promise((resolve) => setTimeout(resolve, 4 * WATCH_MS)); // longer than the watch's period
        const later = postmasterPid();
        assert.ok(later === undefined || !processAlive(later), `none started after the stop (${later})`);
        assert.equal(existsSync(path.join(dataDir, 'pg-owner')), false, 'the claim is released');
      } finally {
        clearInterval(keepAlive);
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('embedded PostgreSQL: its log is bounded', () => {
  /** The server's log files under `<pgData>/log`, oldest first, with their sizes. */
  const logFiles = (pgData: string) =>
    (existsSync(path.join(pgData, 'log')) ? readdirSync(path.join(pgData, 'log')).sort() : []).map((name) => ({ name, bytes: statSync(path.join(pgData, 'log', name)).size }));

  it('the server writes to files under pg/log that rotate at the size given, the oldest removed past the number given, the newest lines kept — server.log grew for ever (a year of a shop filled its disk)', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-logrotate-'));
    const pgData = path.join(dataDir, 'pg');
    const fileKb = 64;
    /** A database made on a machine in New York (initdb writes the machine's zone as log_timezone). */
    const madeInNewYork = async () => {
      const zone = process.env.TZ;
      process.env.TZ = 'America/New_York';
      try {
        return await startEmbeddedPostgres({ dataDir, logFileSizeKb: fileKb, logFiles: 3 });
      } finally {
        if (zone === undefined) delete process.env.TZ;
        else process.env.TZ = zone;
      }
    };
    try {
      const server = await madeInNewYork();
      const client = new pg.Client(server.url);
      try {
        await client.connect();
        // When the server writes ten times a file's worth of log, a second apart (a file is named by the second it began:
        // PostgreSQL can start a new one once the second has changed), and then one last line
        for (let batch = 1; batch <= 6; batch++) {
          await client.query(`DO $$ BEGIN FOR i IN 1..200 LOOP RAISE LOG 'rotation batch ${batch} line % %', i, repeat('x', 300); END LOOP; END $$`);
          await client.query('SELECT pg_sleep(1.1)');
        }
        await client.query(`DO $$ BEGIN RAISE LOG 'rotation last line'; END $$`);

        // Then, within seconds, the folder holds at most 3 files, and they hold the newest lines
        const deadline = Date.now() + 15_000;
        let files = logFiles(pgData);
        const kept = () => files.map((file) => readFileSync(path.join(pgData, 'log', file.name), 'utf8')).join('');
        while ((files.length > 3 || !kept().includes('rotation last line')) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 200));
          files = logFiles(pgData);
        }
        assert.ok(files.length >= 2 && files.length <= 3, `2 to 3 files: ${JSON.stringify(files)}`);
        assert.match(kept(), /rotation batch 6 line 200 x+\n(.*\n)*.*LOG: {2}rotation last line\n/, 'the newest lines are kept');
        assert.doesNotMatch(kept(), /rotation batch 1 line/, 'the oldest are gone');
        // A file grows past the size by what the server writes in the second it passes it (a batch here:
        // 200 messages of ~700 bytes with their CONTEXT and STATEMENT lines)
        const batchBytes = 200 * 700;
        for (const file of files) assert.ok(file.bytes <= fileKb * 1024 + batchBytes, `${file.name} is ${file.bytes} bytes`);
        // in UTC, lines and names alike (names in local time go back an hour when summer time ends: the pruning sorts them)
        assert.match(kept(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC \[/);
        assert.doesNotMatch(kept(), / E[SD]T \[/);
        const [, year, month, day, hour, minute, second] = /^postgresql-(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})\.log$/.exec(files.at(-1)!.name)!.map(Number);
        const begunAtMs = Date.UTC(year!, month! - 1, day!, hour!, minute!, second!);
        assert.ok(Math.abs(Date.now() - begunAtMs) < 5 * 60_000, `${files.at(-1)!.name} is named in UTC`);
        // and server.log holds only what the server says before its log files open
        assert.ok(statSync(path.join(pgData, 'server.log')).size < 4096, `server.log is ${statSync(path.join(pgData, 'server.log')).size} bytes`);
        assert.doesNotMatch(readFileSync(path.join(pgData, 'server.log'), 'utf8'), /rotation/);
      } finally {
        await client.end();
        await server.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('an old log file that cannot be removed is warned of once, not every second, and removed once it can be', { timeout: 120_000 }, async (t) => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-logstuck-'));
    const logDir = path.join(dataDir, 'pg', 'log');
    const stuck = path.join(logDir, 'postgresql-2000-01-01_000000.log');
    const warnings: string[] = [];
    const logger = createLogger('warn', 'storekeep', { write: (line: string) => void warnings.push(line) });
    const keepAlive = setInterval(() => undefined, 1_000); // the watch's own timer does not keep a process alive
    let immutable = false;
    try {
      const server = await startEmbeddedPostgres({ dataDir, logger, logFiles: 2, watchIntervalMs: WATCH_MS });
      try {
        // Given three files, the oldest one no one may remove (chattr +i)
        writeFileSync(stuck, 'old\n');
        writeFileSync(path.join(logDir, 'postgresql-2000-01-02_000000.log'), 'old\n');
        try {
          execFileSync('chattr', ['+i', stuck], { stdio: 'pipe' });
          immutable = true;
        } catch {
          t.skip('no chattr here (not root, or a file system without it): no file can be made unremovable');
          return;
        }
        // When the owner looks at its server for 8 watch periods (it looked 4 times in the 4 s this waited with the default 1 s period)
        await new Promise((resolve) => setTimeout(resolve, 8 * WATCH_MS));
        // Then one warning, and the server runs on
        assert.equal(warnings.filter((line) => line.includes('could not remove old log files')).length, 1, warnings.join(''));
        const client = new pg.Client(server.url);
        await client.connect();
        await client.end();
        // and once it may be removed, it is
        execFileSync('chattr', ['-i', stuck]);
        immutable = false;
        const deadline = Date.now() + 10_000;
        while (existsSync(stuck) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(existsSync(stuck), false);
        assert.equal(readdirSync(logDir).length, 2);
      } finally {
        await server.stop();
      }
    } finally {
      if (immutable) execFileSync('chattr', ['-i', stuck]);
      clearInterval(keepAlive);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a server.log past the size at a start (an earlier version wrote everything there) keeps its last lines in server.log.1 and starts empty', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-logtail-'));
    const pgData = path.join(dataDir, 'pg');
    try {
      await (await startEmbeddedPostgres({ dataDir })).stop();
      // Given a server.log of 1 MB that ends with a line worth keeping
      const old = Array.from({ length: 10_000 }, (_, i) => `old line ${i} ${'y'.repeat(90)}`).join('\n');
      writeFileSync(path.join(pgData, 'server.log'), `${old}\nlast old line\n`);
      // When the service starts with files of 64 kB
      const server = await startEmbeddedPostgres({ dataDir, logFileSizeKb: 64, logFiles: 3 });
      await server.stop();
      // Then server.log.1 holds its last 64 kB from a line's start, and server.log only what this start wrote
      const tail = readFileSync(path.join(pgData, 'server.log.1'), 'utf8');
      assert.ok(Buffer.byteLength(tail) <= 64 * 1024, `server.log.1 is ${Buffer.byteLength(tail)} bytes`);
      assert.ok(Buffer.byteLength(tail) > 60 * 1024, `server.log.1 is ${Buffer.byteLength(tail)} bytes`);
      assert.match(tail, /^old line \d+ y/);
      assert.match(tail, /old line 9999 y+\nlast old line\n$/);
      const now = readFileSync(path.join(pgData, 'server.log'), 'utf8');
      assert.doesNotMatch(now, /old line/);
      assert.ok(Buffer.byteLength(now) < 4096);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a start that fails after the server opened its log files still says why (the FATAL line is in pg/log, not server.log)', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-logreason-'));
    try {
      await (await startEmbeddedPostgres({ dataDir })).stop();
      // Given the port the server must use is taken (only once the log files are open does PostgreSQL find that out)
      const taken = await new Promise<{ port: number; close: () => void }>((resolve) => {
        const holder = net.createServer();
        holder.listen(0, '127.0.0.1', () => resolve({ port: (holder.address() as net.AddressInfo).port, close: () => holder.close() }));
      });
      try {
        await assert.rejects(startEmbeddedPostgres({ dataDir, settings: { port: String(taken.port) } }), (error: Error) => {
          assert.match(error.message, /\nlog\/postgresql-[\d-]+_\d+\.log: .*FATAL: {2}could not create any TCP\/IP sockets/);
          return true;
        });
      } finally {
        taken.close();
      }
    } finally {
      // The failed server's logging collector may still be writing its last lines as it exits: retried while the folder is not empty.
      rmSync(dataDir, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
    }
  });
});

describe('embedded PostgreSQL: a server left running by another OS user', () => {
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  it('a start by a user who may not signal it says that (which pid, whose), not that the data folder cannot be written', { skip: asRoot ? false : 'needs root, to run the start as another OS user', timeout: 120_000 }, async () => {
    // Given a data folder of the OS user `nobody` whose postmaster.pid names a live postmaster of that folder run by `daemon`
    // (the service ran as root before — its server as another user, `postgres` — was killed, and now runs as a user of its own)
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'storekeep-otheruser-'));
    const dataDir = path.join(scratch, 'data');
    const pgData = path.join(dataDir, 'pg');
    const nobody = { uid: 65534, gid: 65534 };
    mkdirSync(pgData, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(pgData, 'PG_VERSION'), '18\n');
    writeFileSync(path.join(dataDir, 'pg-password'), 'secret\n', { mode: 0o600 });
    for (const file of [dataDir, pgData, path.join(pgData, 'PG_VERSION'), path.join(dataDir, 'pg-password')]) chownSync(file, nobody.uid, nobody.gid);
    chmodSync(scratch, 0o755);
    symlinkSync(process.execPath, path.join(scratch, 'postgres'));
    const postmaster = spawn(path.join(scratch, 'postgres'), ['-e', 'setInterval(() => {}, 1000)', '--', '-D', pgData, '-p', '5432'], { uid: 1, gid: 1, stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      writeFileSync(path.join(pgData, 'postmaster.pid'), `${postmaster.pid}\n${pgData}\n0\n5432\n\n127.0.0.1\n`);
      chownSync(path.join(pgData, 'postmaster.pid'), nobody.uid, nobody.gid);

      // When storekeep starts on it as `nobody`
      const script = `import(${JSON.stringify(path.resolve('src/core/embeddedPostgres.ts'))}).then((m) => m.startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} }))` +
        `.then(() => console.log('started'), (error) => console.log(error.constructor.name + ': ' + error.message))`;
      const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { ...nobody, cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await new Promise((resolve) => child.on('close', resolve));

      // Then it is refused in words saying what failed, and the server was left alone
      assert.match(
        output.trim(),
        new RegExp(`^StartupRefused: the embedded PostgreSQL under ${dataDir} is still running \\(postmaster pid ${postmaster.pid}, run by the OS user daemon\\), left by an earlier start, and this process \\(OS user nobody\\) may not stop it: stop it first, as daemon or root \\(pg_ctl stop -D ${pgData}\\), then start again$`),
      );
      assert.doesNotMatch(output, /may not write in it/);
      assert.ok(processAlive(postmaster.pid!));
      assert.equal(existsSync(path.join(dataDir, 'pg-owner')), false, 'no claim left behind');
    } finally {
      postmaster.kill('SIGKILL');
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
