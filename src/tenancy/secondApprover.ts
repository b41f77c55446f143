import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { getTenantSettings } from './updateTenantSettings.js';

/**
 * The four-eyes rule, when the tenant turns it on (setting
 * `require_second_approver`): the token that made a record — its
 * operation's `actor_token_id` — may not approve it; another token must
 * (403, nothing written). Off by default: a shop run by one person approves
 * its own counts. The operator is not a tenant's staff and is not held to it.
 */
export async function assertSecondApprover(cmd: Command, madeByOp: string, what: string): Promise<void> {
  if (cmd.principal.kind !== 'token') return;
  if ((await getTenantSettings(cmd.tx, cmd.tenantId)).require_second_approver !== true) return;
  if (await madeByCaller(cmd, madeByOp)) {
    throw new AppError('forbidden', `${what} was made with this token, and this tenant requires a second approver (require_second_approver): another token must approve it`, {
      extra: { reason: 'second_approver_required' },
    });
  }
}

/**
 * Whether an operation was made with the caller's own token (its
 * `actor_token_id`, immutable like the operation): the maker of a record, for
 * the rules that want a second person. Operations of the worker, a webhook or
 * the operator have no token and were made by no caller.
 */
export async function madeByCaller(cmd: Command, opId: string): Promise<boolean> {
  const principal = cmd.principal;
  if (principal.kind !== 'token') return false;
  const maker = await maybeOne(cmd.tx, sql<{ actor_token_id: string | null }>`SELECT actor_token_id FROM operations WHERE tenant_id = ${cmd.tenantId} AND id = ${opId}`);
  return maker?.actor_token_id === principal.tokenId;
}
