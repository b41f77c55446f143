import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { newOrderShop, orderBody, postWebhook, providerEvent, WEBHOOK_SECRET, type OrderShop } from './testkit.js';

/**
 * An order's history is the state machine's record: every row moves on from
 * the row before it, by a transition the machine allows. Corruptions that
 * keep the order's status equal to its last history row (so
 * order_status_matches_history agrees) must still be reported — by exactly
 * one check.
 */
describe('integrity: an order history that breaks the state machine, an order without lines', () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: WEBHOOK_SECRET });
  });
  after(async () => {
    await t.close();
  });

  async function completedOrder(): Promise<{ shop: OrderShop; orderId: string; opId: string }> {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201);
    const orderId: string = created.body.id;
    for (const status of ['processing', 'completed']) {
      const answer = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, status));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.applied, true);
    }
    return { shop, orderId, opId: created.body.op_id };
  }

  const findingsOf = async (tenantId: string) => (await integrityFindings(t.admin, tenantId)).map((finding) => [finding.check, finding.subject]);

  it('orders moved along the machine (webhooks, a cancel, a recovery resubmitting) report nothing', async () => {
    const { shop } = await completedOrder();
    const cancelled = (await shop.owner.post('/v1/orders', orderBody(shop))).body;
    assert.equal((await shop.owner.post(`/v1/orders/${cancelled.id}/cancel`, { reason: 'customer asked' })).status, 200);
    const resubmitted = (await shop.owner.post('/v1/orders', orderBody(shop))).body;
    // A recovery submitting a pending order again writes a pending → pending row (event resubmit).
    await t.admin.query(
      `INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id)
       VALUES ($1, $2, 'pending', 'pending', 'recovery', '{"event":"resubmit"}'::jsonb, $3)`,
      [shop.tenantId, resubmitted.id, resubmitted.op_id],
    );
    assert.deepEqual(await findingsOf(shop.tenantId), []);
  });

  it('a completed order moved back to processing (with a history row saying so) is reported, by one check', async () => {
    const { shop, orderId, opId } = await completedOrder();
    await withTriggersOff(t.admin, [
      [`UPDATE orders SET status = 'processing', version = version + 1 WHERE id = $1`, [orderId]],
      [
        `INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id)
         VALUES ($1, $2, 'completed', 'processing', 'webhook', '{"event":"provider_status","provider_status":"processing"}'::jsonb, $3)`,
        [shop.tenantId, orderId, opId],
      ],
    ]);
    assert.deepEqual(await findingsOf(shop.tenantId), [['order_history_follows_machine', orderId]]);
  });

  it('a history row that does not start where the one before it ended is reported, by one check', async () => {
    const shop = await newOrderShop(t);
    const created = (await shop.owner.post('/v1/orders', orderBody(shop))).body;
    // pending, then "submitted → completed": the order never was submitted.
    await withTriggersOff(t.admin, [
      [`UPDATE orders SET status = 'completed', version = version + 1 WHERE id = $1`, [created.id]],
      [
        `INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id)
         VALUES ($1, $2, 'submitted', 'completed', 'api', '{"event":"complete"}'::jsonb, $3)`,
        [shop.tenantId, created.id, created.op_id],
      ],
    ]);
    assert.deepEqual(await findingsOf(shop.tenantId), [['order_history_follows_machine', created.id]]);
  });

  it('an order without lines (what would the provider ship?) is reported, by one check', async () => {
    const shop = await newOrderShop(t);
    const created = (await shop.owner.post('/v1/orders', orderBody(shop))).body;
    await withTriggersOff(t.admin, [[`DELETE FROM order_lines WHERE order_id = $1`, [created.id]]]);
    assert.deepEqual(await findingsOf(shop.tenantId), [['order_has_lines', created.id]]);
  });
});
