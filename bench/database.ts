import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { dropAppLogin, provisionAppLogin } from '../src/core/appLogin.js';
import { startEmbeddedPostgres } from '../src/core/embeddedPostgres.js';
import { migrate } from '../src/core/migrate.js';

export interface BenchDatabase {
  /** Owner connection string of a fresh, migrated database. */
  url: string;
  /** The same database as the service's request pools log in: a role of this run's own, a member of storekeep_app only. */
  appUrl: string;
  /** What the figures were measured on, for the report. */
  durable: string;
  /** Drops the database and stops the embedded server (if one was started). */
  close(): Promise<void>;
}

/**
 * A fresh migrated database on a DURABLE PostgreSQL: the server in
 * DATABASE_URL (it must be durable for the figures to mean anything), or an
 * embedded one with the default fsync / synchronous_commit / full_page_writes
 * — not the test settings. Only the connection limit is raised.
 */
export async function openBenchDatabase(prefix: string): Promise<BenchDatabase> {
  let serverUrl = process.env.DATABASE_URL;
  let durable = 'DATABASE_URL server';
  let stopServer = async () => {};
  if (!serverUrl) {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), `storekeep-${prefix}-`));
    const server = await startEmbeddedPostgres({ dataDir, settings: { max_connections: '300' } });
    serverUrl = server.url;
    durable = 'embedded PostgreSQL 18, default fsync=on, synchronous_commit=on, full_page_writes=on';
    stopServer = async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    };
  }
  const name = `sk_${prefix.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
  const control = new pg.Client(serverUrl);
  await control.connect();
  try {
    await control.query(`CREATE DATABASE ${name}`);
  } finally {
    await control.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  await migrate(url.toString());
  const appRole = `storekeep_api_${randomBytes(4).toString('hex')}`;
  const appUrl = await provisionAppLogin(url.toString(), randomBytes(18).toString('base64url'), appRole);
  return {
    url: url.toString(),
    appUrl,
    durable,
    async close() {
      const drop = new pg.Client(serverUrl);
      await drop.connect();
      await drop.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await drop.end();
      await dropAppLogin(serverUrl, appRole).catch(() => undefined);
      await stopServer();
    },
  };
}

/**
 * Warm-up before measuring: a fresh database's tables are empty, and until
 * they are analysed PostgreSQL's cached foreign-key checks scan them
 * sequentially (3–4× slower sales in the first minute; the embedded server's
 * autovacuum looks every 10 s). 32 clients make 100 sales each through
 * `sell`, then `analyze` runs ANALYZE: the figures are for a database past that point.
 */
export async function warmUp(sell: (client: number) => Promise<unknown>, analyze: () => Promise<unknown>): Promise<void> {
  await Promise.all(
    Array.from({ length: 32 }, async (_, client) => {
      for (let i = 0; i < 100; i++) await sell(client);
    }),
  );
  await analyze();
}

/** Runs a bench's main: exit 0 when it resolves, 1 with the stack when it throws. */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    },
  );
}
