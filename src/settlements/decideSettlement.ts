import { describeExpected, matchesExpected, type ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import { inStoreScope, type TenantPrincipal } from '../core/auth.js';
import { actionTakenOn, AlreadyDone, type Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import { PG, pgCode } from '../core/pgErrors.js';
import { assertSecondApprover } from '../tenancy/secondApprover.js';
import { findSettlement, SETTLEMENT_COLUMNS } from './queries.js';
import { settlementTransition, type SettlementDecision } from './settlementMath.js';
import type { SettlementRow } from './settlements.table.js';

/**
 * Approve or reject a submitted settlement, guarded by the version the caller
 * saw (If-Match). ONE conditional UPDATE `… WHERE version = $expected AND
 * status = 'submitted'`: of two managers approving at once, the second waits
 * for the first's row lock, then finds the version moved and updates nothing
 * → `412 version_conflict` — unless it is the same decision on the same
 * version with the same note: then it is answered with the first as already
 * done (answerIfAlreadyDecided). The row names exactly one decider.
 */
export async function decideSettlement(
  cmd: Command,
  principal: TenantPrincipal,
  id: string,
  decision: SettlementDecision,
  expectedVersion: ExpectedVersions,
  note: string | undefined,
): Promise<SettlementRow> {
  const current = await findSettlement(cmd.tx, cmd.tenantId, id);
  if (!current || !inStoreScope(principal, current.store_id)) throw notFound('settlement');
  cmd.storeId = current.store_id;
  // Four-eyes (tenant setting): the count is approved by someone else. A rejection asks for a recount; the day stays closed (migration 0810).
  if (decision === 'approve') await assertSecondApprover(cmd, current.op_id, 'the settlement');
  let decided: SettlementRow | undefined;
  try {
    decided = await maybeOne(
      cmd.tx,
      sql<SettlementRow>`
        UPDATE settlements
        SET status = ${decision === 'approve' ? 'approved' : 'rejected'}, version = version + 1, decided_by = ${cmd.actor},
            decided_op = ${cmd.opId}, decided_at = now(), decision_note = ${note ?? null}, updated_at = now()
        WHERE tenant_id = ${cmd.tenantId} AND id = ${id} AND version = ANY(${expectedVersion}::int[]) AND status = 'submitted'
        RETURNING ${SETTLEMENT_COLUMNS}`,
    );
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('conflict', 'this store-day already has an approved settlement', { cause: error });
    }
    throw error;
  }
  if (!decided) {
    const now = (await findSettlement(cmd.tx, cmd.tenantId, id)) ?? current;
    await answerIfAlreadyDecided(cmd, now, decision, expectedVersion, note);
    if (!matchesExpected(expectedVersion, now.version)) {
      throw new AppError('version_conflict', `the settlement is at version ${now.version}, not ${describeExpected(expectedVersion)}; reload it and decide again`, {
        extra: { current_version: now.version, current_status: now.status },
      });
    }
    const verdict = settlementTransition(now.status, decision);
    throw new AppError('invalid_transition', verdict.ok ? 'the settlement changed; reload it' : verdict.reason, { extra: { current_status: now.status } });
  }
  cmd.touch('settlements', id, 'updated');
  cmd.audit({ subjectType: 'settlement', subjectId: id, before: current, after: decided });
  return decided;
}

/**
 * The same decision sent again — a device that lost the answer, after its
 * Idempotency-Key expired, or a second manager deciding the same figures the
 * same way at once — on a settlement it already decided: answered with that
 * decision (`AlreadyDone`: its answer from its audit event, its operation;
 * nothing written, the key kept). The same request only: the decision the
 * settlement holds, made on a version the If-Match names, with the same note
 * (none and none are the same); the same decision with another note was not
 * recorded and is `409 invalid_transition`. Anything else returns, for the
 * usual refusal (412 for another version, 409 for another decision).
 */
async function answerIfAlreadyDecided(cmd: Command, now: SettlementRow, decision: SettlementDecision, expectedVersion: ExpectedVersions, note: string | undefined): Promise<void> {
  if (now.status !== (decision === 'approve' ? 'approved' : 'rejected')) return;
  const done = await actionTakenOn(cmd.tx, cmd.tenantId, { table: 'settlements', opColumn: 'decided_op', subjectType: 'settlement', id: now.id });
  if (done === undefined || done.takenOn === undefined || !matchesExpected(expectedVersion, done.takenOn)) return;
  if ((note ?? null) !== now.decision_note) {
    throw new AppError('invalid_transition', `the settlement was already ${now.status} with another note; nothing of this request was recorded`, {
      extra: { current_status: now.status },
    });
  }
  throw new AlreadyDone(done.after ?? now, done.opId);
}
