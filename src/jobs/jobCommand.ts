import { randomUUID } from 'node:crypto';
import { fingerprintRequest, runCommand, type CommandFn, type CommandOutcome, type CommandResult } from '../core/command.js';
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

/** What jobCommandIfChanged answers for a command that changed nothing (rolled back: no operation was written). */
export const UNCHANGED: CommandResult = { status: 304, body: { changed: false } };

/**
 * A job's command that is recorded only if it changed something: when `fn`
 * touched no row (`cmd.touch`) and recorded no audit event, the command is
 * rolled back — no operation, no audit event — and answered UNCHANGED. For a
 * try that may well find nothing to do: a lookup answering what the order
 * already says, a provider answer a webhook has already applied. Operations
 * record what happened; an order polled for days must not fill them with
 * tries.
 */
export function jobCommandIfChanged(ctx: JobContext, tenantId: string, type: string, fn: CommandFn): Promise<CommandOutcome> {
  return jobCommand(ctx, tenantId, type, async (cmd) => {
    const result = await fn(cmd);
    return result.status < 300 && cmd.effects.length === 0 && cmd.events.length === 0 ? UNCHANGED : result;
  });
}
