import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { enqueueJob } from '../jobs/enqueueJob.js';
import { applyOrderEvent, orThrow, type OrderPatch } from './applyOrderEvent.js';

export const providerCancelJobKey = (orderId: string) => `order.provider_cancel:${orderId}`;

/** The key the provider de-duplicates our cancel on: one per order, derived from the order's own key. */
export const providerCancelKeyOf = (providerKey: string) => `${providerKey}:cancel`;

/**
 * A manager cancels an order (409 invalid_transition unless pending,
 * submitted or processing). The order is `cancelled` at once — what the
 * manager decided, and what the API has always answered. If the provider
 * holds it (submitted / processing), the same transaction records the
 * cancellation as `requested` and enqueues `order.provider_cancel`, which
 * asks the provider to cancel it too (the outbox: no cancelled order the
 * provider is not told about, no call for a cancel that rolled back). A
 * pending order never reached the provider: nothing to ask.
 */
export async function cancelOrder(cmd: Command, orderId: string, patch: OrderPatch) {
  const result = orThrow(await applyOrderEvent(cmd, orderId, { type: 'cancel' }, 'api', patch));
  if (result.moved && (result.before.status === 'submitted' || result.before.status === 'processing')) {
    await sql`
      UPDATE orders SET provider_cancellation = 'requested', provider_cancellation_at = now()
      WHERE tenant_id = ${cmd.tenantId} AND id = ${orderId}`.execute(cmd.tx);
    await enqueueJob(cmd.tx, 'order.provider_cancel', { order_id: orderId }, {
      tenantId: cmd.tenantId,
      correlationId: cmd.input.correlationId,
      jobKey: providerCancelJobKey(orderId),
    });
  }
  return result;
}
