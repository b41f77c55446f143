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
  const principal = cmd.principal;
  if (principal.kind !== 'token') return;
  if ((await getTenantSettings(cmd.tx, cmd.tenantId)).require_second_approver !== true) return;
  const maker = await maybeOne(cmd.tx, sql<{ actor_token_id: string | null }>`SELECT actor_token_id FROM operations WHERE tenant_id = ${cmd.tenantId} AND id = ${madeByOp}`);
  if (maker?.actor_token_id === principal.tokenId) {
    throw new AppError('forbidden', `${what} was made with this token, and this tenant requires a second approver (require_second_approver): another token must approve it`, {
      extra: { reason: 'second_approver_required' },
    });
  }
}
