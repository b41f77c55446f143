import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
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
 * The four-eyes rule for undoing (setting
 * `require_second_approver_for_reversals`, apart from the approvals' so that
 * turning one on never changes what the other's tenants allowed): the token
 * whose operation made a record — a sale (synced from a till too: the syncing
 * token made it), a payment, a workshop piece — may not void it, take goods
 * back from it or revert it; another token with the permission must (403
 * `second_approver_required`, nothing written). The cashier who refunds their
 * own sale and keeps the cash is the commonest retail fraud. Off by default.
 * Tokens only: the operator and the worker are no tenant's staff.
 *
 * Called in the command's transaction after the record is locked (a sale row,
 * the operation row), before anything is written and before an already-done
 * check: the maker is refused whether or not another token undid it first.
 * The setting and the maker are read in one statement (a void or a return
 * runs in the tenant's sale lane, where a round trip holds every sale behind
 * it).
 */
export async function assertSecondPersonToUndo(cmd: Command, madeByOp: string, what: string, action: string): Promise<void> {
  const principal = cmd.principal;
  if (principal.kind !== 'token') return;
  const { required, maker } = await one(
    cmd.tx,
    sql<{ required: boolean; maker: string | null }>`
      SELECT coalesce((SELECT settings -> 'require_second_approver_for_reversals' = 'true'::jsonb FROM tenants WHERE id = ${cmd.tenantId}), false) AS required,
             (SELECT actor_token_id FROM operations WHERE tenant_id = ${cmd.tenantId} AND id = ${madeByOp}) AS maker`,
  );
  if (required && maker === principal.tokenId) {
    throw new AppError(
      'forbidden',
      `${what} was made with this token, and this tenant requires a second person to undo it (require_second_approver_for_reversals): another token must ${action} it`,
      { extra: { reason: 'second_approver_required' } },
    );
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
