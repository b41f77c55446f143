import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { processAlive } from '../../src/core/embeddedPostgres.js';
import { sleep } from './wait.js';

export { freePort, processAlive } from '../../src/core/embeddedPostgres.js';

/** The repository root (for spawning bin/storekeep.js). */
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/**
 * `bin/storekeep.js check <args>` against `databaseUrl`, to its exit: the
 * exit code, stdout and stderr, and how long it ran. Killed (and the promise
 * rejected) after `limitMs`: a check that hangs is the failure.
 */
export function runStorekeepCheck(databaseUrl: string, args: string[] = [], limitMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'check', ...args], {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'warn', DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`storekeep check still running after ${limitMs / 1000} s: ${stdout}${stderr}`));
    }, limitMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** What the crash tests run `storekeep serve` and `storekeep worker` with (each its own values). */
export interface CrashTestService {
  databaseUrl: string;
  appUrl: string;
  port: number;
  rootToken: string;
  providerUrl: string;
  webhookSecret: string;
  jobMaxAttempts: number;
}

/**
 * `bin/storekeep.js <command>` as a child process under load-test settings
 * (no rate limit, a fast provider timeout, quick job retries and order
 * recovery), its stdout and stderr appended to `output` line by line.
 */
export function spawnStorekeep(command: string, service: CrashTestService, output: string[]): ChildProcess {
  const child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), command], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: service.databaseUrl,
      DATABASE_APP_URL: service.appUrl,
      PORT: String(service.port),
      HOST: '127.0.0.1',
      STOREKEEP_ROOT_TOKEN: service.rootToken,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '10000000',
      FULFILMENT_PROVIDER_URL: service.providerUrl,
      FULFILMENT_WEBHOOK_SECRET: service.webhookSecret,
      FULFILMENT_TIMEOUT_MS: '1000',
      ORDERS_STUCK_AFTER_SECONDS: '2',
      JOB_RETRY_BASE_MS: '50',
      JOB_RETRY_MAX_MS: '500',
      JOB_MAX_ATTEMPTS: String(service.jobMaxAttempts),
      WORKER_METRICS_PORT: '0',
      DATABASE_POOL_SIZE: '20',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => output.push(`[${command}] ${chunk.toString()}`));
  child.stderr?.on('data', (chunk: Buffer) => output.push(`[${command}] ${chunk.toString()}`));
  return child;
}

/** PID of the embedded PostgreSQL under a data folder, from its postmaster.pid. */
export function postmasterPid(dataDir: string): number | undefined {
  const file = path.join(dataDir, 'pg', 'postmaster.pid');
  return existsSync(file) ? Number(readFileSync(file, 'utf8').split('\n')[0]) : undefined;
}

/** Polls `done` every 50 ms until it is true or `limitMs` has passed. */
async function within(limitMs: number, done: () => boolean): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done() && Date.now() < deadline) await sleep(50);
}

/**
 * After an e2e test: SIGTERM every child still running, stop an embedded
 * PostgreSQL left behind under the data folder, and remove the folder. It
 * gives the children up to 2 s to exit (and stop the PostgreSQL they own),
 * then SIGINTs a postmaster still running and gives it up to 1 s — each wait
 * ending as soon as what it waits for is done (they were fixed 2 s and 1 s
 * sleeps, most of them waiting for nothing).
 */
export async function cleanUpProcesses(dataDir: string, children: ChildProcess[]): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;
  const postmasterGone = () => {
    const pid = postmasterPid(dataDir);
    return pid === undefined || !processAlive(pid);
  };
  await within(2000, () => children.every(exited) && postmasterGone());
  const pid = postmasterPid(dataDir);
  if (pid && processAlive(pid)) {
    process.kill(pid, 'SIGINT');
    await within(1000, () => !processAlive(pid));
  }
  rmSync(dataDir, { recursive: true, force: true });
}
