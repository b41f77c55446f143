import { sql } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';
import type { TransferRow } from './transfers.table.js';

const TRANSFER_COLUMNS = sql`
  t.id, t.source_store_id, t.destination_store_id, t.status, t.version, t.note, t.requested_by,
  t.approved_by, t.approved_at, t.received_by, t.received_at, t.cancelled_by, t.cancelled_at, t.op_id, t.created_at,
  coalesce((SELECT jsonb_agg(jsonb_build_object('sku_id', i.sku_id, 'quantity', i.quantity, 'quantity_in_transit', i.quantity_in_transit,
                                                'quantity_received', i.quantity_received) ORDER BY i.sku_id)
            FROM stock_transfer_items i WHERE i.tenant_id = t.tenant_id AND i.transfer_id = t.id), '[]'::jsonb) AS items`;

export async function findTransfer(tx: Tx, tenantId: string, id: string): Promise<TransferRow | undefined> {
  return maybeOne(tx, sql<TransferRow>`SELECT ${TRANSFER_COLUMNS} FROM stock_transfers t WHERE t.tenant_id = ${tenantId} AND t.id = ${id}`);
}

/**
 * The transfer as it is now, its row locked for the rest of the transaction:
 * the lock is taken first (waiting for a command that is moving it), and the
 * transfer is read in a later statement, whose snapshot sees what that
 * command committed. A command's `before` is then the state it moves from
 * (a receipt that read the transfer just before its approval committed
 * recorded the requested transfer as its before).
 */
export async function lockTransfer(tx: Tx, tenantId: string, id: string): Promise<TransferRow | undefined> {
  const locked = await maybeOne(tx, sql<{ id: string }>`SELECT id FROM stock_transfers WHERE tenant_id = ${tenantId} AND id = ${id} FOR UPDATE`);
  return locked ? findTransfer(tx, tenantId, id) : undefined;
}

/** Transfers touching the caller's stores (null = all), newest first by id. */
export async function listTransfers(
  tx: Tx,
  tenantId: string,
  storeIds: readonly string[] | null,
  filter: { storeId?: string | undefined; status?: string | undefined },
  before: string | undefined,
  limit: number,
): Promise<TransferRow[]> {
  return all(
    tx,
    sql<TransferRow>`
      SELECT ${TRANSFER_COLUMNS} FROM stock_transfers t
      WHERE t.tenant_id = ${tenantId}
        ${andIf(storeIds, (ids) => sql`(t.source_store_id = ANY(${ids}::uuid[]) OR t.destination_store_id = ANY(${ids}::uuid[]))`)}
        ${andIf(filter.storeId, (storeId) => sql`(t.source_store_id = ${storeId}::uuid OR t.destination_store_id = ${storeId}::uuid)`)}
        ${andIf(filter.status, (status) => sql`t.status = ${status}`)}
        ${andIf(before, (id) => sql`t.id < ${id}::uuid`)}
      ORDER BY t.id DESC LIMIT ${limit}`,
  );
}

/** Both ends of these transfers (a transfer's operations concern the staff of either). */
export async function transferEnds(tx: Tx, tenantId: string, ids: readonly string[]): Promise<string[]> {
  const rows = await all(
    tx,
    sql<{ store_id: string }>`
      SELECT unnest(ARRAY[source_store_id, destination_store_id]) AS store_id
      FROM stock_transfers WHERE tenant_id = ${tenantId} AND id = ANY(${ids}::uuid[])`,
  );
  return rows.map((row) => row.store_id);
}
