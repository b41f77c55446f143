import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import type { ProviderSim } from '../providerSim/providerSim.js';
import { submitJobKey } from './createOrder.js';
import { signWebhook } from './webhookSignature.js';

export const WEBHOOK_SECRET = 'test-fulfilment-secret';

export interface OrderShop {
  tenantId: string;
  owner: ApiClient;
  storeId: string;
  skuId: string;
}

export async function newOrderShop(t: TestApp): Promise<OrderShop> {
  const { tenantId, owner } = await t.newTenant();
  const store = await owner.post('/v1/stores', { code: `S${randomUUID().slice(0, 6)}`, name: 'Web shop' });
  const sku = await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Rope', unit: 'metre', price: 250 });
  assert.equal(store.status, 201);
  assert.equal(sku.status, 201);
  return { tenantId, owner, storeId: store.body.id, skuId: sku.body.id };
}

export const orderBody = (shop: OrderShop) => ({
  store_id: shop.storeId,
  lines: [{ sku_id: shop.skuId, quantity: 1500 }],
  shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' },
  payment_reference: `pay_${randomUUID().slice(0, 8)}`,
});

export async function statusOf(admin: pg.Pool, orderId: string): Promise<string | undefined> {
  return (await admin.query<{ status: string }>('SELECT status FROM orders WHERE id = $1', [orderId])).rows[0]?.status;
}

export async function waitForStatus(admin: pg.Pool, orderId: string, status: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(`order ${orderId} to be ${status} (is ${await statusOf(admin, orderId)})`, async () => (await statusOf(admin, orderId)) === status, timeoutMs);
}

export async function historyOf(admin: pg.Pool, orderId: string): Promise<Array<{ from_status: string | null; to_status: string; source: string }>> {
  return (await admin.query('SELECT from_status, to_status, source FROM order_status_history WHERE order_id = $1 ORDER BY id', [orderId])).rows;
}

/** The lookups of an order at the provider by our idempotency key (GET /orders?idempotency_key=…) the simulator has received. */
export function providerLookups(sim: ProviderSim, providerKey: string): number {
  return sim.requests.filter((request) => request.method === 'GET' && request.path === `/orders?idempotency_key=${encodeURIComponent(providerKey)}`).length;
}

/**
 * Leaves a pending order stuck in `submitting` for an hour, as a worker that
 * died mid-submit would (its submit job gone, one call counted, after
 * `recoveries` recoveries), with its history row. Run with no worker running.
 */
export async function makeStuckSubmitting(admin: pg.Pool, orderId: string, recoveries = 0): Promise<{ tenantId: string; providerKey: string }> {
  await admin.query(`SELECT graphile_worker.remove_job($1)`, [submitJobKey(orderId)]);
  const row = (
    await admin.query(
      `UPDATE orders SET status = 'submitting', status_changed_at = now() - interval '1 hour', submit_attempts = 1, recoveries = $2
       WHERE id = $1 RETURNING tenant_id, provider_key, op_id`,
      [orderId, recoveries],
    )
  ).rows[0];
  await admin.query(
    `INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id) VALUES ($1, $2, 'pending', 'submitting', 'worker', '{}'::jsonb, $3)`,
    [row.tenant_id, orderId, row.op_id],
  );
  return { tenantId: row.tenant_id, providerKey: row.provider_key };
}

/** Posts a provider event signed with `secret` (default: the right one). */
export async function postWebhook(
  baseUrl: string,
  event: unknown,
  options: { secret?: string; timestamp?: number; signature?: string | null } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const body = JSON.stringify(event);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const signature =
    options.signature === undefined
      ? signWebhook(options.secret ?? WEBHOOK_SECRET, options.timestamp ?? Math.floor(Date.now() / 1000), body)
      : options.signature;
  if (signature !== null) headers['fulfilment-signature'] = signature;
  const response = await fetch(`${baseUrl}/v1/webhooks/fulfilment`, { method: 'POST', headers, body });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
}

export const providerEvent = (tenantId: string, orderId: string, status: string, id = `evt_${randomUUID()}`) => ({
  id,
  type: `order.${status}`,
  created_at: new Date().toISOString(),
  data: { order_id: `po_manual_${orderId.slice(0, 8)}`, reference: orderId, merchant: tenantId, status },
});

/** A provider event carrying the provider's number for it within the order (`data.sequence`). */
export const numberedProviderEvent = (tenantId: string, orderId: string, status: string, sequence: number) => {
  const event = providerEvent(tenantId, orderId, status);
  return { ...event, data: { ...event.data, sequence } };
};

/** The order's `order_provider_mismatch` review items. */
export async function providerMismatches(admin: pg.Pool, orderId: string): Promise<number> {
  return (await admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId])).rows[0].n;
}

/** The order's `order_failed` review items (its details): an order that ended without shipping, for someone to refund or place again. */
export async function orderFailedItems(admin: pg.Pool, orderId: string): Promise<Array<Record<string, unknown>>> {
  return (await admin.query(`SELECT detail FROM review_items WHERE subject_id = $1 AND kind = 'order_failed' ORDER BY created_at`, [orderId])).rows.map((row) => row.detail);
}

/** The order's recorded provider events, as `status:outcome`, in the order received. */
export async function webhookOutcomes(admin: pg.Pool, orderId: string): Promise<string[]> {
  const { rows } = await admin.query(`SELECT provider_status, outcome FROM fulfilment_webhook_events WHERE order_id = $1 ORDER BY received_at`, [orderId]);
  return rows.map((row) => `${row.provider_status}:${row.outcome}`);
}

/** The order's `fulfilment_webhook_conflict` review items (an event id redelivered with other content). */
export async function webhookConflicts(admin: pg.Pool, orderId: string): Promise<number> {
  return (await admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1 AND kind = 'fulfilment_webhook_conflict'`, [orderId])).rows[0].n;
}
