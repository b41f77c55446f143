import type { JobHelpers } from 'graphile-worker';
import { SYSTEM_TENANT_ID } from '../core/auth.js';
import { fingerprintRequest, internalIdempotencyKey, runCommand } from '../core/command.js';
import { runInScope } from '../core/context.js';
import { openOrCountReviewItem } from '../core/review.js';
import { backoffOf, type WorkerDeps } from './worker.js';
import { retryDelayMs } from './backoff.js';
import { CRASH_RERUNS, type JobEnvelope } from './enqueueJob.js';
import { jobDuration, jobsTotal } from './metrics.js';
import { isPeriodicKey } from './registry.js';
import { PermanentJobError, WORKER_PRINCIPAL, type JobContext, type TaskDefinition } from './task.js';

function isEnvelope(payload: unknown): payload is JobEnvelope {
  return typeof payload === 'object' && payload !== null && 'correlation_id' in payload && 'chain_id' in payload && 'data' in payload;
}

/**
 * Jobs added by cron (or by hand) have no envelope: give them one. A periodic
 * job's (a cron tick's, or a timer's: its key is the periodic one) says so,
 * and its retries keep the envelope: the give-ups of one periodic task share
 * one open `job_failed` item.
 */
function envelopeOf(payload: unknown, jobId: string, task: string, key: string | null | undefined): JobEnvelope {
  if (isEnvelope(payload)) return payload;
  const cron = (payload as { _cron?: { ts?: string } } | null)?._cron;
  const periodic = cron !== undefined || (typeof key === 'string' && isPeriodicKey(key, task));
  return {
    ...(periodic ? { periodic: true } : {}),
    correlation_id: cron?.ts ? `cron:${task}:${cron.ts}` : `job:${jobId}`,
    tenant_id: null,
    attempt: 1,
    max_attempts: 0,
    chain_id: `job-${jobId}`,
    data: payload ?? {},
  };
}

function errorOf(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Runs one job of `task` the way every job runs:
 *
 * - inside the correlation scope of the request that enqueued it (every log
 *   line and audit event of the job carries that id);
 * - on failure with attempts left: the next attempt is scheduled as a new job
 *   (same job key, so it replaces rather than duplicates) at now + backoff
 *   with jitter, and this run completes. graphile-worker's own retry (fixed
 *   e^attempts seconds, no jitter) is left for crashes only — and each of
 *   its re-runs counts toward the attempts, so a crash loop or a retry that
 *   could not be queued never runs the work more than maxAttempts times;
 * - after the last attempt: the error logged, then a `job_failed` review item
 *   saying where it is (jobFailedWording; one per
 *   job chain: the dedupe key and the command's idempotency key make a re-run
 *   after a crash open nothing new; one open item per subject for a task
 *   with `reviewSubjectOf`, and per task for a periodic job — a give-up
 *   while that item is open counts on it: seen_count, last_seen_at,
 *   last_seen_op), then the task's onGiveUp.
 */
