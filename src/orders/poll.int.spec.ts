/** Orders the provider holds whose webhooks were lost: the sweep asks the provider about them. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import type { RunningWorker } from '../jobs/worker.js';
import { startProviderSim, type ProviderSim, type SimOrder } from '../providerSim/providerSim.js';
import { newOrderShop, orderBody, providerLookups, statusOf, waitForStatus, WEBHOOK_SECRET } from './testkit.js';

describe('orders waiting on the provider whose webhooks were lost', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let worker: RunningWorker;
  // Scaled: stuck after 1 s (the sweep runs every 0.5 s), asked about after 1 s without moving.
  const overrides: Partial<Config> = { fulfilmentTimeoutMs: 1000, ordersStuckAfterSeconds: 1, ordersPollAfterSeconds: 1, workerMetricsPort: 0 };
  before(async () => {
    // A provider whose webhooks never arrive (it gave up delivering them)
    sim = await startProviderSim({ secret: WEBHOOK_SECRET, faults: { webhooks: false } });
    Object.assign(overrides, { fulfilmentUrl: sim.url, fulfilmentWebhookSecret: WEBHOOK_SECRET });
    t = await startTestApp(overrides);
    worker = await startTestWorker(t, overrides);
  });
  after(async () => {
    await worker?.stop();
    await sim.stop();
    await t.close();
  });

  const simOrderOf = (orderId: string): SimOrder => {
    const found = [...sim.orders.values()].filter((order) => order.reference === orderId);
    assert.equal(found.length, 1, `one provider order for ${orderId}`);
    return found[0]!;
  };

  it('an order the provider completed without a webhook reaching us is completed by a lookup, once', async () => {
    // Given an order the provider accepted, and no webhook ever arrives
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    // When the provider completes it
    simOrderOf(orderId).status = 'completed';
    // Then the sweep's lookup moves it on, forward only, with one provider order
    await waitForStatus(t.admin, orderId, 'completed', 15_000);
    simOrderOf(orderId);
    const history = await t.admin.query(`SELECT from_status, to_status, source FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId]);
    assert.deepEqual(history.rows.at(-1), { from_status: 'submitted', to_status: 'completed', source: 'recovery' });
    const read = await shop.owner.get(`/v1/orders/${orderId}`);
    assert.equal(read.body.status, 'completed');
    // And a completed order is asked about no more (a lookup that changes nothing writes nothing: the provider's log tells)
    const key = (await t.admin.query(`SELECT provider_key FROM orders WHERE id = $1`, [orderId])).rows[0].provider_key as string;
    const lookups = () => providerLookups(sim, key);
    const before = lookups();
    await sleep(2_500);
    assert.equal(lookups(), before);
  });

  it('an order the provider cancelled on its side without a webhook reaching us is cancelled by a lookup, as the provider did it', async () => {
    // Given an order the provider accepted, and no webhook ever arrives
    const shop = await newOrderShop(t);
    const orderId = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    // When the provider cancels it on its side
    simOrderOf(orderId).status = 'cancelled';
    // Then the sweep's lookup cancels it here, recorded as the provider's doing, and nothing is asked of the provider
    await waitForStatus(t.admin, orderId, 'cancelled', 15_000);
    const history = await t.admin.query(`SELECT from_status, to_status, source, detail ->> 'provider_status' AS provider_status FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId]);
    assert.deepEqual(history.rows.at(-1), { from_status: 'submitted', to_status: 'cancelled', source: 'recovery', provider_status: 'cancelled' });
    const read = await shop.owner.get(`/v1/orders/${orderId}`);
    assert.deepEqual([read.body.status, read.body.provider_cancellation], ['cancelled', null]);
    const mismatches = (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId])).rows[0].n;
    assert.equal(mismatches, 0);
  });

  it('an order still at the provider is asked about again after each ORDERS_POLL_AFTER_SECONDS, and nothing a client sees changes', async () => {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    const orderId = created.body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    const versionBefore = (await shop.owner.get(`/v1/orders/${orderId}`)).body.version;
    const checked = async () => (await t.admin.query(`SELECT provider_checked_at FROM orders WHERE id = $1`, [orderId])).rows[0].provider_checked_at as Date | null;
    await waitFor('a first lookup', async () => (await checked()) !== null, 15_000, 100);
    const first = (await checked())!;
    await waitFor('a second lookup', async () => (await checked())!.getTime() > first.getTime(), 15_000, 100);
    assert.equal(await statusOf(t.admin, orderId), 'submitted');
    assert.equal((await shop.owner.get(`/v1/orders/${orderId}`)).body.version, versionBefore, 'a lookup that changes nothing leaves the version');
    // The provider then reports it failed: the lookup moves it (forward only), as a webhook would
    simOrderOf(orderId).status = 'failed';
    await waitForStatus(t.admin, orderId, 'failed', 15_000);
  });

  it('an order the provider accepted and no longer knows stays as it is and opens one order_unknown_to_provider item, however often it is asked', async () => {
    // Given an order the provider accepted (its id recorded), and no webhook ever arrives
    const shop = await newOrderShop(t);
    const orderId = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    const { provider_key: key, payment_reference: payment, provider_order_id: providerOrderId } = (
      await t.admin.query(`SELECT provider_key, payment_reference, provider_order_id FROM orders WHERE id = $1`, [orderId])
    ).rows[0];
    const versionBefore = (await shop.owner.get(`/v1/orders/${orderId}`)).body.version;
    // When the provider loses it: a lookup by our key finds nothing (404), lookup after lookup
    sim.orders.delete(simOrderOf(orderId).id);
    const lookupsBefore = providerLookups(sim, key);
    await waitFor('three lookups of the lost order', async () => providerLookups(sim, key) >= lookupsBefore + 3, 20_000, 100);
    await sleep(300);
    // Then the order is not failed (the provider accepted it) nor changed, and someone is asked to look: one item,
    // with what they need to chase the provider or refund the customer, written by one operation
    assert.equal(await statusOf(t.admin, orderId), 'submitted');
    assert.equal((await shop.owner.get(`/v1/orders/${orderId}`)).body.version, versionBefore);
    const items = (
      await t.admin.query(`SELECT detail, severity, store_id, status, op_id FROM review_items WHERE subject_id = $1 AND kind = 'order_unknown_to_provider'`, [orderId])
    ).rows;
    assert.equal(items.length, 1, JSON.stringify(items));
    assert.deepEqual(
      [items[0].severity, items[0].store_id, items[0].status, items[0].detail],
      ['warning', shop.storeId, 'open', { status: 'submitted', source: 'recovery', provider_order_id: providerOrderId, provider_key: key, payment_reference: payment }],
    );
    const polls = (await t.admin.query(`SELECT id FROM operations WHERE tenant_id = $1 AND type = 'order.poll'`, [shop.tenantId])).rows;
    assert.deepEqual(polls.map((row) => row.id), [items[0].op_id], 'one operation: the lookup that opened the item; the lookups after it wrote nothing');
    // And once someone resolved it, a provider still not knowing the order opens a new one
    const itemId = (await t.admin.query(`SELECT id FROM review_items WHERE subject_id = $1 AND kind = 'order_unknown_to_provider'`, [orderId])).rows[0].id;
    const resolved = await shop.owner.post(`/v1/review-items/${itemId}/resolve`, { note: 'chased the provider' });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    await waitFor(
      'a second item after the first was resolved',
      async () => (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1 AND kind = 'order_unknown_to_provider' AND status = 'open'`, [orderId])).rows[0].n === 1,
      20_000,
      100,
    );
    assert.equal(await statusOf(t.admin, orderId), 'submitted');
    assert.deepEqual(await integrityFindings(t.admin, shop.tenantId), []);
  });

  it('a lookup answering "failed" for an order a manager completed meanwhile leaves it completed and opens one order_provider_mismatch', async () => {
    // Given an order waiting on the provider, which the provider has failed
    const shop = await newOrderShop(t);
    const orderId = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    const key = (await t.admin.query(`SELECT provider_key FROM orders WHERE id = $1`, [orderId])).rows[0].provider_key as string;
    simOrderOf(orderId).status = 'failed';
    // When the sweep's lookup is on its way (the provider answers in 2 s, within FULFILMENT_TIMEOUT_MS, here 10 s
    // so that a loaded machine cannot turn the slow answer into a timeout) and a manager completes the order meanwhile
    await worker.stop();
    worker = await startTestWorker(t, { ...overrides, fulfilmentTimeoutMs: 10_000 });
    sim.faults.latencyMs = 2_000;
    const lookups = () => providerLookups(sim, key);
    const lookupsBefore = lookups();
    try {
      await waitFor('a lookup of the order at the provider', async () => lookups() > lookupsBefore, 15_000, 10);
      const completed = await shop.owner.post(`/v1/orders/${orderId}/complete`, { reason: 'courier confirmed by phone' });
      assert.equal(completed.status, 200, JSON.stringify(completed.body));
      // Then the lookup's "failed" lands on a completed order: it stays completed, and someone is asked to look
      const mismatches = async () =>
        (await t.admin.query(`SELECT detail FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId])).rows as Array<{ detail: any }>;
      await waitFor('the mismatch review item', async () => (await mismatches()).length >= 1, 15_000, 100);
    } finally {
      sim.faults.latencyMs = 0;
    }
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    const [item] = (await t.admin.query(`SELECT detail FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId])).rows;
    assert.deepEqual([item.detail.status, item.detail.provider_status, item.detail.source], ['completed', 'failed', 'recovery']);
  });

  it('a lookup the provider cannot answer (down) gives up once, and the order is asked about again only after another period, not at every sweep', async () => {
    // Given an order waiting on the provider for an hour
    const shop = await newOrderShop(t);
    const orderId = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    await worker.stop();
    await t.admin.query(`UPDATE orders SET status_changed_at = now() - interval '1 hour' WHERE id = $1`, [orderId]);
    // When the provider cannot be reached (the sweep runs every 0.5 s; a lookup is due after 4 s unchanged)
    const unreachable = { ...overrides, fulfilmentUrl: 'http://127.0.0.1:9', ordersPollAfterSeconds: 4, jobRetryBaseMs: 20, jobRetryMaxMs: 50 };
    worker = await startTestWorker(t, unreachable);
    const giveUps = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up'`, [shop.tenantId])).rows[0].n as number;
    await waitFor('the lookup to give up', async () => (await giveUps()) >= 1, 15_000, 100);
    // And a second lookup of the order queued meanwhile (a sweep that ran while
    // the first was on its last attempt: its job was running, so the sweep's
    // job key made a new one) finds the order asked about and does nothing
    await enqueueForTenant(t, shop.tenantId, 'order.poll', { order_id: orderId }, { jobKey: `order.poll:${orderId}`, jobKeyMode: 'keep_waiting' });
    // Then the order is marked as asked about, and no new lookup starts for the next 2.5 s (five sweeps)
    await sleep(2_500);
    assert.equal(await giveUps(), 1);
    const row = (await t.admin.query(`SELECT status, provider_checked_at FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.status, 'submitted');
    assert.ok(row.provider_checked_at !== null);
    const items = await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE tenant_id = $1 AND kind = 'job_failed' AND status = 'open'`, [shop.tenantId]);
    assert.equal(items.rows[0].n, 1);
  });

  it('a slow provider: the sweeps that run while a lookup is in flight start no second lookup of the order (one chain of attempts, one give-up)', async () => {
    // Given an order waiting on the provider for an hour (submitted by a worker that reaches it)
    await worker.stop();
    worker = await startTestWorker(t, overrides);
    const shop = await newOrderShop(t);
    const orderId = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    await worker.stop();
    await t.admin.query(`UPDATE orders SET status_changed_at = now() - interval '1 hour', provider_checked_at = NULL WHERE id = $1`, [orderId]);
    const key = (await t.admin.query(`SELECT provider_key FROM orders WHERE id = $1`, [orderId])).rows[0].provider_key as string;
    const lookups = () => providerLookups(sim, key);
    const lookupsBefore = lookups();
    // When every lookup takes 1.5 s and times out after 0.8 s (three attempts of about a second),
    // while the sweep runs every 0.5 s and a lookup is due after 6 s unchanged
    sim.faults.latencyMs = 1_500;
    const slow = { ...overrides, fulfilmentTimeoutMs: 800, ordersPollAfterSeconds: 6, jobRetryBaseMs: 20, jobRetryMaxMs: 50 };
    worker = await startTestWorker(t, slow);
    const giveUps = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up'`, [shop.tenantId])).rows[0].n as number;
    try {
      await waitFor('the lookup to give up', async () => (await giveUps()) >= 1, 20_000, 100);
      await sleep(2_500);
    } finally {
      sim.faults.latencyMs = 0;
    }
    // Then one chain asked the provider: three attempts, one give-up — no second chain beside it
    assert.equal(await giveUps(), 1);
    assert.equal(lookups() - lookupsBefore, 3);
    assert.equal(await statusOf(t.admin, orderId), 'submitted');
  });
});
