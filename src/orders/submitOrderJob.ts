import { sql } from 'kysely';
import { inTenantTransaction } from '../core/command.js';
import { all, maybeOne, type Tx } from '../core/db.js';
import { isUuid } from '../core/ids.js';
import { assert } from '../core/errors.js';
import { jobCommand, jobCommandIfChanged } from '../jobs/jobCommand.js';
import { defineTask, type JobContext } from '../jobs/task.js';
import { applyOrderEvent } from './applyOrderEvent.js';
import type { OrderRow } from './findOrder.js';
import { ProviderRejected, type ProviderOrder } from './fulfilmentProvider.js';
import { providerStatusOf } from './orderStatus.js';
import { providerFrom } from './provider.js';

/** Give-ups about one order share its one open `job_failed` item (see TaskDefinition.reviewSubjectOf). */
export const byOrder = (data: { order_id?: unknown } | null | undefined): string | undefined => (typeof data?.order_id === 'string' ? data.order_id : undefined);

/** An order job's give-up is filed under the order's store (see TaskDefinition.reviewStoreOf): its staff see it. */
export async function orderStoreOf(data: { order_id?: unknown } | null | undefined, tx: Tx, tenantId: string): Promise<string | undefined> {
  const orderId = byOrder(data);
  if (orderId === undefined || !isUuid(orderId)) return undefined;
  return (await maybeOne(tx, sql<{ store_id: string }>`SELECT store_id FROM orders WHERE tenant_id = ${tenantId} AND id = ${orderId}`))?.store_id;
}

/**
 * Records what the provider said about an order (create response or recovery
 * lookup), in one command — written only if it changed the order: an answer
 * a webhook has already applied writes nothing.
 */
export async function recordProviderOrder(ctx: JobContext, tenantId: string, orderId: string, found: ProviderOrder, source: 'worker' | 'recovery'): Promise<void> {
  const status = providerStatusOf(found.status) ?? 'submitted';
  await jobCommandIfChanged(ctx, tenantId, source === 'worker' ? 'order.provider_accepted' : 'order.recover', async (cmd) => {
    const result = await applyOrderEvent(cmd, orderId, { type: 'provider_status', status }, source, { providerOrderId: found.id });
    return { status: 200, body: { status: result.order.status } };
  });
}

/**
 * `order.submit`: pending → submitting, then create the order at the provider
 * with the order's idempotency key, then submitting → submitted (or further,
 * if the provider is ahead). The network call is outside any transaction.
 *
 * - 5xx, timeout, network error: thrown, so the worker retries with backoff;
 *   the order stays `submitting` and the same key is sent again.
 * - 4xx: the provider refuses this order for good → `failed`.
 * - already past `submitting` (a webhook or recovery got there first, or a
 *   manager cancelled while pending): nothing to do.
 * After the last attempt the order stays `submitting`; the stuck-order sweep
 * asks the provider by key and moves it on or submits again.
 */
export const submitOrder = defineTask<{ order_id: string }>({
  name: 'order.submit',
  // Each recovery submits the order again as a new chain of attempts: while
  // its creates keep failing, the chains' give-ups share the order's one open
  // item (it opened one per chain: four for one order, besides its order_failed).
  reviewSubjectOf: byOrder,
  reviewStoreOf: orderStoreOf,
  async handle(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    const started = await jobCommand(ctx, tenantId, 'order.submit', async (cmd) => {
      const result = await applyOrderEvent(cmd, data.order_id, { type: 'submit' }, 'worker', { countSubmitAttempt: true });
      if (!result.ok) return { status: 409, body: { reason: result.reason } };
      return { status: 200, body: result.order };
    });
    if (started.status !== 200) {
      // `{ reason }` (or a replayed answer): logged flat, not as reason.reason.
      ctx.logger.info({ order_id: data.order_id, ...(started.body as Record<string, unknown>) }, 'order needs no submitting');
      return;
    }
    const order = started.body as OrderRow;
    const lines = await inTenantTransaction(ctx.db, tenantId, (tx) =>
      all(tx, sql<{ sku_id: string; quantity: number }>`
        SELECT sku_id, quantity FROM order_lines WHERE tenant_id = ${tenantId} AND order_id = ${order.id} ORDER BY line_no`),
    );
    let created: ProviderOrder;
    try {
      created = await providerFrom(ctx.config).createOrder(order.provider_key, {
        reference: order.id,
        merchant: tenantId,
        lines,
        shipping_address: order.shipping_address,
        payment_reference: order.payment_reference,
      });
    } catch (error) {
      if (!(error instanceof ProviderRejected)) throw error;
      // Written only if it fails the order: a refusal arriving after the order
      // moved on (a webhook was faster) is stale, and changes nothing.
      await jobCommandIfChanged(ctx, tenantId, 'order.provider_rejected', async (cmd) => {
        const result = await applyOrderEvent(cmd, order.id, { type: 'provider_rejected' }, 'worker', { lastError: error.message });
        return { status: 200, body: { status: result.order.status } };
      });
      ctx.logger.warn({ order_id: order.id, err: error }, 'provider refused the order');
      return;
    }
    await recordProviderOrder(ctx, tenantId, order.id, created, 'worker');
    ctx.logger.info({ order_id: order.id, provider_order_id: created.id }, 'order submitted');
  },
});
