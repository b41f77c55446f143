import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig, ConfigError, misspelledSettings, numberFlag, type Config } from './config.js';
import { runInScope } from './core/context.js';
import { createLogger, type Logger } from './core/logger.js';
import type { StartupRefused } from './core/startupFailure.js';

// Only what parsing the arguments and the configuration needs is imported
// up front: `storekeep --help`, an unknown option or command, a bad option
// value or a configuration error answer without loading the service (the
// HTTP app and its routes, graphile-worker, pg: over a second of CPU). Each
// command imports the modules it runs when it runs (`import()` below).

/** The modules that tell a refusal's message from a bug's stack (failureText): imported when an error is to be printed. */
async function failureModules() {
  const [{ AppLoginRefused }, { EmbeddedDatabaseInUse }, { databaseFailureMessage, StartupRefused }] = await Promise.all([
    import('./core/appLogin.js'),
    import('./core/embeddedPostgres.js'),
    import('./core/startupFailure.js'),
  ]);
  return { AppLoginRefused, EmbeddedDatabaseInUse, databaseFailureMessage, StartupRefused };
}

const USAGE = `usage: storekeep <command>

  serve      migrate, then serve the HTTP API (embedded PostgreSQL unless DATABASE_URL is set)
  start      same as serve
  migrate    apply pending database migrations and exit
  worker     run background jobs
  provider-sim  a fake fulfilment provider on loopback (--port, --webhook-url, --latency-ms,
             --fail-rate, --duplicate-webhooks, --out-of-order-webhooks, --no-webhooks)
  check      run the integrity checks over every tenant; prints findings (--json: as JSON);
             exits 0 when clean, 1 on any finding, 2 when the checks could not run
             (a configuration error, the database unreachable or refusing the login,
             or not migrated: run migrate first);
             a check that cannot run is a finding (check_failed) with the run's
             correlation id, its error logged on stderr under that id;
             --timeout <seconds>: how long each check may run (default 600, as
             the worker's nightly run); a check that takes longer is check_failed,
             and a database that stops answering for that long plus 15 s exits 2
`;

/** The options each command takes: flags, and options followed by a value. */
const OPTIONS: Record<string, { flags: string[]; valued: string[] }> = {
  serve: { flags: [], valued: [] },
  start: { flags: [], valued: [] },
  migrate: { flags: [], valued: [] },
  worker: { flags: [], valued: [] },
  check: { flags: ['--json'], valued: ['--timeout'] },
  'provider-sim': { flags: ['--duplicate-webhooks', '--out-of-order-webhooks', '--no-webhooks'], valued: ['--port', '--webhook-url', '--latency-ms', '--fail-rate'] },
};

/**
 * Why a command's arguments are refused, or undefined: an option it does not
 * take was ignored (`serve --port 9000` served on PORT, `check --jsn` printed
 * text to a script expecting JSON).
 */
function refusedArguments(commandName: string, args: string[]): string | undefined {
  const options = OPTIONS[commandName];
  if (options === undefined) return undefined; // an unknown command: refused with the usage
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (options.valued.includes(arg)) {
      if (index + 1 >= args.length) return `${arg} needs a value`;
      index++;
    } else if (!options.flags.includes(arg)) {
      const takes = [...options.valued, ...options.flags];
      return `unknown option "${arg}" (${takes.length ? `it takes ${takes.join(', ')}` : "settings are environment variables, such as PORT: see the README's Configuration"})`;
    }
  }
  return undefined;
}

/** How long a second signal waits for the process's own database and jobs to be stopped before exiting anyway. */
const STOP_NOW_GRACE_MS = 10_000;

/**
 * SIGTERM/SIGINT: the first drains (`close`: requests and jobs in flight
 * finish, then exit 0). A second one while that drains stops now
 * (`closeNow`: the embedded server this process started is stopped fast, so
 * open transactions roll back; running jobs are released to be retried) and
 * exits 1 — an operator who signals twice does not want to wait for a hung
 * request; a third exits at once.
 */
