import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { runningEmbeddedPostgres } from '../src/core/embeddedPostgres.js';
import { cleanUpProcesses, freePort, postmasterPid, processAlive, root } from './support/processes.js';
import { sleep, waitFor } from './support/wait.js';


function startServer(dataDir: string, port: number): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, STOREKEEP_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL; // the embedded default is what is under test
  delete env.STOREKEEP_ROOT_TOKEN;
  return spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'serve'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitReady(port: number, child: ChildProcess, timeoutMs = 90_000): Promise<unknown> {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${output}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (response.status === 200) return response.json();
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${output}`);
}

const alive = processAlive;

describe('embedded start-up (npm start)', { timeout: 240_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-start-'));
  const children: ChildProcess[] = [];
  after(() => cleanUpProcesses(dataDir, children));

  it('starts from an empty data folder, survives kill -9, and shuts down cleanly on SIGTERM', async () => {
    // Given an empty data folder, when the service starts
    const port1 = await freePort();
    const first = startServer(dataDir, port1);
    children.push(first);
    const ready = await waitReady(port1, first);
    assert.deepEqual(ready, { status: 'ready', database: 'ok', migrations: 'applied' });
    const token = readFileSync(path.join(dataDir, 'root-token'), 'utf8').trim();
    const created = await fetch(`http://127.0.0.1:${port1}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Before the crash' }),
    });
    assert.equal(created.status, 201);
    const orphan = postmasterPid(dataDir);
    assert.ok(orphan && alive(orphan));

    // When it is killed with SIGKILL (its PostgreSQL is left running) and started again
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    assert.ok(alive(orphan!), 'the orphaned PostgreSQL is still running');
    const port2 = await freePort();
    const second = startServer(dataDir, port2);
    children.push(second);
    await waitReady(port2, second);

    // Then the same operator token still works and the data survived
    const again = await fetch(`http://127.0.0.1:${port2}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'After the crash' }),
    });
    assert.equal(again.status, 201);
    assert.ok(!alive(orphan!) || postmasterPid(dataDir) !== orphan, 'the stale server was replaced');

    // And SIGTERM stops the API and its database
    const pid = postmasterPid(dataDir)!;
    second.kill('SIGTERM');
    const code = await new Promise((resolve) => second.once('exit', resolve));
    assert.equal(code, 0);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(!alive(pid), 'embedded PostgreSQL stopped with the service');
  });
});

describe('graceful shutdown (SIGTERM)', { timeout: 240_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-term-'));
  const children: ChildProcess[] = [];
  after(() => cleanUpProcesses(dataDir, children));

  it('requests in flight at SIGTERM either complete and stay committed, or were never applied', async () => {
    // Given a running service
    const port = await freePort();
    const first = startServer(dataDir, port);
    children.push(first);
    await waitReady(port, first);
    const token = readFileSync(path.join(dataDir, 'root-token'), 'utf8').trim();
    const create = (base: string, key: string) =>
      fetch(`${base}/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ name: key }),
      });

    // When 40 requests are sent and SIGTERM arrives while they run
    const keys = Array.from({ length: 40 }, (_, i) => `shutdown-${i}`);
    const inFlight = keys.map((key) => create(`http://127.0.0.1:${port}`, key).then((r) => r.status, () => 'refused' as const));
    // SIGTERM as soon as the server has answered one of them: it is busy with
    // the rest (how many are still in flight depends on the machine's load).
    await Promise.race(inFlight);
    first.kill('SIGTERM');
    const statuses = await Promise.all(inFlight);
    const exitCode = await new Promise((resolve) => (first.exitCode !== null ? resolve(first.exitCode) : first.once('exit', resolve)));
    assert.equal(exitCode, 0, 'clean exit after draining');
    assert.ok(statuses.every((status) => status === 201 || status === 503 || status === 'refused'), `statuses: ${statuses}`);
    assert.ok(statuses.some((status) => status === 201), 'the requests answered before and during shutdown were completed');

    // Then after a restart, every acknowledged request replays (it committed) and the rest apply once
    const port2 = await freePort();
    const second = startServer(dataDir, port2);
    children.push(second);
    await waitReady(port2, second);
    for (const [i, key] of keys.entries()) {
      const again = await create(`http://127.0.0.1:${port2}`, key);
      assert.equal(again.status, 201);
      if (statuses[i] === 201) assert.equal(again.headers.get('idempotent-replayed'), 'true', `${key} was acknowledged, so it must have committed`);
    }
  });
});

