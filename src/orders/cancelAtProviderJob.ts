import { sql } from 'kysely';
import { inTenantTransaction, type Command } from '../core/command.js';
import { all, maybeOne } from '../core/db.js';
import { assert } from '../core/errors.js';
import { openReviewItem } from '../core/review.js';
import { storableJson } from '../core/text.js';
import { jobCommand } from '../jobs/jobCommand.js';
import { defineTask, type JobContext } from '../jobs/task.js';
import { providerCancelKeyOf } from './cancelOrder.js';
import { findOrder } from './findOrder.js';
import { providerCancellationOf, type ProviderCancellation } from './orderStatus.js';
import type { ProviderCancelAnswer } from './fulfilmentProvider.js';
import { providerFrom } from './provider.js';
import { byOrder, orderStoreOf } from './submitOrderJob.js';
import { claimOrder } from './claimOrder.js';

/**
 * `order.provider_cancel`: a manager cancelled an order the provider holds
 * (see cancelOrder); ask the provider to cancel it too. Finds the provider's
 * order by our idempotency key (the one thing we are sure it knows it by),
 * then cancels it under the order's cancel key, so a retry is the same
 * request. Outcomes, recorded on the order (`provider_cancellation`):
 *
 * - cancelled, or refused with the order `failed`/`cancelled` there (nothing
 *   ships): `confirmed`;
 * - the provider holds no order under our key: `not_found` (nothing to
 *   cancel; logged);
 * - refused otherwise — it shipped (`completed`) or will not say: `refused`,
 *   `last_error` says why, and one `order_cancel_refused` review item
 *   (critical: goods are on their way on an order the shop cancelled, and
 *   perhaps refunded). The order stays `cancelled`: that is what the manager
 *   decided and the customer was told, and a provider answer never moves a
 *   final order; someone arranges the return or takes the refund back.
 * - 5xx, timeouts, network errors, 401/403/408/409/429: thrown, retried with
 *   backoff like every provider call. After the last attempt one `job_failed`
 *   item per order stays open, the order stays `requested`, and the stuck-order
 *   sweep starts another round ORDERS_STUCK_AFTER_SECONDS later: a cancel
 *   never stops being asked while the provider is away.
 */
export const cancelAtProvider = defineTask<{ order_id: string }>({
  name: 'order.provider_cancel',
  reviewSubjectOf: byOrder,
  reviewStoreOf: orderStoreOf,
  // The round gave up: the sweep's clock restarts, so the next round comes
  // ORDERS_STUCK_AFTER_SECONDS from now, not at the next sweep.
  async onGiveUp(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    await restartSweepClock(ctx, tenantId, data.order_id);
  },
  async handle(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    // Each call to the provider restarts the sweep's clock first: the sweep
    // then queues no second job (it would run beside this one) while this
    // one is at work. Before each call, not once a try: a try is two calls
    // (the lookup, then the cancel), up to twice FULFILMENT_TIMEOUT_MS, and
    // ORDERS_STUCK_AFTER_SECONDS (the clock's period) is only required to
    // be above one.
    if (!(await restartSweepClock(ctx, tenantId, data.order_id))) return;
    const order = await inTenantTransaction(ctx.db, tenantId, (tx) => findOrder(tx, tenantId, data.order_id));
    if (!order || order.status !== 'cancelled' || order.provider_cancellation !== 'requested') return;
    const provider = providerFrom(ctx.config);
    const found = await provider.findByIdempotencyKey(order.provider_key, { reference: order.id, merchant: tenantId });
    if (found && !(await restartSweepClock(ctx, tenantId, order.id))) return;
    const answer: ProviderCancelAnswer = found ? await provider.cancelOrder(found.id, providerCancelKeyOf(order.provider_key)) : { outcome: 'not_found' };
    const outcome = providerCancellationOf(answer);
    const recorded = await jobCommand(ctx, tenantId, 'order.provider_cancel', (cmd) =>
      recordProviderCancellation(cmd, order.id, outcome, { providerOrderId: found?.id ?? null, answer }),
    );
    const logged = { order_id: order.id, provider_order_id: found?.id ?? null, outcome, recorded: recorded.status === 200 };
    if (outcome === 'refused') ctx.logger.warn({ ...logged, answer }, 'the provider refused to cancel an order we cancelled');
    else if (outcome === 'not_found') ctx.logger.warn(logged, 'the provider holds no order to cancel under our key');
    else ctx.logger.info(logged, 'order cancelled at the provider');
  },
});

/**
 * Claims the order for the next call of this try of the cancellation
 * (claimOrder, no operation): provider_cancellation_at set to now while the
 * cancellation is still `requested` (not the order's version: nothing a
 * client sees changes). The claim lasts ORDERS_STUCK_AFTER_SECONDS, above
 * one call's FULFILMENT_TIMEOUT_MS. False: it is no longer requested (answered).
 */
