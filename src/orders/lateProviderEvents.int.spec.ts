import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { runCommand } from '../core/command.js';
import { applyOrderEvent } from './applyOrderEvent.js';
import { newOrderShop, orderBody, postWebhook, providerEvent, providerMismatches, statusOf, webhookOutcomes, WEBHOOK_SECRET, type OrderShop } from './testkit.js';

/**
 * A provider that does not number its events (no `data.sequence`) may still
 * deliver them late: an `accepted` or `processing` it sent before it failed or
 * cancelled the order on its side, arriving after that. Its own terminal
 * event says nothing ships; the late forward event is not the provider
 * reviving the order, and must not open an `order_provider_mismatch` (a false
 * alarm that costs staff time). It is recorded as ignored (stale).
 */
describe('a late unnumbered provider event after the provider ended the order itself', () => {
  let t: TestApp;
  let shop: OrderShop;

  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: WEBHOOK_SECRET });
    shop = await newOrderShop(t);
  });
  after(() => t.close());

  const newOrder = async () => {
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body.id as string;
  };
  const send = async (orderId: string, status: string) => {
    const response = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, status));
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body as { applied: boolean; status: string };
  };
  /** The order's row, its history and its review items: what a stale event must leave as it was. */
  const left = async (orderId: string) =>
    (
      await t.admin.query(
        `SELECT o.status, o.version, o.last_error,
                (SELECT count(*) FROM order_status_history h WHERE h.order_id = o.id)::int AS history,
                (SELECT string_agg(kind, ',' ORDER BY kind) FROM review_items r WHERE r.subject_id = o.id::text) AS reviews
         FROM orders o WHERE o.id = $1`,
        [orderId],
      )
    ).rows[0];
  const giveUp = (orderId: string) =>
    runCommand(
      t.db,
      { tenantId: shop.tenantId, principal: { kind: 'operator', name: 'recovery' }, correlationId: randomUUID(), fingerprint: 'give-up', payload: null },
      { type: 'order.give_up' },
      async (cmd) => {
        const result = await applyOrderEvent(cmd, orderId, { type: 'give_up' }, 'recovery', { lastError: 'retries exhausted' });
        assert.ok(result.ok && result.moved);
        return { status: 200, body: null };
      },
    );

  for (const ended of ['failed', 'cancelled']) {
    for (const late of ['accepted', 'processing']) {
      it(`the provider's "${ended}", then its unnumbered "${late}": recorded as ignored, no mismatch`, async () => {
        const orderId = await newOrder();
        assert.equal((await send(orderId, 'accepted')).applied, true);
        assert.equal((await send(orderId, ended)).applied, true);
        const before = await left(orderId);
        assert.equal(before.status, ended);

        const stale = await send(orderId, late);
        assert.deepEqual([stale.applied, stale.status], [false, ended]);
        assert.equal(await providerMismatches(t.admin, orderId), 0, 'no false alarm');
        assert.deepEqual(await left(orderId), before, 'order, history and review items unchanged');
        assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', `${ended}:applied`, `${late}:ignored`]);
      });
    }
  }

  it("an order we gave up on, that the provider then reported failed itself: its late \"processing\" opens nothing", async () => {
    const orderId = await newOrder();
    await giveUp(orderId);
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal((await send(orderId, 'failed')).applied, false, 'agrees with the order');
    const before = await left(orderId);
    assert.equal((await send(orderId, 'processing')).applied, false);
    assert.equal(await providerMismatches(t.admin, orderId), 0);
    assert.deepEqual(await left(orderId), before);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['failed:ignored', 'processing:ignored']);
  });

  it('the provider\'s "cancelled" found by a lookup (recovery), then its unnumbered "accepted": ignored, no mismatch', async () => {
    const orderId = await newOrder();
    await runCommand(
      t.db,
      { tenantId: shop.tenantId, principal: { kind: 'operator', name: 'recovery' }, correlationId: randomUUID(), fingerprint: 'lookup', payload: null },
      { type: 'order.recover' },
      async (cmd) => {
        const result = await applyOrderEvent(cmd, orderId, { type: 'provider_status', status: 'cancelled' }, 'recovery');
        assert.ok(result.ok && result.moved);
        return { status: 200, body: null };
      },
    );
    const before = await left(orderId);
    assert.equal(before.status, 'cancelled');
    assert.equal((await send(orderId, 'accepted')).applied, false);
    assert.equal(await providerMismatches(t.admin, orderId), 0);
    assert.deepEqual(await left(orderId), before);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:ignored']);
  });

  it('still news: the provider alive on an order we gave up on (it never said it ended it), or "completed" after its own "failed"', async () => {
    const givenUp = await newOrder();
    await giveUp(givenUp);
    await send(givenUp, 'processing');
    assert.equal(await providerMismatches(t.admin, givenUp), 1, 'the provider may ship an order we gave up on');

    const shipped = await newOrder();
    await send(shipped, 'failed');
    await send(shipped, 'completed');
    assert.equal(await statusOf(t.admin, shipped), 'failed');
    assert.equal(await providerMismatches(t.admin, shipped), 1, 'it shipped an order it said had failed');
  });

  it('still news: a numbered "processing" the provider numbered after its own "failed" (by its numbering, it revived the order)', async () => {
    const orderId = await newOrder();
    const numbered = (status: string, sequence: number) => {
      const event = providerEvent(shop.tenantId, orderId, status);
      return { ...event, data: { ...event.data, sequence } };
    };
    assert.equal((await postWebhook(t.baseUrl, numbered('failed', 1))).status, 200);
    assert.equal((await postWebhook(t.baseUrl, numbered('processing', 2))).status, 200);
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await providerMismatches(t.admin, orderId), 1, 'the provider says, by its own numbering, the order is alive after it failed it');
  });
});
