/**
 * A manager's cancel racing the provider's webhooks (its `processing`, its
 * `completed`, and a redelivery of the `completed`), over real concurrent
 * HTTP requests; then the rows left behind: one winner, a history that
 * follows the machine and ends at the status, each recorded event applied
 * exactly when it wrote a history row, the cancellation at the provider
 * asked (one job) exactly when the cancel won, a mismatch only when the
 * provider's `completed` came after it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { providerCancelJobKey } from './cancelOrder.js';
import { newOrderShop, orderBody, postWebhook, providerEvent, providerMismatches, WEBHOOK_SECRET } from './testkit.js';

describe('a cancel racing the provider\'s webhooks (no worker running)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: WEBHOOK_SECRET });
  });
  after(async () => {
    await t.close();
  });

  it('one winner each round; history, events, the provider cancel job and mismatch items agree with it', async () => {
    const shop = await newOrderShop(t);
    const outcomes = new Set<string>();
    for (let round = 0; round < 12; round++) {
      // Given an order the provider has accepted (its `accepted` webhook)
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      const accepted = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'accepted'));
      assert.equal(accepted.body.applied, true);
      const processing = providerEvent(shop.tenantId, orderId, 'processing');
      const completed = providerEvent(shop.tenantId, orderId, 'completed');
      // When a manager cancels it while the provider's events come in, one of them twice
      const [cancel, ...deliveries] = await Promise.all([
        shop.owner.post(`/v1/orders/${orderId}/cancel`, {}),
        postWebhook(t.baseUrl, processing),
        postWebhook(t.baseUrl, completed),
        postWebhook(t.baseUrl, { ...completed, delivery_attempt: 2 }),
      ]);
      // Then every delivery is acknowledged, the cancel either wins or is refused
      assert.deepEqual(deliveries.map((delivery) => delivery.status), [200, 200, 200], JSON.stringify(deliveries.map((d) => d.body)));
      assert.ok([200, 409].includes(cancel.status), JSON.stringify(cancel.body));
      const order = (await t.admin.query(`SELECT status, provider_cancellation, version FROM orders WHERE id = $1`, [orderId])).rows[0];
      const history = (await t.admin.query(`SELECT from_status, to_status, source, op_id FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId])).rows;
      assert.equal(history.at(-1).to_status, order.status);
      // one version per history row after creation (moves only: nothing else changed the order)
      assert.equal(order.version, history.length, JSON.stringify(history));
      const events = (await t.admin.query(`SELECT id, provider_status, outcome, op_id FROM fulfilment_webhook_events WHERE order_id = $1`, [orderId])).rows;
      assert.equal(events.length, 3, 'accepted, processing, completed: each recorded once');
      for (const event of events) {
        const moved = history.some((row) => row.source === 'webhook' && row.op_id === event.op_id);
        assert.equal(event.outcome === 'applied', moved, `${event.provider_status}: ${event.outcome}`);
      }
      const cancelJobs = (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [providerCancelJobKey(orderId)])).rows[0].n;
      const completedAt = events.find((event) => event.provider_status === 'completed');
      if (cancel.status === 200) {
        assert.equal(order.status, 'cancelled');
        assert.equal(cancel.body.status, 'cancelled');
        assert.equal(order.provider_cancellation, 'requested');
        assert.equal(cancelJobs, 1);
        assert.equal(history.filter((row) => row.to_status === 'cancelled').length, 1);
        // the provider's `completed` came after the cancel (recorded ignored): it shipped an order we cancelled
        assert.equal(completedAt.outcome, 'ignored');
        assert.equal(await providerMismatches(t.admin, orderId), 1);
      } else {
        assert.equal(cancel.body.code, 'invalid_transition');
        assert.equal(order.status, 'completed');
        assert.equal(order.provider_cancellation, null);
        assert.equal(cancelJobs, 0);
        assert.equal(await providerMismatches(t.admin, orderId), 0);
      }
      outcomes.add(order.status);
    }
    assert.deepEqual(await integrityFindings(t.admin, shop.tenantId), []);
    // (which side wins is up to the scheduler; each is checked when it happens)
    assert.ok(outcomes.size >= 1);
  });
});
