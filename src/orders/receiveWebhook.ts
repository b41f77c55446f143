import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { applyOrderEvent } from './applyOrderEvent.js';
import { providerStatusOf } from './orderStatus.js';

export interface WebhookEvent {
  id: string;
  type: string;
  data: { order_id: string; reference: string; merchant: string; status: string; sequence?: number };
}

/**
 * One provider event, once. A delivery of an event already recorded (the
 * provider retries, or sends twice) changes nothing; an event older than the
 * order's state (out of order) is recorded as ignored; anything else moves the
 * order forward through the state machine.
 */
export async function receiveWebhook(cmd: Command, event: WebhookEvent) {
  const orderId = event.data.reference;
  const seen = await maybeOne(
    cmd.tx,
    sql<{ outcome: string }>`SELECT outcome FROM fulfilment_webhook_events WHERE tenant_id = ${cmd.tenantId} AND id = ${event.id}`,
  );
  if (seen) return { received: true, event_id: event.id, order_id: orderId, duplicate: true, applied: false };

  const status = providerStatusOf(event.data.status);
  let applied = false;
  let orderStatus: string | undefined;
  if (status) {
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
