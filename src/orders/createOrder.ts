import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { newId } from '../core/ids.js';
import { assertSkusExist, assertStoreExists } from '../inventory/receiveStock.js';
import { enqueueJob } from '../jobs/enqueueJob.js';
import { findOrderView } from './findOrder.js';

export interface OrderInput {
  store_id: string;
  lines: Array<{ sku_id: string; quantity: number }>;
  shipping_address: Record<string, unknown>;
  payment_reference: string;
}

/** The key the provider de-duplicates on: one provider order per storekeep order, however often we call. */
export const providerKeyOf = (tenantId: string, orderId: string) => `storekeep:${tenantId}:${orderId}`;

export const submitJobKey = (orderId: string) => `order.submit:${orderId}`;

/**
 * Records the order (pending) and, in the same transaction, enqueues the job
 * that submits it to the provider (the outbox): no order without its job, no
 * job for an order that rolled back.
 */
export async function createOrder(cmd: Command, input: OrderInput) {
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  await assertSkusExist(cmd.tx, cmd.tenantId, input.lines.map((line) => line.sku_id), (index) => `/body/lines/${index}/sku_id`);
  const id = newId();
  await sql`
    INSERT INTO orders (tenant_id, id, store_id, shipping_address, payment_reference, provider_key, op_id)
    VALUES (${cmd.tenantId}, ${id}, ${input.store_id}, ${JSON.stringify(input.shipping_address)}::jsonb, ${input.payment_reference},
            ${providerKeyOf(cmd.tenantId, id)}, ${cmd.opId})`.execute(cmd.tx);
  await sql`
    INSERT INTO order_lines (tenant_id, id, order_id, line_no, sku_id, quantity, op_id)
    SELECT ${cmd.tenantId}, l.id, ${id}, l.line_no, l.sku_id, l.quantity, ${cmd.opId}
    FROM jsonb_to_recordset(${JSON.stringify(input.lines.map((line, index) => ({ id: newId(), line_no: index + 1, ...line })))}::jsonb)
      AS l(id uuid, line_no integer, sku_id uuid, quantity bigint)`.execute(cmd.tx);
  await sql`
    INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, op_id)
    VALUES (${cmd.tenantId}, ${id}, NULL, 'pending', 'api', ${cmd.opId})`.execute(cmd.tx);
  await enqueueJob(cmd.tx, 'order.submit', { order_id: id }, { tenantId: cmd.tenantId, correlationId: cmd.input.correlationId, jobKey: submitJobKey(id) });
  cmd.storeId = input.store_id;
  cmd.touch('orders', id, 'created');
  cmd.audit({ subjectType: 'order', subjectId: id, after: { status: 'pending', store_id: input.store_id } });
  const view = await findOrderView(cmd.tx, cmd.tenantId, id);
  return view!;
}
