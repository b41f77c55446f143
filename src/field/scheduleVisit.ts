import { sql } from 'kysely';
import { assertStoreInScope } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { maybeOne, one, utcMicrosWithinYears } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { VisitRow } from './field.table.js';
import { findVisit } from './queries.js';

export interface ScheduleVisitInput {
  point_of_sale_id: string;
  agent_token_id: string;
  scheduled_for: string;
}

/**
 * Schedules a visit of a field agent (a `field_agent` token whose store scope
 * reaches the point of sale's store) to a point of sale.
 */
export async function scheduleVisit(cmd: Command, input: ScheduleVisitInput): Promise<VisitRow> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'visits are scheduled by tenant tokens');
  // Answered as an ISO time in UTC, so it must be one: within the years
  // 0001–9999 in UTC (like a sale's client_created_at and stock's as_of).
  const when = await one(cmd.tx, sql<{ at: string | null }>`SELECT ${utcMicrosWithinYears(sql`${input.scheduled_for}::timestamptz`)} AS at`);
  if (when.at === null) {
    throw new AppError('validation_failed', 'scheduled_for is outside the years 0001–9999 (UTC)', {
      errors: [{ path: '/body/scheduled_for', message: 'must fall within the years 0001–9999 in UTC' }],
    });
  }
  const pointOfSale = await maybeOne(
    cmd.tx,
    sql<{ store_id: string }>`SELECT store_id FROM points_of_sale WHERE tenant_id = ${cmd.tenantId} AND id = ${input.point_of_sale_id}`,
  );
  if (!pointOfSale) throw new AppError('not_found', 'point of sale was not found');
  assertStoreInScope(principal, pointOfSale.store_id, 'point of sale');

  const agent = await maybeOne(
    cmd.tx,
    sql<{ role: string; store_ids: string[] | null; revoked_at: Date | null }>`
      SELECT role, store_ids, revoked_at FROM api_tokens WHERE tenant_id = ${cmd.tenantId} AND id = ${input.agent_token_id}`,
  );
  const agentProblem = !agent
    ? 'no such token'
    : agent.role !== 'field_agent'
      ? `token has role ${agent.role}, not field_agent`
      : agent.revoked_at !== null
        ? 'token is revoked'
        : agent.store_ids !== null && !agent.store_ids.includes(pointOfSale.store_id)
          ? "the point of sale's store is outside the agent's store scope"
          : null;
  if (agentProblem) {
    // A token limited to some stores sees only the tokens within them (as on
    // revoke): it is told that no usable agent has this id, not whether the
    // id exists, which role it has or whether it was revoked.
    const problem =
      principal.storeIds !== null && !(agent?.store_ids != null && agent.store_ids.every((id) => principal.storeIds!.includes(id)))
        ? "no field_agent token reaching the point of sale's store has this id"
        : agentProblem;
    throw new AppError('validation_failed', `agent_token_id: ${problem}`, { errors: [{ path: '/body/agent_token_id', message: problem }] });
  }

  const id = newId();
  await sql`
    INSERT INTO visits (tenant_id, id, point_of_sale_id, agent_token_id, scheduled_for, op_id)
    VALUES (${cmd.tenantId}, ${id}, ${input.point_of_sale_id}, ${input.agent_token_id}, ${input.scheduled_for}, ${cmd.opId})`.execute(cmd.tx);
  const visit = await findVisit(cmd.tx, cmd.tenantId, id);
  assert(visit, 'visit just inserted');
  cmd.storeId = pointOfSale.store_id;
  cmd.touch('visits', id);
  cmd.audit({ subjectType: 'visit', subjectId: id, after: visit });
  return visit;
}