function onSignals(logger: Logger, refusal: typeof StartupRefused, close: (signal: string) => Promise<void>, closeNow: () => Promise<void>): void {
  let signals = 0;
  const stop = (signal: string) => {
    signals++;
    if (signals === 1) {
      logger.info({ signal }, 'shutting down');
      close(signal).then(
        // A drain that ends after a second signal was cut short by it (its
        // database stopped under the requests in flight): exit 1 like closeNow.
        () => process.exit(signals > 1 ? 1 : 0),
        (error: unknown) => {
          if (error instanceof refusal) process.stderr.write(`storekeep: ${error.message}\n`);
          else logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
      return;
    }
    if (signals === 2) {
      process.stderr.write(`storekeep: second ${signal} while shutting down: stopping now, without waiting for requests and jobs in flight (their transactions roll back)\n`);
      setTimeout(() => process.exit(1), STOP_NOW_GRACE_MS).unref();
      closeNow().then(
        () => process.exit(1),
        (error: unknown) => {
          logger.error({ err: error }, 'stopping now failed');
          process.exit(1);
        },
      );
      return;
    }
    process.exit(1);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** How long a signal that arrives during start-up waits for the start to finish before abandoning it. */
const START_GRACE_MS = 10_000;

/** A started long-running command: how to stop it (draining), and optionally how to stop it at once. */
interface Running {
  stop(): Promise<void>;
  /** On a second signal: without waiting for work in flight (the embedded server this process started is stopped after it in any case). */
  stopNow?(): Promise<void>;
}

/**
 * A long-running command with SIGTERM/SIGINT handled from its first moment:
 * a signal that arrives while it is still starting (migrations, the embedded
 * database) stops it as soon as it has started — exit 0 after a clean stop —
 * instead of killing it half-started. A start still not finished
 * START_GRACE_MS later (waiting for a database that does not answer, or for
 * another process's migration) is abandoned: the embedded server this
 * process started is stopped, and it exits 1 saying so — it used to wait for
 * the start for ever. A migration it was running is rolled back with its
 * connection (each runs in a transaction). A second signal stops it now
 * (onSignals).
 */
async function runUntilSignalled(logger: Logger, start: () => Promise<Running>): Promise<number> {
  const [{ StartupRefused }, { stopOwnedEmbeddedServers }] = await Promise.all([import('./core/startupFailure.js'), import('./core/embeddedPostgres.js')]);
  let running: Running | undefined;
  const starting = start().then((started) => (running = started));
  onSignals(
    logger,
    StartupRefused,
    async (signal) => {
      let timer: NodeJS.Timeout | undefined;
      const abandoned = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), START_GRACE_MS);
      });
      const started = await Promise.race([starting, abandoned]).finally(() => clearTimeout(timer));
      if (started === undefined) {
        await stopOwnedEmbeddedServers();
        throw new StartupRefused(`start-up abandoned on ${signal}: it had not finished ${START_GRACE_MS / 1000} s later (waiting for the database or for another process's migration)`);
      }
      await started.stop();
    },
    async () => {
      try {
        await running?.stopNow?.();
      } finally {
        await stopOwnedEmbeddedServers();
      }
    },
  );
  await starting;
  return -1; // keep running
}

