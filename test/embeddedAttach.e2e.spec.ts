import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { runningEmbeddedPostgres } from '../src/core/embeddedPostgres.js';
import { cleanUpProcesses, freePort, root } from './support/processes.js';
import { sleep, waitFor } from './support/wait.js';

/** Whether the API on `port` answers /readyz with 200 (false while it is not listening). */
async function readyAt(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
  } catch {
    return false;
  }
}

describe('worker and check next to npm start (embedded PostgreSQL)', { timeout: 180_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-attach-'));
  const children: ChildProcess[] = [];
  const otherDataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-owner-'));
  const freshDataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-together-'));
  const env = (port: number, options: { logLevel?: string; dir?: string }): NodeJS.ProcessEnv => {
    const result: NodeJS.ProcessEnv = {
      ...process.env,
      STOREKEEP_DATA_DIR: options.dir ?? dataDir,
      PORT: String(port),
      LOG_LEVEL: options.logLevel ?? 'warn',
      WORKER_METRICS_PORT: '0',
    };
    delete result.DATABASE_URL; // the embedded default is what is under test
    return result;
  };
  const cli = (command: string, port: number, options: { logLevel?: string; dir?: string } = {}) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), ...command.split(' ')], { cwd: root, env: env(port, options), stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    return child;
  };
  after(async () => {
    await cleanUpProcesses(dataDir, children);
    await cleanUpProcesses(otherDataDir, []);
    await cleanUpProcesses(freshDataDir, []);
  });

  it('attaches to the running server instead of stopping it', async () => {
    const port = await freePort();
    const api = cli('serve', port);
    const ready = () => readyAt(port);
    await waitFor('the API', ready, 120_000, 200);
    const postmaster = readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0];

    // The API's request pool logs in as the app login (a member of storekeep_app only), not as the superuser —
    // and so does /readyz's connection of its own. (A token is looked up through the request pool.)
    assert.equal((await fetch(`http://127.0.0.1:${port}/v1/stores`, { headers: { authorization: 'Bearer not-a-token' } })).status, 401);
    const superuserUrl = await runningEmbeddedPostgres(dataDir);
    assert.ok(superuserUrl, 'the embedded server is running');
    const superuser = new pg.Client(superuserUrl);
    await superuser.connect();
    try {
      const logins = await superuser.query(
        `SELECT application_name, usename::text AS login FROM pg_stat_activity WHERE datname = 'storekeep' AND application_name IN ('storekeep', 'storekeep readiness') GROUP BY 1, 2 ORDER BY 1`,
      );
      assert.deepEqual(logins.rows, [
        { application_name: 'storekeep', login: 'storekeep_api' },
        { application_name: 'storekeep readiness', login: 'storekeep_api' },
      ]);
    } finally {
      await superuser.end();
    }
    assert.equal(statSync(path.join(dataDir, 'pg-app-password')).mode & 0o777, 0o600);

    // storekeep check: runs on the same database and leaves it running
    const check = cli('check', port);
    let stdout = '';
    check.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const code = await new Promise((resolve) => check.on('close', resolve));
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^ok: \d+ checks, no findings/m);
    assert.equal(await ready(), true);

    // storekeep check --json: its standard output is the one JSON report, even with info logs on (they go to stderr)
    const json = cli('check --json', port, { logLevel: 'info' });
    let report = '';
    let logs = '';
    json.stdout?.on('data', (chunk: Buffer) => (report += chunk.toString()));
    json.stderr?.on('data', (chunk: Buffer) => (logs += chunk.toString()));
    assert.equal(await new Promise((resolve) => json.on('close', resolve)), 0, report);
    assert.equal(JSON.parse(report).ok, true, report);
    assert.match(logs, /using the embedded PostgreSQL already running/);

    // storekeep worker: same (signalled only once it has started: a signal
    // before its code has loaded ends it by the default action)
    const worker = cli('worker', port, { logLevel: 'info' });
    let workerLog = '';
    worker.stdout?.on('data', (chunk: Buffer) => (workerLog += chunk.toString()));
    await waitFor('the worker', async () => workerLog.includes('"msg":"worker started"'), 120_000, 200);
    await sleep(1000);
    assert.equal(worker.exitCode, null, 'the worker keeps running');
    assert.equal(await ready(), true);
    assert.equal(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0], postmaster, 'the same PostgreSQL');
    worker.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => worker.on('exit', resolve)), 0);
    assert.equal(await ready(), true, 'stopping the worker leaves the API\'s database running');
    api.kill('SIGTERM');
    await new Promise((resolve) => api.on('exit', resolve));
  });

  it('a worker started while npm start is still bringing up its embedded PostgreSQL waits for it and attaches (it was refused as a second owner)', async () => {
    const port = await freePort();
    const api = cli('serve', port, { dir: freshDataDir });
    // The API has claimed the folder (pg-owner) and is initialising it: the worker starts now, as `npm start & storekeep worker` does.
    await waitFor('the API to claim the data folder', async () => existsSync(path.join(freshDataDir, 'pg-owner')), 60_000, 20);
    const worker = cli('worker', port, { dir: freshDataDir, logLevel: 'info' });
    let workerLog = '';
    worker.stdout?.on('data', (chunk: Buffer) => (workerLog += chunk.toString()));
    worker.stderr?.on('data', (chunk: Buffer) => (workerLog += chunk.toString()));
    await waitFor('the worker to start or stop', async () => workerLog.includes('"msg":"worker started"') || worker.exitCode !== null, 120_000, 200);
    assert.equal(worker.exitCode, null, `the worker keeps running: ${workerLog}`);
    assert.match(workerLog, /using the embedded PostgreSQL already running/);
    const ready = () => readyAt(port);
    await waitFor('the API', ready, 120_000, 200);
    assert.equal(readFileSync(path.join(freshDataDir, 'pg-owner'), 'utf8').trim(), String(api.pid), 'the API owns the server');
    worker.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => worker.on('exit', resolve)), 0);
    assert.equal(await ready(), true, 'stopping the worker leaves the API\'s database running');
    api.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => api.on('exit', resolve)), 0);
    assert.equal(existsSync(path.join(freshDataDir, 'pg', 'postmaster.pid')), false, 'the owner stopped its database');
  });

  it('a second API on the same data folder is refused and leaves the first one\'s database running; the owner stops it', async () => {
    const port = await freePort();
    const first = cli('serve', port, { dir: otherDataDir });
    const ready = async (at: number) => {
      try {
        return (await fetch(`http://127.0.0.1:${at}/readyz`)).status === 200;
      } catch {
        return false;
      }
    };
    await waitFor('the first API', () => ready(port), 120_000, 200);
    const postmaster = readFileSync(path.join(otherDataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0];

    const secondPort = await freePort();
    const second = cli('serve', secondPort, { dir: otherDataDir });
    let output = '';
    second.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    second.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise((resolve) => second.on('close', resolve));
    assert.notEqual(code, 0, 'the second API does not start');
    assert.match(output, /^storekeep: the embedded PostgreSQL under .* is run by storekeep process \d+: stop that process first/m);
    assert.doesNotMatch(output, /\n\s+at /, 'a refusal, not a crash: no stack trace');
    assert.equal(await ready(port), true, 'the first API still has its database');
    assert.equal(readFileSync(path.join(otherDataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0], postmaster, 'the same PostgreSQL');

    first.kill('SIGTERM');
    assert.equal(await new Promise((resolve) => first.on('exit', resolve)), 0);
    assert.equal(existsSync(path.join(otherDataDir, 'pg', 'postmaster.pid')), false, 'the owner stopped its database');
    assert.equal(existsSync(path.join(otherDataDir, 'pg-owner')), false, 'and gave up its claim');
  });
});
