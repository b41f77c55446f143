import http from 'node:http';
import { EventEmitter } from 'node:events';
import { Logger as WorkerLogger, parseCronItems, run, type CronItem, type Runner, type TaskList, type WorkerEvents, type WorkerPool } from 'graphile-worker';
import type pg from 'pg';
import type { Config } from '../config.js';
import { createDb, createPool, type Db } from '../core/db.js';
import { CHECK_STATEMENT_TIMEOUT_MS, createCheckPool } from '../integrity/runChecks.js';
import { briefly, type Logger } from '../core/logger.js';
import { metricsAllowed, workerMetrics } from '../core/metrics.js';
import { AuthFailureLimiter } from '../http/authFailures.js';
import { clientOf } from '../http/rateLimitKey.js';
import type { BackoffPolicy } from './backoff.js';
import { runJob } from './runJob.js';
import { allTasks, cronItems, periodicJobs } from './registry.js';
import type { TaskDefinition } from './task.js';

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  /** App-role database for the business work of tasks. */
  db: Db;
  /** Owner pool: graphile-worker's own queries and cross-tenant sweeps. */
  ownerPool: pg.Pool;
  /** Owner pool of one connection for the nightly integrity run (JobContext.checkPool). */
  checkPool: pg.Pool;
}

/**
 * How long a runner whose pool has stopped its workers may take to finish
 * stopping (flushing the outcomes of its last jobs: one statement each, tried
 * once) before it is given up on and a new one started (see supervise).
 */
export const RUNNER_FINISH_LIMIT_MS = 10_000;

export function backoffOf(config: Config): BackoffPolicy {
  return { baseMs: config.jobRetryBaseMs, maxMs: config.jobRetryMaxMs };
}

export interface StartWorkerOptions {
  /** The owner's login: the queue itself. */
  databaseUrl: string;
  /** The login of the tasks' business work (runtime.appDatabaseUrl); default databaseUrl's, switched to storekeep_app. */
  appDatabaseUrl?: string;
  config: Config;
  logger: Logger;
  /** Defaults to every task of registry.ts. */
  tasks?: TaskDefinition[];
  /** Defaults to registry.ts's cronItems (only those whose task is in `tasks`); [] for none. */
  cronItems?: CronItem[];
  /** Serve /metrics on config.workerMetricsPort (default true). */
  serveMetrics?: boolean;
  pollIntervalMs?: number;
}

export interface RunningWorker {
  deps: WorkerDeps;
  metricsUrl: string | undefined;
  /** Graceful: stops taking jobs, waits for the running ones to finish. */
  stop(): Promise<void>;
  /** At once: running jobs are released (failed with a message, retried later), not awaited. */
  stopNow(): Promise<void>;
}

function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message) => {
    const bound = { component: 'graphile-worker', ...(scope.workerId ? { worker_id: scope.workerId } : {}) };
    if (level === 'error') logger.error(bound, message);
    else if (level === 'warning') logger.warn(bound, message);
    else logger.debug(bound, message);
  });
}

/**
 * `storekeep worker`: graphile-worker on the service's own PostgreSQL. The
 * queue runs as the owner (it must lock and delete any tenant's jobs); the
 * business work of each task runs as the app role under row-level security,
 * through runCommand / inTenantTransaction like any request.
 */
