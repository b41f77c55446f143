import { sql } from 'kysely';
import { all, andIf, maybeOne, utcMicros, type Tx } from '../core/db.js';
import type { ConsignmentView, PointOfSaleRow, SettlementConflictView, SettlementView, VisitCompletion, VisitRow } from './field.table.js';

const POINT_OF_SALE_COLUMNS = sql`id, name, store_id, party_id, latitude::float8 AS latitude, longitude::float8 AS longitude, last_visit_at, last_visit_id, op_id, created_at`;
const VISIT_COLUMNS = sql`v.id, v.point_of_sale_id, p.store_id, v.agent_token_id, v.scheduled_for, v.status, v.completed_at, v.completed_by_op,
  v.completed_latitude::float8 AS completed_latitude, v.completed_longitude::float8 AS completed_longitude, v.completed_distance_m, v.client_created_at, v.op_id, v.created_at`;

export async function findPointOfSale(tx: Tx, tenantId: string, id: string): Promise<PointOfSaleRow | undefined> {
  return maybeOne(tx, sql<PointOfSaleRow>`SELECT ${POINT_OF_SALE_COLUMNS} FROM points_of_sale WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

/** Points of sale in id order (ids are time-ordered UUIDs); `storeIds` limits to a token's scope. */
export async function listPointsOfSale(
  tx: Tx,
  tenantId: string,
  storeIds: readonly string[] | null,
  filter: { storeId?: string | undefined },
  after: string | undefined,
  limit: number,
): Promise<PointOfSaleRow[]> {
  return all(
    tx,
    sql<PointOfSaleRow>`
      SELECT ${POINT_OF_SALE_COLUMNS} FROM points_of_sale
      WHERE tenant_id = ${tenantId}
        ${andIf(storeIds, (ids) => sql`store_id = ANY(${ids}::uuid[])`)}
        ${andIf(filter.storeId, (storeId) => sql`store_id = ${storeId}::uuid`)}
        ${andIf(after, (id) => sql`id > ${id}::uuid`)}
      ORDER BY id LIMIT ${limit}`,
  );
}

export async function findVisit(tx: Tx, tenantId: string, id: string): Promise<VisitRow | undefined> {
  return maybeOne(
    tx,
    sql<VisitRow>`
      SELECT ${VISIT_COLUMNS} FROM visits v JOIN points_of_sale p ON p.tenant_id = v.tenant_id AND p.id = v.point_of_sale_id
      WHERE v.tenant_id = ${tenantId} AND v.id = ${id}`,
  );
}

/** Visits by (scheduled_for, id), each with its exact `position` for a cursor. `agentTokenId` limits to one agent's visits; `storeIds` to a token's scope. */
export async function listVisits(
  tx: Tx,
  tenantId: string,
  scope: { storeIds: readonly string[] | null; agentTokenId?: string | undefined },
  filter: { status?: string | undefined; pointOfSaleId?: string | undefined },
  after: { scheduled_for: string; id: string } | undefined,
  limit: number,
): Promise<Array<VisitRow & { position: string }>> {
  return all(
    tx,
    sql<VisitRow & { position: string }>`
      SELECT ${VISIT_COLUMNS},
             -- the exact scheduled_for (microseconds) for the next page's cursor
             ${utcMicros(sql.ref('v.scheduled_for'))} AS position
      FROM visits v JOIN points_of_sale p ON p.tenant_id = v.tenant_id AND p.id = v.point_of_sale_id
      WHERE v.tenant_id = ${tenantId}
        ${andIf(scope.storeIds, (ids) => sql`p.store_id = ANY(${ids}::uuid[])`)}
        ${andIf(scope.agentTokenId, (agent) => sql`v.agent_token_id = ${agent}::uuid`)}
        ${andIf(filter.status, (status) => sql`v.status = ${status}`)}
        ${andIf(filter.pointOfSaleId, (pointOfSale) => sql`v.point_of_sale_id = ${pointOfSale}::uuid`)}
        ${andIf(after, (position) => sql`(v.scheduled_for, v.id) > (${position.scheduled_for}::timestamptz, ${position.id}::uuid)`)}
      ORDER BY v.scheduled_for, v.id LIMIT ${limit}`,
  );
}

export async function findConsignment(tx: Tx, tenantId: string, where: { id?: string; visitId?: string }): Promise<ConsignmentView | undefined> {
  const row = await maybeOne(
    tx,
    sql<Omit<ConsignmentView, 'lines'>>`
      SELECT id, visit_id, point_of_sale_id, store_id, status, settled_by_op, op_id, created_at FROM consignments
      WHERE tenant_id = ${tenantId} AND (id = ${where.id ?? null} OR visit_id = ${where.visitId ?? null})`,
  );
  if (!row) return undefined;
  const lines = await all(
    tx,
    sql<ConsignmentView['lines'][number]>`
      SELECT sku_id, quantity, unit_price, shortfall_quantity FROM consignment_lines WHERE tenant_id = ${tenantId} AND consignment_id = ${row.id} ORDER BY sku_id`,
  );
  return { ...row, lines };
}

export async function findSettlementByVisit(tx: Tx, tenantId: string, visitId: string): Promise<SettlementView | undefined> {
  const row = await maybeOne(
    tx,
    sql<Omit<SettlementView, 'lines'>>`
      SELECT id, consignment_id, visit_id, amount_owed, journal_entry_id, op_id, created_at FROM consignment_settlements
      WHERE tenant_id = ${tenantId} AND visit_id = ${visitId}`,
  );
  if (!row) return undefined;
  const lines = await all(
    tx,
    sql<SettlementView['lines'][number]>`
      SELECT sku_id, sold_quantity, returned_quantity, unit_price FROM consignment_settlement_lines
      WHERE tenant_id = ${tenantId} AND settlement_id = ${row.id} ORDER BY sku_id`,
  );
  return { ...row, lines };
}

/** The completion of a visit as stored: what complete-visit returns, first time and on replay. */
export async function loadVisitCompletion(tx: Tx, tenantId: string, visitId: string): Promise<VisitCompletion | undefined> {
  const visit = await findVisit(tx, tenantId, visitId);
  if (!visit) return undefined;
  const conflict = await maybeOne(
    tx,
    sql<SettlementConflictView>`
      SELECT consignment_id, settlement_id, settled_by_op, review_item_id FROM consignment_settlement_conflicts
      WHERE tenant_id = ${tenantId} AND visit_id = ${visitId}`,
  );
  return {
    visit,
    consignment: (await findConsignment(tx, tenantId, { visitId })) ?? null,
    settlement: (await findSettlementByVisit(tx, tenantId, visitId)) ?? null,
    // Only when its settlement was not recorded: the answer gains the field, no other answer changes.
    ...(conflict ? { settlement_conflict: conflict } : {}),
  };
}

/** Open consignments of a point of sale, by id, after `afterId`, at most `limit`. */
export async function listOpenConsignments(tx: Tx, tenantId: string, pointOfSaleId: string, afterId: string | undefined, limit: number): Promise<ConsignmentView[]> {
  const ids = await all(
    tx,
    sql<{ id: string }>`
      SELECT id FROM consignments
      WHERE tenant_id = ${tenantId} AND point_of_sale_id = ${pointOfSaleId} AND status = 'open' ${andIf(afterId, (id) => sql`id > ${id}::uuid`)}
      ORDER BY id LIMIT ${limit}`,
  );
  const views: ConsignmentView[] = [];
  for (const { id } of ids) {
    const view = await findConsignment(tx, tenantId, { id });
    if (view) views.push(view);
  }
  return views;
}
