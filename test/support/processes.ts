import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { processAlive } from '../../src/core/embeddedPostgres.js';
import { sleep } from './wait.js';

export { freePort, processAlive } from '../../src/core/embeddedPostgres.js';

/** The repository root (for spawning bin/storekeep.js). */
export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** PID of the embedded PostgreSQL under a data folder, from its postmaster.pid. */
export function postmasterPid(dataDir: string): number | undefined {
  const file = path.join(dataDir, 'pg', 'postmaster.pid');
  return existsSync(file) ? Number(readFileSync(file, 'utf8').split('\n')[0]) : undefined;
}

/**
 * After an e2e test: SIGTERM every child still running, stop an embedded
 * PostgreSQL left behind under the data folder, and remove the folder.
 */
export async function cleanUpProcesses(dataDir: string, children: ChildProcess[]): Promise<void> {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await sleep(2000);
  const pid = postmasterPid(dataDir);
  if (pid && processAlive(pid)) {
    process.kill(pid, 'SIGINT');
    await sleep(1000);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
