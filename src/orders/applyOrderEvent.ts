import { assertExpectedVersion, type ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { openReviewItem } from '../core/review.js';
import { ORDER_COLUMNS, findOrder, type OrderRow } from './findOrder.js';
import { decide, providerContradicts, type Decision, type OrderEvent } from './orderStatus.js';

export type OrderSource = 'api' | 'worker' | 'webhook' | 'recovery';

export interface OrderPatch {
  providerOrderId?: string;
  lastError?: string;
  /** Why (a manager's reason), kept in the status history. */
  note?: string;
  /** Count one more call to the provider. */
  countSubmitAttempt?: boolean;
  /** If-Match of a manual action: the order must still be at one of these versions (else 412 version_conflict). */
  expectedVersion?: ExpectedVersions;
}

export type AppliedEvent =
  | { ok: true; moved: boolean; decision: Decision; before: OrderRow; order: OrderRow }
  | { ok: false; reason: string; order: OrderRow };

/**
 * Applies one event to an order inside the command's transaction: asks the
 * pure state machine, then writes the answer as a conditional UPDATE
 * (`WHERE status = <the status decided on>`). If another transaction moved
 * the order in between, the UPDATE matches nothing and we decide again on the
 * new status (bounded: each lost race means the order moved forward).
 * A move appends to the status history. Refusals are results, not errors.
 */
export async function applyOrderEvent(cmd: Command, orderId: string, event: OrderEvent, source: OrderSource, patch: OrderPatch = {}): Promise<AppliedEvent> {
  for (let round = 0; round < 10; round++) {
    const before = await findOrder(cmd.tx, cmd.tenantId, orderId);
    if (!before) throw notFound('order');
    assertExpectedVersion(patch.expectedVersion, before.version, 'order');
    const decision = decide(before.status, event);
    if (decision.kind === 'refuse') return { ok: false, reason: decision.reason, order: before };
    const to = decision.kind === 'move' ? decision.to : before.status;
    const providerOrderId = patch.providerOrderId ?? null;
    // A refusal or give-up that arrives after the order moved on (a webhook
    // was faster) is stale: its error does not belong on an order that is
    // progressing, and must not bump its version.
    const staleFailure = decision.kind === 'stay' && (event.type === 'give_up' || event.type === 'provider_rejected');
    const lastError = staleFailure ? undefined : patch.lastError;
    const hasPatch = (providerOrderId !== null && before.provider_order_id === null) || lastError !== undefined || patch.countSubmitAttempt === true;
    // What the provider said to our cancel (provider_cancellation) decides
    // whether its report is news (see providerContradicts).
    // The create's answer (source `worker`) saying `accepted`/`processing`
    // about an order the provider itself ended meanwhile (its `failed` or
    // `cancelled` webhook came first) was composed before that: not the
    // provider reviving the order, no news. Webhooks decide this in
    // receiveWebhook (a numbered event by its number: one numbered after the
    // provider's `failed` is news).
    if (
      event.type === 'provider_status' &&
      providerContradicts(before.status, event.status, before.provider_cancellation) &&
      !(source === 'worker' && (event.status === 'submitted' || event.status === 'processing') && (await providerEndedOrder(cmd, orderId)))
    ) {
      await noteProviderMismatch(cmd, before, event.status, source);
    }
    if (decision.kind === 'stay' && !hasPatch) return { ok: true, moved: false, decision, before, order: before };
    const order = await maybeOne(
      cmd.tx,
      sql<OrderRow>`
        UPDATE orders SET
          status = ${to},
          provider_order_id = coalesce(provider_order_id, ${providerOrderId}),
          last_error = coalesce(${lastError ?? null}, last_error),
          submit_attempts = submit_attempts + ${patch.countSubmitAttempt ? 1 : 0},
          status_changed_at = CASE WHEN ${decision.kind === 'move'} THEN now() ELSE status_changed_at END,
          version = version + 1,
          updated_at = now()
        WHERE tenant_id = ${cmd.tenantId} AND id = ${orderId} AND status = ${before.status}
          AND (${patch.expectedVersion === undefined} OR version = ${before.version})
        RETURNING ${ORDER_COLUMNS}`,
    );
    if (!order) continue; // moved under us: decide again on its new status
    if (decision.kind === 'move') {
      await sql`
        INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id)
        VALUES (${cmd.tenantId}, ${orderId}, ${before.status}, ${to}, ${source},
                ${JSON.stringify({ event: event.type, ...('status' in event ? { provider_status: event.status } : {}), ...(patch.lastError ? { error: patch.lastError } : {}), ...(patch.note ? { note: patch.note } : {}) })}::jsonb,
                ${cmd.opId})`.execute(cmd.tx);
    }
    cmd.storeId = order.store_id;
    cmd.touch('orders', orderId, 'updated');
    if (decision.kind === 'move' && (event.type === 'provider_status' || event.type === 'provider_rejected') && (to === 'failed' || to === 'cancelled')) {
      await noteEndedByProvider(cmd, order, event, source);
    }
    cmd.audit({
      subjectType: 'order',
      subjectId: orderId,
      before: { status: before.status, provider_order_id: before.provider_order_id },
      after: { status: order.status, provider_order_id: order.provider_order_id },
      payload: { event, source },
    });
    return { ok: true, moved: decision.kind === 'move', decision, before, order };
  }
  assert(false, 'an order cannot move ten times during one transition');
}

/**
 * The provider contradicts an order's final status (see providerContradicts): someone
 * must look. One open review item per order, however often the provider says
 * so (webhooks, lookups).
 */
async function noteProviderMismatch(cmd: Command, order: OrderRow, providerStatus: string, source: OrderSource): Promise<void> {
  const id = await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, {
    kind: 'order_provider_mismatch',
    severity: 'warning',
    subjectType: 'order',
    subjectId: order.id,
    storeId: order.store_id,
    dedupeKey: `order-provider-mismatch:${order.id}`,
    detail: { status: order.status, provider_status: providerStatus, source, provider_key: order.provider_key },
  });
  cmd.touch('review_items', id, 'created');
}

