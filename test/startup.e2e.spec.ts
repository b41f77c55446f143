import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanUpProcesses, freePort, postmasterPid, processAlive, root } from './support/processes.js';


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
