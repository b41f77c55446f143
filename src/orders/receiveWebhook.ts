import { sql } from 'kysely';
import { canonicalJson, type Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
import { notFound } from '../core/errors.js';
import { openReviewItem } from '../core/review.js';
import { applyOrderEvent, providerEndedOrder } from './applyOrderEvent.js';
import { providerStatusOf } from './orderStatus.js';

export interface WebhookEvent {
  id: string;
  type: string;
  data: { order_id: string; reference: string; merchant: string; status: string; sequence?: unknown };
}

/**
 * What an event says: its type and data. Everything else in the body (its
 * creation or send time, a delivery attempt counter, fields the provider adds
 * to the envelope) and the signature header may differ between deliveries of
 * the same event: that is delivery metadata, not a different event.
 */
export function webhookEventContent(event: Pick<WebhookEvent, 'type' | 'data'>): { type: string; data: WebhookEvent['data'] } {
  return { type: event.type, data: event.data };
}

/**
 * One provider event, once. A delivery of an event already recorded (the
 * provider retries, or sends twice) changes nothing — the first delivery
 * wins; if its content (webhookEventContent) differs from the recorded one,
 * it is still acknowledged, and a `fulfilment_webhook_conflict` review item
 * (one open per event id) keeps both for someone to look at. An event older than the
 * order's state (out of order) is recorded as ignored; anything else moves the
 * order forward through the state machine.
 *
 * Out of order is known two ways: by status progress (a `processing` after
 * `completed`), and — when the provider numbers its events per order
 * (`data.sequence`) — by number: an event numbered at or below one already
 * recorded for the order is older than what the provider has told us since,
 * so it is recorded as ignored without being applied (a late `accepted` after
 * the provider's own `failed` is not the provider reviving the order, and
 * opens no mismatch review item). An event without a number is known to be
 * late one more way: an `accepted` or `processing` about an order the
 * provider itself already reported `failed` or `cancelled` (by webhook, or
 * found by a lookup) was sent before that report — providers do not revive
 * an order they ended — so it is recorded as ignored too, and opens no
 * mismatch (its `completed` still does: the goods went out). The order's row
 * is locked first, so the events of one order are taken one at a time.
 */
export async function receiveWebhook(cmd: Command, event: WebhookEvent) {
  const orderId = event.data.reference;
  // Lock the order first, then read what was recorded in later statements:
  // under READ COMMITTED they see what a webhook holding the lock a moment
  // ago recorded (the locking statement itself would not).
  const order = await maybeOne(
    cmd.tx,
    sql<{ status: string }>`SELECT status FROM orders WHERE tenant_id = ${cmd.tenantId} AND id = ${orderId} FOR NO KEY UPDATE`,
  );
  if (!order) throw notFound('order');
  const seen = await maybeOne(
    cmd.tx,
    sql<{ outcome: string; order_id: string; payload: WebhookEvent }>`
      SELECT outcome, order_id, payload FROM fulfilment_webhook_events WHERE tenant_id = ${cmd.tenantId} AND id = ${event.id}`,
  );
  if (seen) {
    const recorded = webhookEventContent(seen.payload);
    const received = webhookEventContent(event);
    if (canonicalJson(recorded) === canonicalJson(received)) {
      return { received: true, event_id: event.id, order_id: seen.order_id, duplicate: true, applied: false };
    }
    await noteConflictingRedelivery(cmd, event.id, seen, recorded, received);
    return { received: true, event_id: event.id, order_id: seen.order_id, duplicate: true, applied: false, conflict: true };
  }
  const sequence = usableSequence(event.data.sequence);
  const newest =
    sequence === undefined
      ? undefined
      : await maybeOne(
          cmd.tx,
          // Only sequence numbers stored as JSON numbers that are plain integers of at most 15 digits count
          // (events are stored as received: "7", a string, was taken as unnumbered and is not a number here either).
          sql<{ newest: string | null }>`
            SELECT max((payload -> 'data' ->> 'sequence')::bigint) AS newest FROM fulfilment_webhook_events
            WHERE tenant_id = ${cmd.tenantId} AND order_id = ${orderId}
              AND jsonb_typeof(payload -> 'data' -> 'sequence') = 'number' AND (payload -> 'data' ->> 'sequence') ~ '^[0-9]{1,15}$'`,
        );
  const status = providerStatusOf(event.data.status);
  const superseded =
    (sequence !== undefined && newest?.newest != null && sequence <= Number(newest.newest)) ||
    (sequence === undefined && (status === 'submitted' || status === 'processing') && (order.status === 'failed' || order.status === 'cancelled') &&
      (await providerEndedOrder(cmd, orderId)));

  let applied = false;
  let orderStatus: string | undefined = superseded ? order.status : undefined;
  if (status && !superseded) {
    const result = await applyOrderEvent(cmd, orderId, { type: 'provider_status', status }, 'webhook', { providerOrderId: event.data.order_id });
    applied = result.ok && result.moved;
    orderStatus = result.order.status;
  }
  await sql`
    INSERT INTO fulfilment_webhook_events (tenant_id, id, order_id, provider_status, outcome, payload, op_id)
    VALUES (${cmd.tenantId}, ${event.id}, ${orderId}, ${event.data.status}, ${applied ? 'applied' : 'ignored'}, ${JSON.stringify(event)}::jsonb, ${cmd.opId})`.execute(cmd.tx);
  cmd.touch('fulfilment_webhook_events', event.id, 'created');
  return { received: true, event_id: event.id, order_id: orderId, duplicate: false, applied, status: orderStatus };
}

/**
 * The provider delivered an event id we already processed with other content:
 * the first delivery stands (it may have moved the order), and someone must
 * look at what the provider says now. One open review item per event id.
 */
async function noteConflictingRedelivery(
  cmd: Command,
  eventId: string,
  seen: { outcome: string; order_id: string },
  recorded: ReturnType<typeof webhookEventContent>,
  received: ReturnType<typeof webhookEventContent>,
): Promise<void> {
  const order = await one(cmd.tx, sql<{ store_id: string }>`SELECT store_id FROM orders WHERE tenant_id = ${cmd.tenantId} AND id = ${seen.order_id}`);
  const id = await openReviewItem(cmd.tx, cmd.tenantId, cmd.opId, {
    kind: 'fulfilment_webhook_conflict',
    severity: 'warning',
    subjectType: 'order',
    subjectId: seen.order_id,
    storeId: order.store_id,
    dedupeKey: `fulfilment-webhook-conflict:${eventId}`,
    detail: { event_id: eventId, outcome: seen.outcome, recorded, received },
  });
  cmd.touch('review_items', id, 'created');
}

/**
 * The event's sequence number if it is one we can compare (a JSON number, whole, from 0 to 10^15 - 1); otherwise — null,
 * a string, a fraction, out of range — the event is taken as unnumbered, not refused: the number only orders events,
 * and a refusal would lose the signed status change it came with.
 */
function usableSequence(sequence: unknown): number | undefined {
  return typeof sequence === 'number' && Number.isInteger(sequence) && sequence >= 0 && sequence < 1e15 ? sequence : undefined;
}
