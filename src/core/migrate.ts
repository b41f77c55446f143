import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from './logger.js';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
const MIGRATIONS_TABLE = 'schema_migrations';

/**
 * Applies the numbered SQL files in migrations/, each in its own transaction,
 * under node-pg-migrate's advisory lock so two processes starting at once do
 * not migrate twice. Runs as the connecting (owner) user, never as the app role.
 */
export async function migrate(databaseUrl: string, logger?: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    count: Infinity,
    singleTransaction: false,
    checkOrder: true,
    log: (message: string) => logger?.debug({ migration: message.trim() }, 'migrate'),
    verbose: false,
  });
  for (const migration of applied) logger?.info({ migration: migration.name }, 'migration applied');
  return applied.map((migration) => migration.name);
}

export async function migrationFiles(): Promise<string[]> {
  return (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql')).map((name) => name.slice(0, -4)).sort();
}

/** Names of migrations on disk that the database has not applied. */
export async function pendingMigrations(client: pg.Pool | pg.Client): Promise<string[]> {
  const files = await migrationFiles();
  const exists = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    `public.${MIGRATIONS_TABLE}`,
  ]);
  if (!exists.rows[0]?.exists) return files;
  const done = await client.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
  const applied = new Set(done.rows.map((row) => row.name));
  return files.filter((name) => !applied.has(name));
}