export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const { config, logger } = options;
  const ownerPool = createPool(options.databaseUrl, {
    max: config.workerConcurrency + 4,
    asAppRole: false,
    applicationName: 'storekeep-worker',
    onError: (error) => logger.warn({ error: briefly(error) }, 'idle worker connection failed'),
  });
  const appPool = createPool(options.appDatabaseUrl ?? options.databaseUrl, {
    max: config.workerConcurrency * 2 + 2,
    asAppRole: true,
    applicationName: 'storekeep-worker',
    onError: (error) => logger.warn({ error: briefly(error) }, 'idle worker connection failed'),
  });
  // The nightly integrity run's checks may run CHECK_STATEMENT_TIMEOUT_MS each: their connection waits that long for an
  // answer (plus the margin the pools give statement_timeout), where the other pools give up after 45 s.
  const checkPool = createCheckPool(options.databaseUrl, {
    statementTimeoutMs: CHECK_STATEMENT_TIMEOUT_MS,
    applicationName: 'storekeep-worker-checks',
    onError: (error) => logger.warn({ error: briefly(error) }, 'idle worker connection failed'),
  });
  // A client's network error while checked out must not crash the process (graphile-worker checks for this handler).
  ownerPool.on('connect', (client) => client.on('error', (error) => logger.warn({ error: briefly(error) }, 'worker connection failed')));
  const deps: WorkerDeps = { config, logger, db: createDb(appPool), ownerPool, checkPool };
  const tasks = options.tasks ?? allTasks;
  const taskList: TaskList = {};
  for (const definition of tasks) {
    taskList[definition.name] = (payload, helpers) => runJob(definition, payload, helpers, deps);
  }

  // The worker pool, for stopNow: runner.kill() does nothing once a graceful
  // stop has begun, which is when a second signal comes.
  const events = new EventEmitter() as WorkerEvents;
  let workerPool: WorkerPool | undefined;
  events.on('pool:create', ({ workerPool: created }) => (workerPool = created));
  const startRunner = () =>
    run({
      events,
      pgPool: ownerPool,
      taskList,
      parsedCronItems: parseCronItems((options.cronItems ?? cronItems).filter((item) => item.task in taskList)),
      concurrency: config.workerConcurrency,
      noHandleSignals: true,
      pollInterval: options.pollIntervalMs ?? 2000,
      // Completions and failures go through graphile-worker's batcher, which
      // its shutdown flushes: unbatched, the last job's completion was sent
      // without being awaited and could find the pool already ended, leaving
      // a finished job locked — to run again when its lock expired (4 h).
      preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      logger: workerLogger(logger),
    });
  let runner: Runner;
  try {
    runner = await startRunner();
  } catch (error) {
    await Promise.allSettled([ownerPool.end(), appPool.end(), checkPool.end()]);
    throw error;
  }

  // graphile-worker stops its whole runner when it cannot record a job's
  // completion or failure — the database restarting while a job ran is
  // enough (its batcher gives up at the first error) — and the process,
  // with nothing left to do, exited 0: no more jobs until someone restarted
  // the worker. Such a runner is started again here, after 1, 2, 4… up to 30 s
  // while the database is away. The jobs the stopped pool held, whose outcome
  // it could not record, are freed first: they run again now, not when their
  // lock expires in 4 hours (a job whose completion was lost so runs twice,
  // as one whose worker was killed mid-run does).
  /** Set by stop() and stopNow(): a runner stopping then is not started again. */
  let closing = false;
  let restarting: Promise<void> | undefined;
  let cancelPause: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      cancelPause = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  /** The pool whose runner was stopped here because it could take no job again (see 'worker:getJob:error' below). */
  let wedgedPoolId: string | undefined;
  const restart = async (stoppedPoolId: string | undefined) => {
    if (stoppedPoolId !== undefined && stoppedPoolId === wedgedPoolId) logger.warn({ worker_pool: stoppedPoolId }, 'the job runner was stopped (it could take no job again); starting it again');
    else logger.error({ worker_pool: stoppedPoolId }, 'the job runner stopped by itself (it could not record a job\'s outcome: the database went away?); starting it again');
    for (let attempt = 0; !closing; attempt++) {
      await pause(Math.min(1_000 * 2 ** attempt, 30_000));
      if (closing) return;
      try {
        if (stoppedPoolId !== undefined) await ownerPool.query('SELECT graphile_worker.force_unlock_workers($1::text[])', [[stoppedPoolId]]);
        runner = await startRunner();
        supervise(runner);
        logger.warn('the job runner started again');
        return;
      } catch (error) {
        logger.error({ error: briefly(error), attempt: attempt + 1 }, 'could not start the job runner again; trying again');
      }
    }
  };
  // A pool that stopped by itself may also never finish stopping. Its last
  // step flushes graphile-worker's (0.17) completion and failure batchers, and
  // a batcher whose batch failed counts that batch's backpressure once but
  // releases it after every later batch: after two outcomes it could not
  // record (two jobs ending while the database is away), its count of
  // batches in flight is below zero, and its release waits for zero for
  // ever. The runner's promise then never settled, and the runner was never
  // started again. So once its pool has stopped its workers (nothing can
  // run there any more), a runner whose promise has not settled within
  // RUNNER_FINISH_LIMIT_MS is given up on: its cron is stopped, and a new
  // runner started as for one that stopped by itself. A flush still under
  // way then (a completion that was not recorded in time) means a job that
  // may run twice, as one whose completion was lost does.
  const supervise = (current: Runner) => {
    const poolId = workerPool?.id;
    let handled = false;
    let finishTimer: NodeJS.Timeout | undefined;
    const startAgain = () => {
      if (handled) return;
      handled = true;
      clearTimeout(finishTimer);
      events.off('pool:gracefulShutdown:complete', onPoolStopped);
      if (!closing) restarting = restart(poolId).finally(() => (restarting = undefined));
    };
    const onPoolStopped = ({ workerPool: stopped }: { workerPool: WorkerPool }) => {
      if (stopped.id !== poolId || closing || handled) return;
      finishTimer = setTimeout(() => {
        if (handled || closing) return;
        logger.error({ worker_pool: poolId }, 'the job runner did not finish stopping (graphile-worker could not flush its record of job outcomes); giving it up');
        // Stops its cron (its pool is the part that cannot finish).
        void current.stop().catch(() => undefined);
        startAgain();
      }, RUNNER_FINISH_LIMIT_MS);
      finishTimer.unref();
    };
    events.on('pool:gracefulShutdown:complete', onPoolStopped);
    void current.promise.then(startAgain, startAgain);
  };
  supervise(runner);

  // A runner can also stop taking jobs without stopping. graphile-worker
  // (0.17) looks its tasks up once per runner, at its first attempt to take a
  // job, and keeps that lookup's promise as the answer: when the database
  // goes away during it — PostgreSQL killed just as the runner was started
  // again after an earlier crash — every later attempt fails with that same
  // error, the pool goes on trying every pollInterval (logged at debug), and
  // the worker ran no job again, silently, until someone restarted it. Only a
  // kept answer fails with the very same error object twice: such a runner is
  // stopped, and started again like one that stopped by itself (a new runner
  // looks its tasks up again).
  const getJobErrors = new WeakMap<object, Set<unknown>>();
  events.on('worker:getJob:error', ({ worker: poolWorker, error }) => {
    const pool = poolWorker.workerPool;
    if (closing || pool.id !== workerPool?.id || pool.id === wedgedPoolId) return;
    const seen = getJobErrors.get(pool) ?? new Set<unknown>();
    getJobErrors.set(pool, seen);
    if (!seen.has(error)) {
      // Each failure of a real attempt is a new error; a few are enough to recognise a kept one.
      if (seen.size < 16) seen.add(error);
      return;
    }
    wedgedPoolId = pool.id;
    logger.error({ worker_pool: pool.id, error: briefly(error) }, 'the job runner can take no job again (graphile-worker kept the failure of its look at the task list); stopping it to start it again');
    const wedged = runner;
    void wedged.stop().catch((stopError: unknown) => logger.warn({ error: briefly(stopError) }, 'could not stop the job runner that can take no job'));
  });

  let metricsServer: http.Server | undefined;
  let metricsUrl: string | undefined;
  if ((options.serveMetrics ?? true) && config.workerMetricsPort > 0) {
    // A wrong METRICS_TOKEN is a failed authentication, as on the API: past
    // AUTH_FAILURES_PER_MINUTE from one client, 429 until its window ends.
    const authFailures = new AuthFailureLimiter(config.authFailuresPerMinute);
    metricsServer = http.createServer((request, response) => {
      if (request.url === '/metrics' && !metricsAllowed(config.metricsToken, request.headers.authorization)) {
        const client = clientOf(request.socket.remoteAddress ?? '');
        const wait = authFailures.retryAfterSeconds(client);
        if (wait > 0) {
          response
            .writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': String(wait) })
            .end(JSON.stringify({ code: 'rate_limited', status: 429, title: 'Rate limited', detail: `too many failed authentications from this address; retry after ${wait} s` }));
          return;
        }
        authFailures.recordFailure(client);
        response.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"code":"unauthorized","status":401,"title":"Unauthorized","detail":"send the METRICS_TOKEN as a bearer token"}');
      } else if (request.url === '/metrics') {
        const served = workerMetrics();
        served.metrics().then(
          (text) => response.writeHead(200, { 'content-type': served.contentType }).end(text),
          () => response.writeHead(500).end(),
        );
      } else if (request.url === '/healthz') {
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else {
        response.writeHead(404).end();
      }
    });
    // A second worker on the same host with the same port still runs its jobs, without /metrics.
    const listening = await new Promise<boolean>((resolve) => {
      metricsServer!.once('error', (error) => {
        logger.warn({ err: error, port: config.workerMetricsPort }, 'worker /metrics not served (set WORKER_METRICS_PORT per worker)');
        resolve(false);
      });
      metricsServer!.listen(config.workerMetricsPort, config.host, () => resolve(true));
    });
    if (listening) metricsUrl = `http://${config.host}:${config.workerMetricsPort}`;
    else metricsServer = undefined;
  }
  const timers = periodicJobs(config)
    .filter((periodic) => periodic.task in taskList)
    .map((periodic) => {
      const timer = setInterval(() => {
        ownerPool
          .query(`SELECT graphile_worker.add_job($1, '{}'::json, job_key => $1, job_key_mode => 'preserve_run_at', max_attempts => 1)`, [periodic.task])
          .catch((error: unknown) => logger.warn({ err: error, task: periodic.task }, 'could not enqueue periodic job'));
      }, periodic.everyMs);
      timer.unref();
      return timer;
    });
  logger.info({ concurrency: config.workerConcurrency, tasks: Object.keys(taskList), metrics: metricsUrl }, 'worker started');

  /** Stops the current runner, waiting for its running jobs (one that stopped by itself has nothing left to stop). */
  const stopRunner = async () => {
    closing = true;
    cancelPause?.();
    await restarting;
    await runner.stop().catch((error: unknown) => {
      if (!(error instanceof Error && error.message === 'Runner is already stopped')) throw error;
    });
  };
  let stopping: Promise<void> | undefined;
  return {
    deps,
    metricsUrl,
    stop: () =>
      (stopping ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        await stopRunner();
        if (metricsServer) await new Promise<void>((resolve) => metricsServer!.close(() => resolve()));
        await Promise.allSettled([ownerPool.end(), appPool.end(), checkPool.end()]);
        logger.info('worker stopped');
      })()),
    // A second signal: running jobs are released (failed with a message,
    // retried later) instead of awaited.
    stopNow: async () => {
      closing = true;
      cancelPause?.();
      for (const timer of timers) clearInterval(timer);
      await workerPool?.forcefulShutdown('a second shutdown signal: stopping now');
      if (metricsServer) metricsServer.close();
      await Promise.allSettled([ownerPool.end(), appPool.end(), checkPool.end()]);
    },
  };
}
