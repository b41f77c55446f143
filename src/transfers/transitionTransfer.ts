import { describeExpected, matchesExpected, type ExpectedVersions } from '../core/expectedVersions.js';
import { sql, type RawBuilder } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { findTransfer } from './queries.js';
import { TRANSFER_TRANSITIONS, transferTransition, type TransferAction } from './transferState.js';
import type { TransferRow } from './transfers.table.js';

/**
 * Moves a transfer along one edge of the state machine with ONE conditional
 * UPDATE (`… WHERE status = <from>`): of two commands racing on the same
 * transfer, the second waits for the first's row lock, then finds the status
 * moved and updates nothing — it gets `409 invalid_transition`, never a second
 * stock movement. `set` holds the columns the transition stamps. The
 * actions lock the row first (lockTransfer), so `current` is the state moved
 * from; the condition stays as the statement's own guarantee.
 */
export async function transitionTransfer(
  cmd: Command,
  current: TransferRow,
  action: TransferAction,
  set: RawBuilder<unknown>,
  expectedVersion?: ExpectedVersions,
): Promise<void> {
  const { from, to } = TRANSFER_TRANSITIONS[action];
  const moved = await maybeOne(
    cmd.tx,
    sql<{ id: string }>`
      UPDATE stock_transfers SET status = ${to}, version = version + 1, updated_at = now(), ${set}
      WHERE tenant_id = ${cmd.tenantId} AND id = ${current.id} AND status = ${from}
        AND (${expectedVersion === undefined} OR version = ANY(${expectedVersion ?? []}::int[]))
      RETURNING id`,
  );
  if (moved) return;
  // Not in `from` (any more): report the transition from the status it is in now.
  const now = (await findTransfer(cmd.tx, cmd.tenantId, current.id)) ?? current;
  if (expectedVersion !== undefined && !matchesExpected(expectedVersion, now.version)) {
    throw new AppError('version_conflict', `the transfer is at version ${now.version}, not ${describeExpected(expectedVersion)} (If-Match)`, {
      extra: { current_version: now.version },
    });
  }
  const verdict = transferTransition(now.status, action);
  throw new AppError('invalid_transition', verdict.ok ? `the transfer changed during ${action}; retry` : verdict.reason, {
    extra: { current_status: now.status },
  });
}
