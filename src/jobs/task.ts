import type pg from 'pg';
import type { Config } from '../config.js';
import type { Principal } from '../core/auth.js';
import type { Db, Tx } from '../core/db.js';
import type { Logger } from '../core/logger.js';
import type { EnqueueOptions } from './enqueueJob.js';

/** What a task's handler gets besides its data. */
export interface JobContext {
  /** App-role database (row-level security applies): business work goes through runCommand / inTenantTransaction. */
  db: Db;
  /** Owner pool, for the few cross-tenant sweeps (integrity, stuck orders) that must see every tenant. */
  ownerPool: pg.Pool;
  /** Owner pool of one connection for the nightly integrity run: it waits for a check's answer as long as a check may run (src/integrity/runChecks.ts, CHECK_STATEMENT_TIMEOUT_MS). */
  checkPool: pg.Pool;
  config: Config;
  logger: Logger;
  jobId: string;
  attempt: number;
  maxAttempts: number;
  correlationId: string;
  tenantId: string | null;
  /** The principal commands run by a job act as (audit actor `worker`). */
  principal: Principal;
  /** Enqueue another job now (outside any business transaction: for sweeps that fan out). */
  addJob(task: string, data: unknown, options?: EnqueueOptions): Promise<void>;
}

export interface TaskDefinition<T = any> {
  /** `part.verb`, e.g. `order.submit`. */
  name: string;
  /** Overrides JOB_MAX_ATTEMPTS for this task. */
  maxAttempts?: number;
  handle(data: T, ctx: JobContext): Promise<void>;
  /**
   * What a give-up is about, when that is more than its own run: give-ups of
   * one subject share one open `job_failed` item (a stuck order's recovery
   * that keeps failing through an outage, restarted by every sweep, opens one
   * item for the order, not one per run). Unset: one item per job chain.
   */
  reviewSubjectOf?(data: T): string | undefined;
  /**
   * The store a give-up is about (a tenant's job about one store's record: an
   * order's): its `job_failed` item and `job.give_up` operation are filed
   * under it, so that store's staff see them (store-limited tokens see only
   * their stores' items). Read in the give-up's transaction, under the job's
   * tenant. Unset, or undefined: no store (only unlimited tokens see it).
   */
  reviewStoreOf?(data: T, tx: Tx, tenantId: string): Promise<string | undefined>;
  /** After the last attempt failed (the review item is already open). */
  onGiveUp?(data: T, ctx: JobContext, error: Error): Promise<void>;
}

/** Thrown by a handler for a failure no retry can fix: straight to the review queue. */
export class PermanentJobError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentJobError';
  }
}

export const WORKER_PRINCIPAL: Principal = { kind: 'operator', name: 'worker' };

export function defineTask<T>(definition: TaskDefinition<T>): TaskDefinition<T> {
  return definition;
}