function restartSweepClock(ctx: JobContext, tenantId: string, orderId: string): Promise<boolean> {
  return claimOrder(
    ctx,
    tenantId,
    orderId,
    sql<{ claimed: number }>`
      UPDATE orders SET provider_cancellation_at = now()
      WHERE tenant_id = ${tenantId} AND id = ${orderId} AND provider_cancellation = 'requested'
      RETURNING 1 AS claimed`,
  );
}

/** How much of the provider's answer to a cancel is kept (JSON text characters). */
const ANSWER_MAX_LENGTH = 10_000;

/**
 * Records the provider's answer on the order, once: only while the
 * cancellation is `requested` (a second run — two workers, a crash after the
 * call — finds it recorded and writes nothing, and opens no second item).
 */
async function recordProviderCancellation(
  cmd: Command,
  orderId: string,
  outcome: ProviderCancellation,
  context: { providerOrderId: string | null; answer: ProviderCancelAnswer },
) {
  const { answer } = context;
  // The provider's answer as recorded (audit, review item), its body cut to a size a review item can show.
  const recorded =
    answer.outcome === 'refused'
      ? { ...answer, body: storableJson(answer.body, { maxLength: ANSWER_MAX_LENGTH }) }
      : answer.outcome === 'cancelled'
        ? { ...answer, order: storableJson(answer.order, { maxLength: ANSWER_MAX_LENGTH }) }
        : answer;
  const refusal =
    answer.outcome === 'refused'
      ? `the provider refused the cancellation (${answer.httpStatus}): the order is ${answer.providerStatus ?? 'in a state it did not name'} there`
      : null;
  const order = await maybeOne(
    cmd.tx,
    sql<{ store_id: string; provider_key: string }>`
      UPDATE orders SET provider_cancellation = ${outcome}, provider_cancellation_at = now(),
             last_error = coalesce(${outcome === 'refused' ? refusal : null}, last_error),
             version = version + 1, updated_at = now()
      WHERE tenant_id = ${cmd.tenantId} AND id = ${orderId} AND provider_cancellation = 'requested'
      RETURNING store_id, provider_key`,
  );
  if (!order) return { status: 409, body: { reason: 'the cancellation was already recorded' } };
  cmd.storeId = order.store_id;
  cmd.touch('orders', orderId, 'updated');
  cmd.audit({
    subjectType: 'order',
    subjectId: orderId,
    before: { provider_cancellation: 'requested' },
    after: { provider_cancellation: outcome },
    payload: { provider_order_id: context.providerOrderId, answer: recorded },
  });
  if (outcome === 'refused' && answer.outcome === 'refused') {
    const cancelled = await maybeOne(
      cmd.tx,
      sql<{ note: string | null }>`
        SELECT detail ->> 'note' AS note FROM order_status_history
        WHERE tenant_id = ${cmd.tenantId} AND order_id = ${orderId} AND to_status = 'cancelled' ORDER BY id DESC LIMIT 1`,
    );
    const id = await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, {
      kind: 'order_cancel_refused',
      severity: 'critical',
      subjectType: 'order',
      subjectId: orderId,
      storeId: order.store_id,
      dedupeKey: `order-cancel-refused:${orderId}`,
      detail: {
        provider_status: answer.providerStatus,
        provider_order_id: context.providerOrderId,
        http_status: answer.httpStatus,
        answer: recorded.outcome === 'refused' ? recorded.body : null,
        reason: cancelled?.note ?? null,
        provider_key: order.provider_key,
      },
    });
    cmd.touch('review_items', id, 'created');
    // The provider's `completed`, reported while our cancel was on its way,
    // opened an order_provider_mismatch item about the same shipment: this
    // item says it all, so that one is closed as superseded (one item to act on).
    const note = `superseded by order_cancel_refused ${id}: the provider refused the cancellation because the order had shipped`;
    const superseded = await all(
      cmd.tx,
      sql<{ id: string }>`
        UPDATE review_items SET status = 'resolved', resolved_at = now(), resolved_by_op = ${cmd.opId}, resolution_note = ${note}
        WHERE tenant_id = ${cmd.tenantId} AND status = 'open' AND kind = 'order_provider_mismatch' AND subject_type = 'order' AND subject_id = ${orderId}
        RETURNING id`,
    );
    for (const item of superseded) {
      cmd.touch('review_items', item.id, 'updated');
      cmd.audit({ subjectType: 'review_item', subjectId: item.id, before: { status: 'open' }, after: { status: 'resolved', resolution_note: note } });
    }
  }
  return { status: 200, body: { provider_cancellation: outcome } };
}