export async function runJob(definition: TaskDefinition, payload: unknown, helpers: JobHelpers, deps: WorkerDeps): Promise<void> {
  const task = definition.name;
  const envelope = envelopeOf(payload, helpers.job.id, task, helpers.job.key);
  const maxAttempts = envelope.max_attempts > 0 ? envelope.max_attempts : (definition.maxAttempts ?? deps.config.jobMaxAttempts);
  // A run graphile-worker itself re-runs (the worker died mid-run, or this
  // code could not queue the retry) may have done the work too: it counts as
  // an attempt, so the budget holds whatever fails (job.attempts is 1 on a
  // job's first run).
  const attempt = envelope.attempt + Math.max(0, helpers.job.attempts - 1);
  const scope = { correlationId: envelope.correlation_id, ...(envelope.tenant_id ? { tenantId: envelope.tenant_id } : {}) };
  await runInScope(scope, async () => {
    const logger = deps.logger.child({ job_id: helpers.job.id, task, attempt, max_attempts: maxAttempts });
    const ctx: JobContext = {
      db: deps.db,
      ownerPool: deps.ownerPool,
      checkPool: deps.checkPool,
      config: deps.config,
      logger,
      jobId: helpers.job.id,
      attempt,
      maxAttempts,
      correlationId: envelope.correlation_id,
      tenantId: envelope.tenant_id,
      principal: WORKER_PRINCIPAL,
      async addJob(name, data, options = {}) {
        const next: JobEnvelope = {
          correlation_id: options.correlationId ?? envelope.correlation_id,
          tenant_id: options.tenantId !== undefined ? options.tenantId : envelope.tenant_id,
          attempt: 1,
          max_attempts: options.maxAttempts ?? 0,
          chain_id: `${helpers.job.id}-${name}-${options.jobKey ?? Math.random().toString(36).slice(2)}`,
          data,
        };
        await helpers.addJob(name, next, {
          maxAttempts: CRASH_RERUNS,
          ...(options.jobKey ? { jobKey: options.jobKey, jobKeyMode: options.jobKeyMode ?? 'replace' } : {}),
          ...(options.runAt ? { runAt: options.runAt } : {}),
        });
      },
    };
    /** The job's last word: a review item, the count, the log line, the task's own give-up. */
    const giveUp = async (error: Error, why: GiveUpReason, message: string) => {
      // The cause is logged first, under the correlation id the item names
      // (the scope's: every line of this job carries it), with the job's id
      // and task (the child logger's fields): the item itself does not hold it.
      logger.error({ err: error }, message);
      await openJobFailedItem(deps, definition, { ...envelope, attempt }, maxAttempts, why);
      jobsTotal.inc({ task, outcome: 'failed' });
      await definition.onGiveUp?.(envelope.data, ctx, error);
    };
    if (attempt > maxAttempts) {
      // Runs that crashed (the worker died mid-run) spent the budget: the
      // handler is not run again, and the job is given up like any other.
      const error = new Error(`its attempts were spent by runs that crashed: this run would be attempt ${attempt} of ${maxAttempts}`);
      await giveUp(error, 'attempts_spent', 'job not run: its attempts are spent; opening a job_failed review item');
      return;
    }
    // The queue runs one job at most its max_attempts (CRASH_RERUNS) times,
    // which can be fewer than the task's attempts: if this run — the queue's
    // last of the job — died as the runs before it did, the job would be left
    // dead in the queue, never run again and never given up (no job_failed
    // item). So once the queue has re-run the job up to its limit, it is given
    // up here, without running the handler again.
    const queuesLastRun = helpers.job.attempts >= helpers.job.max_attempts;
    if (queuesLastRun && helpers.job.attempts > 1) {
      const error = new Error(`its runs crashed ${helpers.job.attempts - 1} times: the queue would not run it again after this run (attempt ${attempt} of ${maxAttempts})`);
      await giveUp(error, 'reruns_spent', "job not run: the queue's re-runs of it are spent; opening a job_failed review item");
      return;
    }
    const started = process.hrtime.bigint();
    logger.debug('job started');
    try {
      await definition.handle(envelope.data, ctx);
      jobsTotal.inc({ task, outcome: 'done' });
      logger.info({ duration_ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'job done');
    } catch (thrown) {
      const error = errorOf(thrown);
      const permanent = error instanceof PermanentJobError;
      if (!permanent && attempt < maxAttempts) {
        const delayMs = retryDelayMs(attempt, backoffOf(deps.config));
        // Logged before the retry is added: once added, another worker slot may
        // run it (and log its own lines) before this await returns.
        logger.warn({ err: error, retry_in_ms: delayMs }, 'job failed; retry scheduled');
        try {
          await helpers.addJob(task, { ...envelope, attempt: attempt + 1, max_attempts: maxAttempts, last_error: error.message }, {
            // A periodic job's key is shared with the next tick, which would
            // replace a waiting retry's envelope (attempt 1 again, never
            // giving up): its retries get a key of their own.
            jobKey: helpers.job.key !== null && helpers.job.key !== undefined && !isPeriodicKey(helpers.job.key, task) ? helpers.job.key : `retry:${envelope.chain_id}`,
            jobKeyMode: 'replace',
            runAt: new Date(Date.now() + delayMs),
            maxAttempts: CRASH_RERUNS,
            // Its tenant's turn (enqueue_job's priority), kept by its retries.
            priority: helpers.job.priority,
          });
        } catch (scheduling) {
          if (queuesLastRun) {
            // The queue would not run it again either: give it up now.
            logger.error({ err: scheduling }, 'could not schedule the retry, and the queue will not run this job again');
            await giveUp(error, 'reruns_spent', 'job failed and its retry could not be scheduled; opening a job_failed review item');
            return;
          }
          logger.error({ err: scheduling }, 'could not schedule the retry; the run fails and the queue runs it again');
          throw scheduling;
        }
        jobsTotal.inc({ task, outcome: 'retried' });
        return;
      }
      await giveUp(error, permanent ? 'permanent' : 'last_attempt', permanent ? 'job failed permanently; opening a job_failed review item' : 'job failed after its last attempt; opening a job_failed review item');
    } finally {
      jobDuration.observe({ task }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  });
}

/**
 * What a `job_failed` item says of its cause: this, built only from the task's
 * name and the attempt counts, never the error itself. A job's error may
 * quote the database (table and column names, SQL), a provider's answer or
 * internal ids, and the item is read by a tenant's staff (review.read); the
 * error is in the server log, at error level with the job's id and task,
 * under the item's `correlation_id` (as a check that could not run:
 * CHECK_COULD_NOT_RUN).
 */
export function jobFailedWording(task: string, attempts: number, maxAttempts: number, why: GiveUpReason): string {
  const what =
    why === 'permanent'
      ? `the job ${task} failed permanently at attempt ${attempts} of ${maxAttempts}`
      : why === 'last_attempt'
        ? `the job ${task} failed at its last attempt (${attempts} of ${maxAttempts})`
        : why === 'attempts_spent'
          ? `the job ${task} was not run again: runs that crashed spent its ${maxAttempts} attempts`
          : `the job ${task} was not run again: runs that crashed (or could not queue its retry) used up the queue's re-runs at attempt ${attempts} of ${maxAttempts}`;
  return `${what}; its cause is in the server log under correlation_id`;
}

/**
 * Why a job gave up: its handler said the failure is permanent, it failed its
 * last attempt, crashed runs spent its attempts, or the queue will not run it
 * again (its re-runs of the job, CRASH_RERUNS, are spent).
 */
export type GiveUpReason = 'permanent' | 'last_attempt' | 'attempts_spent' | 'reruns_spent';

async function openJobFailedItem(deps: WorkerDeps, definition: TaskDefinition, envelope: JobEnvelope, maxAttempts: number, why: GiveUpReason): Promise<void> {
  const task = definition.name;
  const subject = definition.reviewSubjectOf?.(envelope.data);
  const tenantId = envelope.tenant_id ?? SYSTEM_TENANT_ID;
  const key = internalIdempotencyKey('job-failed', envelope.chain_id);
  // One open item per subject when the task names one, per task for a
  // periodic job (each tick is a chain of its own), else per job chain.
  const dedupeKey = subject !== undefined ? `job-failed:${task}:${subject}` : envelope.periodic ? `job-failed:${task}:periodic` : key;
  await runCommand(
    deps.db,
    {
      tenantId,
      principal: WORKER_PRINCIPAL,
      correlationId: envelope.correlation_id,
      idempotencyKey: key,
      fingerprint: fingerprintRequest('JOB', task, { chain_id: envelope.chain_id }),
      payload: { task, chain_id: envelope.chain_id },
    },
    { type: 'job.give_up' },
    async (cmd) => {
      // Filed under the store its record belongs to (an order's), for that store's staff to see.
      const storeId = envelope.tenant_id !== null ? await definition.reviewStoreOf?.(envelope.data, cmd.tx, tenantId) : undefined;
      if (storeId !== undefined) cmd.storeId = storeId;
      // A give-up of the same problem while its item is open counts on that item.
      const { id, created } = await openOrCountReviewItem(cmd.tx, tenantId, cmd.opId, {
        ...(storeId !== undefined ? { storeId } : {}),
        kind: 'job_failed',
        severity: 'warning',
        subjectType: 'job',
        subjectId: envelope.chain_id,
        dedupeKey,
        detail: {
          task,
          error: jobFailedWording(task, envelope.attempt, maxAttempts, why),
          attempts: envelope.attempt,
          max_attempts: maxAttempts,
          correlation_id: envelope.correlation_id,
          data: envelope.data,
        },
      });
      cmd.touch('review_items', id, created ? 'created' : 'updated');
      return { status: created ? 201 : 200, body: { review_item_id: id } };
    },
  );
}