async function main(argv: string[]): Promise<number> {
  const commandName = argv[0] ?? 'serve';
  if (commandName === 'help' || argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const refused = refusedArguments(commandName, argv.slice(1));
  if (refused !== undefined) {
    process.stderr.write(`storekeep ${commandName}: ${refused}\n`);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`storekeep: configuration error: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  // `check` and `migrate` print their result on stdout (`check --json`: one
  // JSON document a script parses): their logs go to stderr. The long-running
  // commands log to stdout, like any service.
  const reportsOnStdout = commandName === 'check' || commandName === 'migrate';
  const logger = createLogger(config.logLevel, 'storekeep', reportsOnStdout ? pino.destination(2) : undefined);
  for (const { name, meant } of misspelledSettings(process.env)) {
    logger.warn({ variable: name, setting: meant }, `${name} is not a storekeep setting and is ignored: did you mean ${meant}? (${meant} keeps its default or its own value)`);
  }

  switch (commandName) {
    case 'serve':
    case 'start':
    {
      const { serve } = await import('./server.js');
      return runUntilSignalled(logger, async () => ({ stop: (await serve(config, logger)).close }));
    }
    case 'migrate': {
      const [{ openDatabase }, { migrate }] = await Promise.all([import('./runtime.js'), import('./core/migrate.js')]);
      const database = await openDatabase(config, logger);
      try {
        const applied = await migrate(database.url, logger, { lockTimeoutMs: config.startupLockTimeoutMs });
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
      } finally {
        await database.stop();
      }
      return 0;
    }
    case 'worker': {
      const [{ appDatabaseUrl, openDatabase }, { migrate }, { setIdempotencyTtlHours }, { startWorker }] = await Promise.all([
        import('./runtime.js'),
        import('./core/migrate.js'),
        import('./core/command.js'),
        import('./jobs/worker.js'),
      ]);
      return runUntilSignalled(logger, async () => {
        const database = await openDatabase(config, logger, { attach: true });
        try {
          await migrate(database.url, logger, { lockTimeoutMs: config.startupLockTimeoutMs });
          setIdempotencyTtlHours(config.idempotencyTtlHours);
          const worker = await startWorker({ databaseUrl: database.url, appDatabaseUrl: await appDatabaseUrl(config, database, logger), config, logger });
          return {
            stop: async () => {
              await worker.stop();
              await database.stop();
            },
            stopNow: () => worker.stopNow(),
          };
        } catch (error) {
          await database.stop();
          throw error;
        }
      });
    }
    case 'provider-sim': {
      const flag = (name: string) => {
        const index = argv.indexOf(`--${name}`);
        return index >= 0 ? argv[index + 1] : undefined;
      };
      const secret = config.fulfilmentWebhookSecret;
      if (!secret) {
        process.stderr.write('storekeep provider-sim: set FULFILMENT_WEBHOOK_SECRET (the API must have the same one)\n');
        return 2;
      }
      let port: number;
      let latencyMs: number;
      let failRate: number;
      try {
        port = numberFlag(flag, 'port', Number(new URL(config.fulfilmentUrl).port || 8090), 0, 65535, true);
        latencyMs = numberFlag(flag, 'latency-ms', 0, 0, 600_000, true);
        failRate = numberFlag(flag, 'fail-rate', 0, 0, 1, false);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        process.stderr.write(`storekeep provider-sim: ${error.message}\n`);
        return 2;
      }
      const { startProviderSim } = await import('./providerSim/providerSim.js');
      return runUntilSignalled(logger, async () => {
        const sim = await startProviderSim({
          port,
          secret,
          webhookUrl: flag('webhook-url') ?? `http://${config.host}:${config.port}/v1/webhooks/fulfilment`,
          faults: {
            latencyMs,
            failRate,
            duplicateWebhooks: argv.includes('--duplicate-webhooks'),
            outOfOrderWebhooks: argv.includes('--out-of-order-webhooks'),
            webhooks: !argv.includes('--no-webhooks'),
          },
          log: (line) => logger.info({ component: 'provider-sim' }, line),
        });
        process.stdout.write(`provider-sim listening on ${sim.url} (faults: GET/POST ${sim.url}/_sim/faults)\n`);
        return { stop: sim.stop };
      });
    }
    case 'check': {
      // Exit 1 means findings: a check that could not run at all exits 2, so
      // a script or a cron job tells "the data is wrong" from "we do not know".
      const timeout = checkTimeoutOf(argv);
      if (typeof timeout === 'string') {
        process.stderr.write(`storekeep check: ${timeout}\n`);
        return 2;
      }
      const [{ openDatabase }, { pendingMigrations }, { allChecks }, { CHECK_STATEMENT_TIMEOUT_MS, checkSettingsOf, createCheckPool, runChecksAsOwner }] = await Promise.all([
        import('./runtime.js'),
        import('./core/migrate.js'),
        import('./integrity/registry.js'),
        import('./integrity/runChecks.js'),
      ]);
      const statementTimeoutMs = timeout ?? CHECK_STATEMENT_TIMEOUT_MS;
      let database: Awaited<ReturnType<typeof openDatabase>>;
      try {
        database = await openDatabase(config, logger, { attach: true });
      } catch (error) {
        process.stderr.write(`storekeep: ${await failureText(error)}\n`);
        return 2;
      }
      // Bounded like the nightly run's pool: a connect that hangs, a check past
      // its time, or a database gone silent mid-run ends the run (cron must not
      // pile up hung checks) instead of waiting forever.
      const pool = createCheckPool(database.url, { statementTimeoutMs, applicationName: 'storekeep-check' });
      try {
        // A database without this version's schema (never migrated: a
        // DATABASE_URL naming another database, a fresh data directory; or
        // behind this version) cannot be checked: every check would fail and
        // be reported as a check_failed finding (exit 1, "the data is wrong").
        // That is "we do not know": exit 2, one line saying what to do.
        const pending = await pendingMigrations(pool);
        if (pending.length > 0) {
          process.stderr.write(
            `storekeep: the database is not migrated: ${pending.length} migration${pending.length === 1 ? '' : 's'} not applied (first: ${pending[0]}); run storekeep migrate\n`,
          );
          return 2;
        }
        // One correlation id for the run: a check that cannot run is reported under it on stdout, and
        // what the database said is logged under it on stderr (the operator's terminal or its cron mail).
        const correlationId = randomUUID();
        const run = await runInScope({ correlationId }, () => runChecksAsOwner(pool, allChecks, { ...checkSettingsOf(config), statementTimeoutMs }, { logger, correlationId }));
        if (argv.includes('--json')) {
          process.stdout.write(`${JSON.stringify({ ok: run.findings.length === 0, checked_at: run.checked_at, findings: run.findings }, null, 2)}\n`);
        } else {
          for (const finding of run.findings) {
            process.stdout.write(`${finding.severity}\t${finding.check}\ttenant=${finding.tenant_id}\tsubject=${finding.subject}\t${JSON.stringify(finding.detail)}\n`);
          }
          process.stdout.write(
            run.findings.length === 0
              ? `ok: ${run.checks.length} checks, no findings\n`
              : `${run.findings.length} finding(s) from ${run.checks.length} checks\n`,
          );
        }
        return run.findings.length === 0 ? 0 : 1;
      } catch (error) {
        process.stderr.write(`storekeep: ${await failureText(error)}\n`);
        return 2;
      } finally {
        await pool.end();
        await database.stop();
      }
    }
    default:
      process.stderr.write(`storekeep: unknown command "${commandName}"\n\n${USAGE}`);
      return 2;
  }
}

