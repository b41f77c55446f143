import { randomUUID } from 'node:crypto';
import { fingerprintRequest, runCommand, type CommandFn, type CommandOutcome } from '../core/command.js';
import type { JobContext } from './task.js';

/**
 * Runs a command from a job, exactly like a request would: one transaction,
 * an operation row, audit events (actor `worker`, the job's correlation id),
 * row-level security for the tenant.
 */
export function jobCommand(ctx: JobContext, tenantId: string, type: string, fn: CommandFn, payload?: unknown): Promise<CommandOutcome> {
  return runCommand(
    ctx.db,
    {
      tenantId,
      principal: ctx.principal,
      correlationId: ctx.correlationId,
      fingerprint: fingerprintRequest('JOB', type, { job: ctx.jobId, run: randomUUID() }),
      payload: payload ?? null,
    },
    { type },
    fn,
  );
}
