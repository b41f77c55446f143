import { sql } from 'kysely';
import { all, maybeOne, type Tx } from '../core/db.js';
import type { OrderStatus, ProviderCancellation } from './orderStatus.js';

export type { ProviderCancellation } from './orderStatus.js';

export interface ShippingAddress {
  name: string;
  line1: string;
  line2?: string;
  city: string;
  postal_code: string;
  country: string;
  phone?: string;
}

export interface OrderRow {
  id: string;
  store_id: string;
  status: OrderStatus;
  shipping_address: ShippingAddress;
  payment_reference: string;
  provider_key: string;
  provider_order_id: string | null;
  submit_attempts: number;
  recoveries: number;
  last_error: string | null;
  /** Where asking the provider to cancel the order stands (migration 0819); null: nothing asked. */
  provider_cancellation: ProviderCancellation | null;
  status_changed_at: Date;
  version: number;
  op_id: string;
  created_at: Date;
  updated_at: Date;
}

export const ORDER_COLUMNS = sql`id, store_id, status, shipping_address, payment_reference, provider_key, provider_order_id, submit_attempts,
  recoveries, last_error, provider_cancellation, status_changed_at, version, op_id, created_at, updated_at`;

export async function findOrder(tx: Tx, tenantId: string, id: string): Promise<OrderRow | undefined> {
  return maybeOne(tx, sql<OrderRow>`SELECT ${ORDER_COLUMNS} FROM orders WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

export interface OrderView extends OrderRow {
  lines: Array<{ line_no: number; sku_id: string; quantity: number }>;
  history: Array<{ from_status: OrderStatus | null; to_status: OrderStatus; source: 'api' | 'worker' | 'webhook' | 'recovery'; op_id: string; created_at: Date }>;
}

/** An order with its lines and status history (for GET /v1/orders/{id}). */
export async function findOrderView(tx: Tx, tenantId: string, id: string): Promise<OrderView | undefined> {
  const order = await findOrder(tx, tenantId, id);
  if (!order) return undefined;
  const lines = await all(
    tx,
    sql<OrderView['lines'][number]>`SELECT line_no, sku_id, quantity FROM order_lines WHERE tenant_id = ${tenantId} AND order_id = ${id} ORDER BY line_no`,
  );
  const history = await all(
    tx,
    sql<OrderView['history'][number]>`
      SELECT from_status, to_status, source, op_id, created_at FROM order_status_history
      WHERE tenant_id = ${tenantId} AND order_id = ${id} ORDER BY id`,
  );
  return { ...order, lines, history };
}
