import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { assertSkusExist } from '../inventory/receiveStock.js';
import { findTransfer } from './queries.js';
import type { TransferRow } from './transfers.table.js';

export interface TransferRequestInput {
  source_store_id: string;
  destination_store_id: string;
  items: Array<{ sku_id: string; quantity: number }>;
  note?: string | undefined;
}

/**
 * Records a request to move stock; nothing moves until it is approved. The
 * route has checked that the requester has either end in scope (before the
 * command, so that a replay is checked too).
 */
export async function requestTransfer(cmd: Command, input: TransferRequestInput): Promise<TransferRow> {
  if (input.source_store_id === input.destination_store_id) {
    throw new AppError('validation_failed', 'source and destination must be different stores', {
      errors: [{ path: '/body/destination_store_id', message: 'is the same store as the source' }],
    });
  }
  await assertBothEndsExist(cmd, input);
  const skus = await assertSkusExist(cmd.tx, cmd.tenantId, input.items.map((item) => item.sku_id));
  // Stock of a piece-tracked SKU is the sum of its workshop pieces; moving the
  // balance alone would break that invariant, so such SKUs are not transferred here.
  const pieceTracked = input.items.flatMap((item, index) => (skus.get(item.sku_id)?.tracks_pieces ? [index] : []));
  if (pieceTracked.length > 0) {
    throw new AppError('validation_failed', 'piece-tracked SKUs move as workshop pieces, not by transfer', {
      errors: pieceTracked.map((index) => ({ path: `/body/items/${index}/sku_id`, message: 'is piece-tracked' })),
    });
  }

  const quantities = new Map<string, number>();
  for (const item of input.items) quantities.set(item.sku_id, (quantities.get(item.sku_id) ?? 0) + item.quantity);
  const id = newId();
  await sql`
    INSERT INTO stock_transfers (tenant_id, id, source_store_id, destination_store_id, note, requested_by, op_id)
    VALUES (${cmd.tenantId}, ${id}, ${input.source_store_id}, ${input.destination_store_id}, ${input.note ?? null}, ${cmd.actor}, ${cmd.opId})`.execute(cmd.tx);
  const itemRows = await all(
    cmd.tx,
    sql<{ id: string }>`
      INSERT INTO stock_transfer_items (tenant_id, id, transfer_id, sku_id, quantity, op_id)
      SELECT ${cmd.tenantId}, i.id, ${id}, i.sku_id, i.quantity, ${cmd.opId}
      FROM jsonb_to_recordset(${JSON.stringify([...quantities].map(([sku_id, quantity]) => ({ id: newId(), sku_id, quantity })))}::jsonb)
        AS i(id uuid, sku_id uuid, quantity bigint)
      RETURNING id`,
  );
  const transfer = await findTransfer(cmd.tx, cmd.tenantId, id);
  if (!transfer) throw new Error('transfer just inserted is missing');
  cmd.storeId = input.source_store_id;
  cmd.touch('stock_transfers', id);
  for (const line of itemRows) cmd.touch('stock_transfer_items', line.id);
  cmd.audit({ subjectType: 'stock_transfer', subjectId: id, after: transfer });
  return transfer;
}

/**
 * Both ends are stores of the tenant: `404` otherwise, naming the end (or
 * ends) at its field, so the requester knows which id to correct. The route
 * has checked that one end is in the caller's scope; an end that exists but
 * is outside it is a store the caller may send to or ask from.
 */
async function assertBothEndsExist(cmd: Command, input: TransferRequestInput): Promise<void> {
  const ends = [input.source_store_id, input.destination_store_id];
  const found = new Set(
    (await all(cmd.tx, sql<{ id: string }>`SELECT id FROM stores WHERE tenant_id = ${cmd.tenantId} AND id = ANY(${ends}::uuid[])`)).map((row) => row.id),
  );
  const errors = (['source_store_id', 'destination_store_id'] as const).flatMap((field) =>
    found.has(input[field]) ? [] : [{ path: `/body/${field}`, message: 'is not a store of this tenant' }],
  );
  if (errors.length > 0) {
    const which = errors.length === 2 ? 'neither store was found' : `the ${errors[0]!.path === '/body/source_store_id' ? 'source' : 'destination'} store was not found`;
    throw new AppError('not_found', which, { errors });
  }
}
