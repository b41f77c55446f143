import { assertExpectedVersion, matchesExpected, type ExpectedVersions } from '../core/expectedVersions.js';
import { sql, type RawBuilder } from 'kysely';
import { actionTakenOn, AlreadyDone, type Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { findTransfer } from './queries.js';
import { TRANSFER_TRANSITIONS, transferTransition, type TransferAction, type TransferStatus } from './transferState.js';
import type { TransferRow } from './transfers.table.js';

/**
 * Moves a transfer along one edge of the state machine with ONE conditional
 * UPDATE (`… WHERE status = <from>`): of two commands racing on the same
 * transfer, the second waits for the first's row lock, then finds the status
 * moved and updates nothing — it gets `409 invalid_transition` (or, the same
 * action with the same content, is answered as already done before it gets
 * here: answerIfAlreadyDone), never a second stock movement. `set` holds the columns the transition stamps. The
 * actions lock the row first (lockTransfer), so `current` is the state moved
 * from; the condition stays as the statement's own guarantee.
 *
 * The moment of the move is `STAMP`, read when the statement runs, under the
 * row's lock — not now(), the transaction's start: a receipt whose
 * transaction began before the approval it then waited for was stamped
 * received before it was approved (as the stock ledger's rows, migration 0816).
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
      UPDATE stock_transfers SET status = ${to}, version = version + 1, updated_at = stamp.at, ${set}
      FROM (SELECT clock_timestamp() AS at) stamp
      WHERE tenant_id = ${cmd.tenantId} AND id = ${current.id} AND status = ${from}
        AND (${expectedVersion === undefined} OR version = ANY(${expectedVersion ?? []}::int[]))
      RETURNING id`,
  );
  if (moved) return;
  // Not in `from` (any more): report the transition from the status it is in now.
  const now = (await findTransfer(cmd.tx, cmd.tenantId, current.id)) ?? current;
  assertExpectedVersion(expectedVersion, now.version, 'transfer');
  const verdict = transferTransition(now.status, action);
  throw new AppError('invalid_transition', verdict.ok ? `the transfer changed during ${action}; retry` : verdict.reason, {
    extra: { current_status: now.status },
  });
}

/** When a transition happened, for its `set`: the moment its UPDATE ran, under the transfer's lock. */
export const STAMP = sql`stamp.at`;

/** The column naming the operation that took each action. */
const DONE_BY: Record<TransferAction, 'approved_op' | 'received_op' | 'cancelled_op'> = {
  approve: 'approved_op',
  receive: 'received_op',
  cancel: 'cancelled_op',
};

/** The statuses a transfer is in once the action was taken (an approved transfer may be received since). */
const PAST: Record<TransferAction, readonly TransferStatus[]> = {
  approve: ['approved', 'received'],
  receive: ['received'],
  cancel: ['cancelled'],
};

/**
 * An action repeated on a transfer already past it — a device that lost the
 * answer sends the same request again, after its Idempotency-Key expired —
 * is answered as already done: `AlreadyDone` with the answer the action gave
 * (the transfer as its operation left it, from its audit event) and that
 * operation, so nothing is written and the key is kept with that answer.
 * Only the same request: an If-Match must name the version the action was
 * taken on (another version: the caller acted on something else, and the
 * transition answers 412/409 as before), and `sameContent` must accept the
 * transfer as it is (a receipt: the same quantities). Called with the row
 * locked (lockTransfer), before anything is changed; returns when the action
 * was not taken, for the transition to go on (or refuse).
 */
export async function answerIfAlreadyDone(
  cmd: Command,
  current: TransferRow,
  action: TransferAction,
  expectedVersion: ExpectedVersions | undefined,
  sameContent: (transfer: TransferRow) => boolean = () => true,
): Promise<void> {
  if (!PAST[action].includes(current.status)) return;
  const done = await actionTakenOn(cmd.tx, cmd.tenantId, { table: 'stock_transfers', opColumn: DONE_BY[action], subjectType: 'stock_transfer', id: current.id });
  if (done === undefined) return;
  if (expectedVersion !== undefined && (done.takenOn === undefined || !matchesExpected(expectedVersion, done.takenOn))) return;
  if (!sameContent(current)) {
    throw new AppError('invalid_transition', `the transfer was already ${current.status} by a request with other content; nothing of this one was recorded`, {
      extra: { current_status: current.status },
    });
  }
  throw new AlreadyDone(done.after ?? current, done.opId);
}
