import { sql } from 'kysely';
import { currentScope } from '../core/context.js';
import { one, type Executor } from '../core/db.js';
import { newId } from '../core/ids.js';

/**
 * What every job carries besides its own data: who caused it (the correlation
 * id of the request, so the job's log lines and audit events join the
 * request's), for which tenant, and which attempt of how many this is.
 */
export interface JobEnvelope<T = unknown> {
  correlation_id: string;
  tenant_id: string | null;
  attempt: number;
  max_attempts: number;
  /** Stable across the retries of one job (the first run's id). */
  chain_id: string;
  /** A periodic job's (cron tick or timer), and its retries': its give-ups share one open item per task. */
  periodic?: boolean;
  data: T;
}

export interface EnqueueOptions {
  /** A second job with the same key replaces the waiting one instead of adding another. */
  jobKey?: string;
  /** `preserve_run_at`: an existing waiting job keeps its time (for periodic sweeps). */
  jobKeyMode?: 'replace' | 'preserve_run_at';
  runAt?: Date;
  /** Attempts before the job is given up (default: JOB_MAX_ATTEMPTS of the worker). */
  maxAttempts?: number;
  tenantId?: string | null;
  correlationId?: string;
}

/**
 * Runs of one attempt that graphile-worker itself re-tries: only when the
 * worker died mid-run (its lock expires) or our retry bookkeeping itself
 * failed. Business retries with backoff are ours (see runJob.ts).
 */
export const CRASH_RERUNS = 5;

export function makeEnvelope<T>(data: T, options: Omit<EnqueueOptions, 'jobKeyMode'> = {}): JobEnvelope<T> {
  const scope = currentScope();
  return {
    correlation_id: options.correlationId ?? scope?.correlationId ?? `job-${newId()}`,
    tenant_id: options.tenantId !== undefined ? options.tenantId : (scope?.tenantId ?? null),
    attempt: 1,
    max_attempts: options.maxAttempts ?? 0, // 0: the worker's default
    chain_id: newId(),
    data,
  };
}

/**
 * Enqueues a job on the caller's transaction (the transactional outbox): it
 * becomes visible to workers when the business transaction commits, and never
 * exists if it rolls back. Runs `enqueue_job`, which is the only right the app
 * role has on the job queue.
 */
export async function enqueueJob<T>(
  tx: Executor,
  task: string,
  data: T,
  /** `keep_waiting` (only here, in the enqueuing transaction): a job with the key that is queued and not running is kept as it is (payload, attempt count, time); otherwise as `preserve_run_at`. */
  options: Omit<EnqueueOptions, 'jobKeyMode'> & { jobKeyMode?: EnqueueOptions['jobKeyMode'] | 'keep_waiting' } = {},
): Promise<string> {
  const envelope = makeEnvelope(data, options);
  const row = await one(
    tx,
    sql<{ id: string }>`
      SELECT enqueue_job(${task}, ${JSON.stringify(envelope)}::jsonb, ${options.runAt ?? null}::timestamptz, ${CRASH_RERUNS}::integer,
                         ${options.jobKey ?? null}::text, ${options.jobKeyMode ?? 'replace'}::text)::text AS id`,
  );
  return row.id;
}
