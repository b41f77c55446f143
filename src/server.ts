import type { Config } from './config.js';
import { Authenticator } from './core/auth.js';
import { setIdempotencyTtlHours } from './core/command.js';
import { createDb, createPool } from './core/db.js';
import { briefly, type Logger } from './core/logger.js';
import { migrate } from './core/migrate.js';
import { listenFailure } from './core/startupFailure.js';
import { buildApp, type App } from './http/app.js';
import { appDatabaseUrl, openDatabase, operatorTokenHashes, readOperatorTokenFile } from './runtime.js';

export interface RunningServer {
  app: App;
  url: string;
  close(): Promise<void>;
}

/** Migrate, then serve the API until SIGTERM/SIGINT; shutdown finishes in-flight requests. */
export async function serve(config: Config, logger: Logger): Promise<RunningServer> {
  const database = await openDatabase(config, logger);
  try {
    await migrate(database.url, logger, { lockTimeoutMs: config.startupLockTimeoutMs });
    const operator = await operatorTokenHashes(config, database.url, logger);
    setIdempotencyTtlHours(config.idempotencyTtlHours);

    const pool = createPool(await appDatabaseUrl(config, database, logger), {
      max: config.databasePoolSize,
      asAppRole: true,
      onError: (error) => logger.warn({ error: briefly(error) }, 'idle database connection failed'),
    });
    const db = createDb(pool);
    const authenticator = new Authenticator(db);
    authenticator.setOperatorTokens([]);
    for (const hash of operator.hashes) authenticator.addOperatorHash(hash);

    let reportError: ((error: unknown) => void) | undefined;
    if (config.sentryDsn) {
      const Sentry = await import('@sentry/node');
      Sentry.init({ dsn: config.sentryDsn });
      reportError = (error) => Sentry.captureException(error);
    }

    const app = await buildApp({ config, pool, db, logger, authenticator, reportError });
    let address: string;
    try {
      address = await app.listen({ port: config.port, host: config.host });
    } catch (error) {
      await app.close().catch(() => undefined);
      await pool.end().catch(() => undefined);
      throw listenFailure(error, config.host, config.port, 'PORT, HOST');
    }

    const purge = setInterval(() => {
      pool.query('SELECT purge_expired_idempotency_keys()').catch((error: unknown) => logger.warn({ err: error }, 'idempotency purge failed'));
    }, 60 * 60 * 1000);
    purge.unref();

    const storedToken = operator.generated ?? (config.rootToken ? undefined : await readOperatorTokenFile(operator.file));
    const lines = [`storekeep listening on ${address}`, `  API docs:        ${address}/docs`];
    if (database.embedded) lines.push(`  database:        embedded PostgreSQL under ${config.dataDir}`);
    if (operator.generated) lines.push(`  operator token:  ${operator.generated}   (also saved to ${operator.file})`);
    else if (storedToken) lines.push(`  operator token:  in ${operator.file}`);
    // Made on another host or data folder (a restore, a second machine): the database keeps only its hash.
    else if (!config.rootToken) {
      lines.push(`  operator token:  not in ${operator.file}: the database keeps only its hash — copy that file from where it was made, or set STOREKEEP_ROOT_TOKEN (it replaces the token)`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        clearInterval(purge);
        await app.close(); // stops accepting, waits for in-flight requests
        await pool.end();
        await database.stop();
      })());
    return { app, url: address, close };
  } catch (error) {
    await database.stop();
    throw error;
  }
}