describe('npm start under a process manager (SIGTERM to npm)', { timeout: 240_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-npm-'));
  const children: ChildProcess[] = [];
  let group: number | undefined;
  after(async () => {
    // Whatever a failure left behind (npm runs in its own process group): stop
    // it, and let go of its output pipes so this test process can exit.
    if (group !== undefined) {
      try {
        process.kill(-group, 'SIGTERM');
      } catch {
        // the group is gone: nothing was left behind
      }
    }
    for (const child of children) {
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
    await cleanUpProcesses(dataDir, children);
  });

  it('stops the API and its embedded PostgreSQL when npm itself gets SIGTERM', async () => {
    // Given the service started the way the README says, `npm start`
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, STOREKEEP_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' };
    delete env.DATABASE_URL;
    delete env.STOREKEEP_ROOT_TOKEN;
    const npm = spawn('npm', ['start', '--silent'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.push(npm);
    group = npm.pid;
    await waitReady(port, npm);
    const database = postmasterPid(dataDir)!;
    assert.ok(alive(database));

    // When a process manager (systemd, docker stop, a supervisor) sends SIGTERM to npm's pid
    npm.kill('SIGTERM');
    await new Promise((resolve) => (npm.exitCode !== null || npm.signalCode !== null ? resolve(null) : npm.once('exit', resolve)));

    // Then nothing is left running: the API stops listening and its PostgreSQL stops
    // (before, npm's `sh -c` died alone and left both running as orphans).
    const deadline = Date.now() + 30_000;
    while ((alive(database) || (await fetch(`http://127.0.0.1:${port}/healthz`).then(() => true, () => false))) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(!alive(database), 'embedded PostgreSQL stopped');
    assert.equal(await fetch(`http://127.0.0.1:${port}/healthz`).then(() => 'listening', () => 'closed'), 'closed');
  });
});

describe('a second SIGTERM while draining', { timeout: 240_000 }, () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'storekeep-term2-'));
  const children: ChildProcess[] = [];
  after(() => cleanUpProcesses(dataDir, children));

  it('stops now: a request stuck in flight is rolled back, the embedded PostgreSQL is stopped, exit 1 (the second signal was ignored)', async () => {
    // Given a running service with a request stuck on a lock another session holds
    const port = await freePort();
    const first = startServer(dataDir, port);
    children.push(first);
    let output = '';
    first.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    first.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitReady(port, first);
    const token = readFileSync(path.join(dataDir, 'root-token'), 'utf8').trim();
    const databaseUrl = async () => {
      const url = new URL((await runningEmbeddedPostgres(dataDir))!);
      url.pathname = '/storekeep';
      return url.toString();
    };
    const holder = new pg.Client(await databaseUrl());
    holder.on('error', () => undefined); // terminated by the server's stop
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE');
    const stuck = fetch(`http://127.0.0.1:${port}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'stuck at shutdown' }),
    }).then((response) => response.status, () => 'cut' as const);
    await waitFor('the request to wait for the lock', async () => (await holder.query(`SELECT 1 FROM pg_locks WHERE NOT granted`)).rows.length > 0, 30_000, 100);
    const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));

    // When SIGTERM arrives, the service drains: it waits for the request
    first.kill('SIGTERM');
    await sleep(1500);
    assert.equal(first.exitCode, null, `still draining after the first SIGTERM: ${output}`);

    // and when a second one arrives
    first.kill('SIGTERM');

    // Then it stops within seconds, saying so, with exit 1, and its PostgreSQL is stopped
    const code = await Promise.race([exited, sleep(30_000).then(() => 'running' as const)]);
    assert.equal(code, 1, output);
    assert.match(output, /second SIGTERM while shutting down: stopping now/);
    const pid = postmasterPid(dataDir);
    assert.ok(pid === undefined || !alive(pid), 'the embedded PostgreSQL was stopped');
    assert.notEqual(await stuck, 201, 'the stuck request was not answered as done');
    await holder.end().catch(() => undefined);

    // and after a restart, the stuck request left nothing behind
    const port2 = await freePort();
    const second = startServer(dataDir, port2);
    children.push(second);
    await waitReady(port2, second);
    const check = new pg.Client(await databaseUrl());
    await check.connect();
    try {
      assert.equal((await check.query(`SELECT 1 FROM tenants WHERE name = 'stuck at shutdown'`)).rowCount, 0);
    } finally {
      await check.end();
    }
  });
});