/**
 * The provider ended an order that was paid for (its `payment_reference`)
 * without shipping it: refused it (a 4xx to our submit), or reported it
 * `failed` or `cancelled` on its side. Not our doing, so nobody here knows
 * yet: one `order_failed` item asks someone to refund the customer or place
 * the order again (the same item a recovery that gave up opens; one per order
 * while it is open).
 */
async function noteEndedByProvider(cmd: Command, order: OrderRow, event: Extract<OrderEvent, { type: 'provider_status' | 'provider_rejected' }>, source: OrderSource): Promise<void> {
  const reason =
    event.type === 'provider_rejected'
      ? 'the provider refused the order'
      : event.status === 'cancelled'
        ? 'the provider cancelled the order on its side'
        : 'the provider reports the order failed';
  await openOrderFailedItem(cmd, order, reason, {
    status: order.status,
    ...(event.type === 'provider_status' ? { provider_status: event.status } : {}),
    source,
  });
}

/**
 * The order's one `order_failed` review item (one open per order, whoever
 * opens it: the provider ending the order, a recovery giving it up): why, and
 * what someone needs to refund the customer or place the order again.
 */
export async function openOrderFailedItem(cmd: Command, order: OrderRow, reason: string, facts: Record<string, unknown> = {}): Promise<void> {
  const id = await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, {
    kind: 'order_failed',
    subjectType: 'order',
    subjectId: order.id,
    storeId: order.store_id,
    dedupeKey: `order-failed:${order.id}`,
    detail: { reason, ...facts, last_error: order.last_error, payment_reference: order.payment_reference, provider_key: order.provider_key },
  });
  cmd.touch('review_items', id, 'created');
}

/** For the API: a refusal is 409 invalid_transition naming the current status. */
export function orThrow(result: AppliedEvent): Extract<AppliedEvent, { ok: true }> {
  if (!result.ok) throw new AppError('invalid_transition', result.reason, { extra: { current_status: result.order.status } });
  return result;
}

/**
 * Whether the provider itself said the order ended without shipping: one of
 * its events for the order reported `failed` or `cancelled` (whatever that
 * event's outcome: it may have agreed with an order failed here already), or
 * the order was moved to failed or cancelled by a provider status (a lookup
 * by the worker or a recovery).
 */
export async function providerEndedOrder(cmd: Command, orderId: string): Promise<boolean> {
  const row = await one(
    cmd.tx,
    sql<{ ended: boolean }>`
      SELECT EXISTS (
               SELECT 1 FROM fulfilment_webhook_events
               WHERE tenant_id = ${cmd.tenantId} AND order_id = ${orderId} AND provider_status IN ('failed', 'cancelled'))
          OR EXISTS (
               SELECT 1 FROM order_status_history
               WHERE tenant_id = ${cmd.tenantId} AND order_id = ${orderId} AND to_status IN ('failed', 'cancelled')
                 AND detail ->> 'event' = 'provider_status' AND detail ->> 'provider_status' IN ('failed', 'cancelled')) AS ended`,
  );
  return row.ended;
}