/** `check --timeout <seconds>` in ms (undefined without it: the nightly run's CHECK_STATEMENT_TIMEOUT_MS), or why the value is refused. */
function checkTimeoutOf(argv: string[]): number | undefined | string {
  const at = argv.indexOf('--timeout');
  if (at < 0) return undefined;
  const text = argv[at + 1]!;
  const seconds = /^[0-9]{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(seconds >= 1 && seconds <= 86_400)) return `--timeout takes whole seconds from 1 to 86400 (each check's time limit), not "${text}"`;
  return seconds * 1000;
}

/**
 * What to print for an error that stops a command: a refusal that says what
 * to do (a setting, the machine, the database unreachable or refusing the
 * login) as its one line; anything else — a bug — with its stack.
 */
async function failureText(error: unknown): Promise<string> {
  const { AppLoginRefused, EmbeddedDatabaseInUse, databaseFailureMessage, StartupRefused } = await failureModules();
  if (error instanceof EmbeddedDatabaseInUse || error instanceof AppLoginRefused || error instanceof StartupRefused) return error.message;
  return databaseFailureMessage(error) ?? (error instanceof Error ? (error.stack ?? error.message) : String(error));
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  async (error: unknown) => {
    let text: string;
    try {
      text = await failureText(error);
    } catch {
      text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    }
    process.stderr.write(`storekeep: ${text}\n`);
    process.exit(1);
  },
);
