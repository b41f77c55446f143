import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { workerRegistry } from '../core/metrics.js';
import { startTestWorker } from '../../test/support/worker.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import type { RunningWorker } from '../jobs/worker.js';
import { startProviderSim, type ProviderSim } from '../providerSim/providerSim.js';
import { createHmac, randomUUID } from 'node:crypto';
import { runCommand } from '../core/command.js';
import { applyOrderEvent } from './applyOrderEvent.js';
import { signWebhook } from './webhookSignature.js';
import { historyOf, newOrderShop, orderFailedItems, numberedProviderEvent, orderBody, postWebhook, providerEvent, providerMismatches, statusOf, waitForStatus, webhookConflicts, webhookOutcomes, WEBHOOK_SECRET } from './testkit.js';

describe('orders through the provider (API + worker + provider-sim)', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let worker: RunningWorker;

  const simOrdersFor = (orderId: string) => [...sim.orders.values()].filter((order) => order.reference === orderId);

  before(async () => {
    sim = await startProviderSim({ secret: WEBHOOK_SECRET });
    const overrides: Partial<Config> = {
      fulfilmentUrl: sim.url,
      fulfilmentWebhookSecret: WEBHOOK_SECRET,
      fulfilmentTimeoutMs: 300,
      ordersStuckAfterSeconds: 1,
      jobRetryBaseMs: 20,
      jobRetryMaxMs: 100,
      jobMaxAttempts: 4,
      workerMetricsPort: 0,
    };
    t = await startTestApp(overrides);
    sim.webhookUrl = `${t.baseUrl}/v1/webhooks/fulfilment`;
    worker = await startTestWorker(t, overrides);
  });
  beforeEach(() => {
    Object.assign(sim.faults, { failCreates: 0, acceptThenHang: 0, rejectCreates: 0, duplicateWebhooks: false, outOfOrderWebhooks: false, webhooks: true, latencyMs: 0 });
  });
  after(async () => {
    await worker.stop();
    await sim.stop();
    await t.close();
  });

  it('submits through the outbox and follows the provider to completed, carrying the correlation id', async () => {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop), { headers: { 'x-correlation-id': 'corr-order-1' } });
    assert.equal(created.status, 201);
    assert.equal(created.body.status, 'pending');
    const orderId: string = created.body.id;

    await waitForStatus(t.admin, orderId, 'completed');
    assert.equal(simOrdersFor(orderId).length, 1);
    assert.deepEqual(
      (await historyOf(t.admin, orderId)).map((row) => row.to_status),
      ['pending', 'submitting', 'submitted', 'processing', 'completed'],
    );
    const events = await t.admin.query(`SELECT provider_status, outcome FROM fulfilment_webhook_events WHERE order_id = $1 ORDER BY received_at`, [orderId]);
    assert.deepEqual(events.rows, [
      { provider_status: 'processing', outcome: 'applied' },
      { provider_status: 'completed', outcome: 'applied' },
    ]);
    const view = await shop.owner.get(`/v1/orders/${orderId}`);
    assert.equal(view.status, 200);
    assert.equal(view.body.status, 'completed');
    assert.equal(view.body.provider_order_id, simOrdersFor(orderId)[0]!.id);
    // the worker's commands carry the request's correlation id (and act as `worker`)
    const ops = await t.admin.query(`SELECT DISTINCT actor, correlation_id FROM operations WHERE tenant_id = $1 AND type = 'order.submit'`, [shop.tenantId]);
    assert.deepEqual(ops.rows, [{ actor: 'worker', correlation_id: 'corr-order-1' }]);
  });

  it('provider answers 500 three times, then succeeds: one provider order', async () => {
    sim.faults.webhooks = false;
    sim.faults.failCreates = 3;
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    const orderId: string = created.body.id;
    await waitForStatus(t.admin, orderId, 'submitted');
    await sleep(200);
    assert.equal(simOrdersFor(orderId).length, 1);
    assert.equal(sim.faults.failCreates, 0);
    const row = (await t.admin.query(`SELECT submit_attempts, provider_order_id FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.submit_attempts, 4);
    assert.equal(row.provider_order_id, simOrdersFor(orderId)[0]!.id);
    assert.match(await workerRegistry.getSingleMetricAsString('storekeep_jobs_total'), /task="order.submit",outcome="retried"\} [3-9]/);
  });

  it('provider accepts but the response is lost: recovery finds the order by its key, no duplicate', async () => {
    sim.faults.webhooks = false;
    sim.faults.acceptThenHang = 1_000; // every create call is accepted, then never answered
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    const orderId: string = created.body.id;
    await waitForStatus(t.admin, orderId, 'submitted');
    sim.faults.acceptThenHang = 0;
    await sleep(300);
    const atProvider = simOrdersFor(orderId);
    assert.equal(atProvider.length, 1);
    assert.ok(atProvider[0]!.create_calls >= 1);
    const history = await historyOf(t.admin, orderId);
    assert.deepEqual(history.at(-1), { from_status: 'submitting', to_status: 'submitted', source: 'recovery' });
    assert.equal((await t.admin.query(`SELECT provider_order_id FROM orders WHERE id = $1`, [orderId])).rows[0].provider_order_id, atProvider[0]!.id);
  });

  it('provider refuses our credentials (401) or is still processing the key (409): retried like a 5xx, never failed; one provider order', async () => {
    sim.faults.webhooks = false;
    sim.faults.refuseAuth = 2;
    sim.faults.conflictCreates = 1;
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitForStatus(t.admin, orderId, 'submitted');
    assert.deepEqual([sim.faults.refuseAuth, sim.faults.conflictCreates], [0, 0]);
    const row = (await t.admin.query(`SELECT submit_attempts, provider_order_id FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.submit_attempts, 4);
    assert.equal(simOrdersFor(orderId).length, 1);
    assert.equal(row.provider_order_id, simOrdersFor(orderId)[0]!.id);
    const failures = (await t.admin.query(`SELECT count(*)::int AS n FROM order_status_history WHERE order_id = $1 AND to_status = 'failed'`, [orderId])).rows[0].n;
    assert.equal(failures, 0);
  });

  it('provider refuses the order (4xx): failed at once, no retry; one order_failed item names the payment to refund', async () => {
    sim.faults.webhooks = false;
    sim.faults.rejectCreates = 1;
    const shop = await newOrderShop(t);
    const body = orderBody(shop);
    const orderId: string = (await shop.owner.post('/v1/orders', body)).body.id;
    await waitForStatus(t.admin, orderId, 'failed');
    await sleep(300);
    const row = (await t.admin.query(`SELECT submit_attempts, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.submit_attempts, 1);
    assert.match(row.last_error, /422/);
    assert.equal(simOrdersFor(orderId).length, 0);
    const items = await orderFailedItems(t.admin, orderId);
    assert.equal(items.length, 1);
    assert.deepEqual([items[0]!.reason, items[0]!.source, items[0]!.payment_reference], ['the provider refused the order', 'worker', body.payment_reference]);
    assert.match(String(items[0]!.last_error), /422/);
  });

  it('provider never gets the order: submitted again by recovery (same key), then failed for review', async () => {
    sim.faults.webhooks = false;
    sim.faults.failCreates = 1_000; // the provider is down for creates, but answers lookups: it knows nothing
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitForStatus(t.admin, orderId, 'failed', 30_000);
    sim.faults.failCreates = 0;
    const row = (await t.admin.query(`SELECT recoveries, submit_attempts FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.recoveries, 3);
    assert.ok(row.submit_attempts > 4, `submitted again after recoveries (${row.submit_attempts} calls)`);
    const items = await t.admin.query(`SELECT kind, store_id FROM review_items WHERE subject_id = $1 AND kind = 'order_failed'`, [orderId]);
    assert.deepEqual(items.rows, [{ kind: 'order_failed', store_id: shop.storeId }]);
    assert.equal(simOrdersFor(orderId).length, 0);
    assert.deepEqual((await historyOf(t.admin, orderId)).at(-1), { from_status: 'submitting', to_status: 'failed', source: 'recovery' });
  });

  it("an order whose submissions keep failing has one open job_failed item for its submits, counting each chain's give-up, not one per recovery", async () => {
    sim.faults.webhooks = false;
    sim.faults.failCreates = 1_000; // the provider is down for creates, but answers lookups: it knows nothing
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitForStatus(t.admin, orderId, 'failed', 30_000);
    sim.faults.failCreates = 0;
    // every recovery submitted it again (a new chain of attempts), and each chain gave up
    const giveUps = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'job.give_up'`, [shop.tenantId])).rows[0].n;
    const items = (
      await t.admin.query(
        `SELECT status, seen_count, subject_type FROM review_items
         WHERE tenant_id = $1 AND kind = 'job_failed' AND detail ->> 'task' = 'order.submit' AND detail -> 'data' ->> 'order_id' = $2`,
        [shop.tenantId, orderId],
      )
    ).rows;
    assert.ok(giveUps >= 2, `submit chains given up: ${giveUps}`);
    assert.equal(items.length, 1, `one item for the order's submits, not one per chain: ${JSON.stringify(items)}`);
    assert.equal(items[0].status, 'open');
    assert.ok(items[0].seen_count >= 2, `the item counts the chains that gave up: ${JSON.stringify(items)}`);
  });

  it('duplicate and out-of-order webhooks leave the order completed', async () => {
    sim.faults.duplicateWebhooks = true;
    sim.faults.outOfOrderWebhooks = true;
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    const orderId: string = created.body.id;
    await waitForStatus(t.admin, orderId, 'completed');
    const providerOrderId = simOrdersFor(orderId)[0]!.id;
    const deliveries = () => sim.deliveries.filter((d) => d.order_id === providerOrderId);
    await waitFor('all four deliveries', async () => deliveries().length >= 4);
    await sleep(200);
    // Each copy carries its own delivery metadata (attempt, send time): every one is acknowledged.
    assert.deepEqual(deliveries().map((d) => d.status), [200, 200, 200, 200]);
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    const history = await historyOf(t.admin, orderId);
    assert.equal(history.filter((row) => row.to_status === 'completed').length, 1);
    assert.equal(history.at(-1)!.to_status, 'completed');
    const events = await t.admin.query(`SELECT provider_status, outcome FROM fulfilment_webhook_events WHERE order_id = $1 ORDER BY received_at`, [orderId]);
    assert.deepEqual(events.rows, [
      { provider_status: 'completed', outcome: 'applied' },
      { provider_status: 'processing', outcome: 'ignored' },
    ]);
  });

  it('a badly signed webhook is 401 invalid_signature and changes nothing', async () => {
    sim.faults.webhooks = false;
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    const orderId: string = created.body.id;
    await waitForStatus(t.admin, orderId, 'submitted');
    const counts = async () =>
      (
        await t.admin.query(
          `SELECT (SELECT version FROM orders WHERE id = $1) AS version,
                  (SELECT count(*) FROM order_status_history WHERE order_id = $1)::int AS history,
                  (SELECT count(*) FROM fulfilment_webhook_events WHERE order_id = $1)::int AS events,
                  (SELECT count(*) FROM operations WHERE tenant_id = $2)::int AS operations`,
          [orderId, shop.tenantId],
        )
      ).rows[0];
    const before = await counts();
    const event = providerEvent(shop.tenantId, orderId, 'completed');
    for (const options of [
      { secret: 'not-the-secret' },
      { signature: null },
      { signature: 't=abc,v1=nothex' },
      { timestamp: Math.floor(Date.now() / 1000) - 3600 }, // replay of an old delivery
    ]) {
      const response = await postWebhook(t.baseUrl, event, options);
      assert.equal(response.status, 401, JSON.stringify(options));
      assert.equal(response.body.code, 'invalid_signature');
    }
    const tampered = await fetch(`${t.baseUrl}/v1/webhooks/fulfilment`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'fulfilment-signature': (await import('./webhookSignature.js')).signWebhook(WEBHOOK_SECRET, Math.floor(Date.now() / 1000), JSON.stringify(event)) },
      body: JSON.stringify({ ...event, data: { ...event.data, status: 'failed' } }),
    });
    assert.equal(tampered.status, 401);
    assert.deepEqual(await counts(), before);
    assert.equal(await statusOf(t.admin, orderId), 'submitted');

    // the same event, properly signed, is applied once; its redelivery is a replay
    const good = await postWebhook(t.baseUrl, event);
    assert.equal(good.status, 200);
    assert.equal(good.body.applied, true);
    const again = await postWebhook(t.baseUrl, event);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    assert.equal((await counts()).events, 1);
  });
});

describe('orders API (no worker running)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: WEBHOOK_SECRET });
  });
  after(async () => {
    await t.close();
  });

  it("a client may not take a provider event's idempotency key (400, nothing written): the event, when it comes, is applied", async () => {
    const shop = await newOrderShop(t);
    const order = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(order.status, 201);
    const event = providerEvent(shop.tenantId, order.body.id, 'accepted');
    const stores = async () => (await t.admin.query(`SELECT count(*)::int AS n FROM stores WHERE tenant_id = $1`, [shop.tenantId])).rows[0].n;
    const before = await stores();
    const squatter = await shop.owner.post('/v1/stores', { code: 'SQUAT', name: 'x' }, { idempotencyKey: `fulfilment-webhook:${event.id}` });
    assert.equal(squatter.status, 400);
    assert.equal(squatter.body.code, 'validation_failed');
    assert.equal(await stores(), before);
    const delivered = await postWebhook(t.baseUrl, event);
    assert.equal(delivered.status, 200, JSON.stringify(delivered.body));
    assert.equal(await statusOf(t.admin, order.body.id), 'submitted');
  });

  it('a signed event whose data nests thousands of levels deep is 400 validation_failed, nothing written (not a 500 the provider would retry forever)', async () => {
    const shop = await newOrderShop(t);
    const order = await shop.owner.post('/v1/orders', orderBody(shop));
    const event = providerEvent(shop.tenantId, order.body.id, 'accepted');
    const before = (await t.admin.query(`SELECT status, version FROM orders WHERE id = $1`, [order.body.id])).rows[0];
    for (const depth of [5_000, 64]) {
      // written as text: the client's own JSON.stringify would recurse as deep
      const extra = `${'{"x":'.repeat(depth)}1${'}'.repeat(depth)}`;
      const text = JSON.stringify({ ...event, id: `${event.id}_${depth}` }).replace(/}}$/, `,"extra":${extra}}}`);
      const response = await fetch(`${t.baseUrl}/v1/webhooks/fulfilment`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'fulfilment-signature': signWebhook(WEBHOOK_SECRET, Math.floor(Date.now() / 1000), text) },
        body: text,
      });
      const body = (await response.json()) as { code: string; errors: Array<{ path: string }> };
      assert.equal(response.status, 400, `${depth}: ${JSON.stringify(body)}`);
      assert.equal(body.code, 'validation_failed');
      assert.match(body.errors[0]!.path, /^\/body\/data\/extra(\/x)+$/);
    }
    assert.deepEqual((await t.admin.query(`SELECT status, version FROM orders WHERE id = $1`, [order.body.id])).rows[0], before);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM fulfilment_webhook_events WHERE order_id = $1`, [order.body.id])).rows[0].n, 0);
    // the same event without the extra field is applied
    assert.equal((await postWebhook(t.baseUrl, event)).status, 200);
    assert.equal(await statusOf(t.admin, order.body.id), 'submitted');
  });

  it('the signature covers the bytes the provider sent: a signed body opening with a byte order mark is taken, a signed body that is not UTF-8 is 400 malformed_json (not 401)', async () => {
    const shop = await newOrderShop(t);
    const order = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(order.status, 201);
    const send = async (bytes: Buffer) => {
      const timestamp = Math.floor(Date.now() / 1000);
      const mac = createHmac('sha256', WEBHOOK_SECRET).update(`${timestamp}.`).update(bytes).digest('hex');
      const response = await fetch(`${t.baseUrl}/v1/webhooks/fulfilment`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'fulfilment-signature': `t=${timestamp},v1=${mac}` },
        body: bytes,
      });
      return { status: response.status, body: (await response.json()) as { code?: string; applied?: boolean } };
    };
    // Not UTF-8 (a Latin-1 "é" in the provider's own field), signed over those bytes: malformed, not a forged delivery.
    const latin1 = Buffer.concat([
      Buffer.from(JSON.stringify(providerEvent(shop.tenantId, order.body.id, 'accepted')).replace(/}}$/, ',"note":"caf'), 'utf8'),
      Buffer.from([0xe9]),
      Buffer.from('"}}', 'utf8'),
    ]);
    const notUtf8 = await send(latin1);
    assert.deepEqual([notUtf8.status, notUtf8.body.code], [400, 'malformed_json']);
    assert.equal(await statusOf(t.admin, order.body.id), 'pending');
    // UTF-8 with a byte order mark (JSON readers may ignore it; every other route does), signed over the bytes sent.
    const withBom = await send(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(providerEvent(shop.tenantId, order.body.id, 'accepted')), 'utf8')]));
    assert.deepEqual([withBom.status, withBom.body.applied], [200, true], JSON.stringify(withBom.body));
    assert.equal(await statusOf(t.admin, order.body.id), 'submitted');
  });

  it('creates a pending order and its submit job in the same transaction', async () => {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop), { headers: { 'x-correlation-id': 'corr-create' }, idempotencyKey: 'order-1' });
    assert.equal(created.status, 201);
    assert.deepEqual(created.body.lines, [{ line_no: 1, sku_id: shop.skuId, quantity: 1500 }]);
    const jobs = await t.admin.query(`SELECT t.identifier AS task_identifier, j.key, j.payload
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE j.key = $1`, [`order.submit:${created.body.id}`]);
    assert.equal(jobs.rows.length, 1);
    assert.equal(jobs.rows[0].task_identifier, 'order.submit');
    assert.equal(jobs.rows[0].payload.correlation_id, 'corr-create');
    assert.equal(jobs.rows[0].payload.tenant_id, shop.tenantId);
    // replay: same order, no second order or job
    const replay = await shop.owner.post('/v1/orders', orderBody(shop), { idempotencyKey: 'order-1' });
    assert.equal(replay.status, 422); // a different payment reference: a different request under the same key
    const sameAgain = await shop.owner.request('POST', '/v1/orders', undefined, {
      idempotencyKey: 'order-1',
      rawBody: JSON.stringify({ ...orderBody(shop), payment_reference: created.body.payment_reference }),
    });
    assert.equal(sameAgain.status, 201);
    assert.equal(sameAgain.body.id, created.body.id);
    const count = await t.admin.query(`SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1`, [shop.tenantId]);
    assert.equal(count.rows[0].n, 1);
  });

  it('creation returns the version as the ETag, like every later action; so does its replay', async () => {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop), { idempotencyKey: 'order-etag-1' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.version, 1);
    assert.equal(created.headers.get('etag'), '"1"');
    assert.equal((await shop.owner.get(`/v1/orders/${created.body.id}`)).headers.get('etag'), created.headers.get('etag'));
    const replay = await shop.owner.post('/v1/orders', { ...orderBody(shop), payment_reference: created.body.payment_reference }, { idempotencyKey: 'order-etag-1' });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.headers.get('etag'), '"1"');
  });

  it('refuses bad input and writes nothing', async () => {
    const shop = await newOrderShop(t);
    const cases = [
      { ...orderBody(shop), lines: [] },
      { ...orderBody(shop), shipping_address: { name: 'x' } },
      { ...orderBody(shop), lines: [{ sku_id: shop.skuId, quantity: 1.5 }] },
      { ...orderBody(shop), extra: true },
    ];
    for (const body of cases) {
      const response = await shop.owner.post('/v1/orders', body);
      assert.equal(response.status, 400, JSON.stringify(body));
    }
    const unknownSku = await shop.owner.post('/v1/orders', { ...orderBody(shop), lines: [{ sku_id: '00000000-0000-4000-8000-000000000000', quantity: 1 }] });
    assert.ok(unknownSku.status >= 400 && unknownSku.status < 500);
    const count = await t.admin.query(`SELECT count(*)::int AS n FROM orders WHERE tenant_id = $1`, [shop.tenantId]);
    assert.equal(count.rows[0].n, 0);
  });

  it('manual completion and cancellation follow the state machine (409 invalid_transition otherwise)', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const early = await shop.owner.post(`/v1/orders/${orderId}/complete`, {});
    assert.equal(early.status, 409);
    assert.equal(early.body.code, 'invalid_transition');
    assert.equal(early.body.current_status, 'pending');

    // the provider reports it processing, then a manager completes it
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    const completed = await shop.owner.post(`/v1/orders/${orderId}/complete`, { reason: 'delivered, courier confirmed by phone' });
    assert.equal(completed.status, 200);
    assert.equal(completed.body.status, 'completed');
    const cancelLate = await shop.owner.post(`/v1/orders/${orderId}/cancel`, {});
    assert.equal(cancelLate.status, 409);
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'processing:webhook', 'completed:api']);
  });

  it('manual actions honour If-Match: a stale ETag is 412 and changes nothing; a current one moves the order and returns the new ETag', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const read = await shop.owner.get(`/v1/orders/${orderId}`);
    const etag = read.headers.get('etag')!;
    assert.match(etag, /^"\d+"$/);
    // the provider moves it on: the ETag the manager holds is stale
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    const historyBefore = await historyOf(t.admin, orderId);
    const stale = await shop.owner.post(`/v1/orders/${orderId}/cancel`, {}, { headers: { 'if-match': etag } });
    assert.equal(stale.status, 412, JSON.stringify(stale.body));
    assert.equal(stale.body.code, 'version_conflict');
    assert.equal(await statusOf(t.admin, orderId), 'processing');
    assert.deepEqual(await historyOf(t.admin, orderId), historyBefore);
    const current = (await shop.owner.get(`/v1/orders/${orderId}`)).headers.get('etag')!;
    // If-Match is a list (RFC 9110): the stale tag beside the current one does not stop the action.
    const cancelled = await shop.owner.post(`/v1/orders/${orderId}/cancel`, {}, { headers: { 'if-match': `${etag}, ${current}` } });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.status, 'cancelled');
    assert.equal(cancelled.headers.get('etag'), `"${cancelled.body.version}"`);
    assert.notEqual(cancelled.headers.get('etag'), current);
    // `If-Match: *` is no precondition (any current version)
    const another: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await shop.owner.post(`/v1/orders/${another}/cancel`, {}, { headers: { 'if-match': '*' } })).status, 200);
  });

  it('manual actions need no body, like every action without required input: none, {} or null; an unknown order is 404 either way', async () => {
    const shop = await newOrderShop(t);
    for (const body of [undefined, null, {}]) {
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      const cancelled = await shop.owner.post(`/v1/orders/${orderId}/cancel`, body);
      assert.equal(cancelled.status, 200, `${JSON.stringify(body)}: ${JSON.stringify(cancelled.body)}`);
      assert.equal(cancelled.body.status, 'cancelled');
    }
    const processing: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, processing, 'processing'))).status, 200);
    const completed = await shop.owner.post(`/v1/orders/${processing}/complete`);
    assert.equal(completed.status, 200, JSON.stringify(completed.body));
    assert.equal(completed.body.status, 'completed');
    const unknown = await shop.owner.post('/v1/orders/00000000-0000-4000-8000-00000000dead/cancel');
    assert.equal(unknown.status, 404);
    // A body that is there must still be right.
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    for (const body of [{ reason: '' }, { why: 'x' }, [], 'cancel']) {
      const refused = await shop.owner.post(`/v1/orders/${orderId}/cancel`, body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.equal(refused.body.code, 'validation_failed');
    }
    assert.equal(await statusOf(t.admin, orderId), 'pending');
  });

  it('a give-up arriving after the provider moved the order on is stale: no error recorded, version unchanged', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    const before = (await t.admin.query(`SELECT status, version, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    const principal = { kind: 'operator' as const, name: 'recovery' };
    const input = { tenantId: shop.tenantId, principal, correlationId: randomUUID(), fingerprint: 'give-up', payload: null };
    await runCommand(t.db, input, { type: 'order.give_up' }, async (cmd) => {
      const result = await applyOrderEvent(cmd, orderId, { type: 'give_up' }, 'recovery', { lastError: 'retries exhausted' });
      assert.ok(result.ok && !result.moved);
      return { status: 200, body: null };
    });
    const after = (await t.admin.query(`SELECT status, version, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.deepEqual(after, before);
  });

  it('provider events numbered per order: one at or below the newest received is out of order — ignored, even when its status would read as news', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const numbered = (status: string, sequence: number) => numberedProviderEvent(shop.tenantId, orderId, status, sequence);
    // The provider accepted (1), then failed the order (3); its "processing" (2) arrives last.
    assert.equal((await postWebhook(t.baseUrl, numbered('accepted', 1))).body.applied, true);
    assert.equal((await postWebhook(t.baseUrl, numbered('failed', 3))).body.applied, true);
    const late = await postWebhook(t.baseUrl, numbered('processing', 2));
    assert.equal(late.status, 200);
    assert.deepEqual([late.body.applied, late.body.status], [false, 'failed']);
    // A second report of the provider's own "failed" (another event id) agrees with the order.
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'failed'))).body.applied, false);
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await providerMismatches(t.admin, orderId), 0, 'neither the late event nor the agreeing one is a mismatch');
    // The provider failing the order is one order_failed item, however often it says so
    assert.deepEqual((await orderFailedItems(t.admin, orderId)).map((item) => [item.reason, item.provider_status, item.source]), [['the provider reports the order failed', 'failed', 'webhook']]);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', 'failed:applied', 'processing:ignored', 'failed:ignored']);

    // A newer event that says the provider is working on the failed order is a real mismatch: someone must look.
    assert.equal((await postWebhook(t.baseUrl, numbered('completed', 4))).status, 200);
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await providerMismatches(t.admin, orderId), 1);
  });

  it('two numbered events of one order at once: they are taken one at a time, and the lower one, taken second, is ignored', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const numbered = (status: string, sequence: number) => numberedProviderEvent(shop.tenantId, orderId, status, sequence);
    assert.equal((await postWebhook(t.baseUrl, numbered('accepted', 1))).body.applied, true);
    const waitingForTheOrder = (count: number) =>
      waitFor(`${count} webhook(s) waiting for the order's lock`, async () => {
        const { rows } = await t.admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM orders WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE%'`,
        );
        return rows[0].n >= count;
      });
    // Hold the order's row so both deliveries queue: "failed" (3) first, then the older "processing" (2).
    const holder = await t.admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM orders WHERE id = $1 FOR UPDATE', [orderId]);
      const failed = postWebhook(t.baseUrl, numbered('failed', 3));
      await waitingForTheOrder(1);
      const processing = postWebhook(t.baseUrl, numbered('processing', 2));
      await waitingForTheOrder(2);
      await holder.query('COMMIT');
      const [first, second] = await Promise.all([failed, processing]);
      assert.deepEqual([first.status, first.body.applied, second.status, second.body.applied], [200, true, 200, false]);
    } finally {
      holder.release();
    }
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await providerMismatches(t.admin, orderId), 0, 'the older event is not read as the provider reviving the order');
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', 'failed:applied', 'processing:ignored']);
  });

  it('a sequence number that cannot be compared (negative, or 10^15 and beyond) is taken as absent, and a stored one like that is skipped', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const numbered = (status: string, sequence: number) => numberedProviderEvent(shop.tenantId, orderId, status, sequence);
    // Stored before sequence numbers were compared: a huge one.
    assert.equal((await postWebhook(t.baseUrl, numbered('accepted', 1e21))).status, 200);
    assert.equal((await postWebhook(t.baseUrl, numbered('processing', 5))).body.applied, true);
    assert.equal((await postWebhook(t.baseUrl, numbered('completed', -1))).body.applied, true);
    assert.equal(await statusOf(t.admin, orderId), 'completed');
  });

  it('a sequence that is not a number (null, a string, a fraction, an object) is taken as absent: the signed event is applied (200), not refused with a 400 its provider would retry until it gave the event up', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const withSequence = (status: string, sequence: unknown) => {
      const event = providerEvent(shop.tenantId, orderId, status);
      return { ...event, data: { ...event.data, sequence } };
    };
    // A serializer that writes an absent number as null; one that writes numbers as text.
    const accepted = await postWebhook(t.baseUrl, withSequence('accepted', null));
    assert.deepEqual([accepted.status, accepted.body.applied], [200, true], JSON.stringify(accepted.body));
    const again = await postWebhook(t.baseUrl, withSequence('accepted', '9'));
    assert.deepEqual([again.status, again.body.applied], [200, false], JSON.stringify(again.body));
    // The stored "9" is text, not a number received: a numbered event below it is not taken as older.
    const processing = await postWebhook(t.baseUrl, numberedProviderEvent(shop.tenantId, orderId, 'processing', 5));
    assert.deepEqual([processing.status, processing.body.applied], [200, true], JSON.stringify(processing.body));
    const completed = await postWebhook(t.baseUrl, withSequence('completed', 2.5));
    assert.deepEqual([completed.status, completed.body.applied], [200, true], JSON.stringify(completed.body));
    assert.equal((await postWebhook(t.baseUrl, withSequence('completed', { n: 3 }))).status, 200);
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', 'accepted:ignored', 'processing:applied', 'completed:applied', 'completed:ignored']);

    // Unnumbered, it is still checked as an unnumbered event is: a late "processing" after the provider's own "failed" is ignored.
    const other: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, other, 'failed'))).body.applied, true);
    const late = providerEvent(shop.tenantId, other, 'processing');
    const lateAnswer = await postWebhook(t.baseUrl, { ...late, data: { ...late.data, sequence: null } });
    assert.deepEqual([lateAnswer.status, lateAnswer.body.applied, lateAnswer.body.status], [200, false, 'failed']);
    assert.equal(await providerMismatches(t.admin, other), 0);
  });

  it('created_at is delivery metadata of any shape (unix seconds, null, text): the signed event is applied, not refused with a 400', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const stamped = (status: string, createdAt: unknown) => ({ ...providerEvent(shop.tenantId, orderId, status), created_at: createdAt });
    const accepted = await postWebhook(t.baseUrl, stamped('accepted', 1_765_000_000));
    assert.deepEqual([accepted.status, accepted.body.applied], [200, true], JSON.stringify(accepted.body));
    const processing = await postWebhook(t.baseUrl, stamped('processing', null));
    assert.deepEqual([processing.status, processing.body.applied], [200, true], JSON.stringify(processing.body));
    const completed = await postWebhook(t.baseUrl, stamped('completed', '2026-12-06T22:00:00Z'));
    assert.deepEqual([completed.status, completed.body.applied], [200, true], JSON.stringify(completed.body));
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', 'processing:applied', 'completed:applied']);
  });

  it('a cancelled order the provider reports as alive opens order_provider_mismatch; its "failed" does not', async () => {
    const shop = await newOrderShop(t);
    const alive: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const dead: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    for (const id of [alive, dead]) assert.equal((await shop.owner.post(`/v1/orders/${id}/cancel`, { reason: 'customer changed mind' })).status, 200);
    await postWebhook(t.baseUrl, providerEvent(shop.tenantId, alive, 'processing'));
    await postWebhook(t.baseUrl, providerEvent(shop.tenantId, dead, 'failed'));
    const items = await t.admin.query(`SELECT subject_id FROM review_items WHERE subject_id = ANY($1::text[]) AND kind = 'order_provider_mismatch'`, [[alive, dead]]);
    assert.deepEqual(items.rows.map((row) => row.subject_id), [alive]);
  });

  it('the provider cancelling an order on its side (webhook): ours is cancelled, by the provider, with one order_failed item to refund it and nothing to ask the provider', async () => {
    // Given an order the provider is working on
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    // When the provider reports it cancelled on its side
    const cancelled = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'cancelled'));
    // Then the order is cancelled, recorded as the provider's doing
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.deepEqual([cancelled.body.applied, cancelled.body.status], [true, 'cancelled']);
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'processing:webhook', 'cancelled:webhook']);
    const last = (await t.admin.query(`SELECT detail FROM order_status_history WHERE order_id = $1 ORDER BY id DESC LIMIT 1`, [orderId])).rows[0].detail;
    assert.equal(last.provider_status, 'cancelled');
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['processing:applied', 'cancelled:applied']);
    // and the provider is not asked to cancel what it cancelled itself; nothing contradicts anything
    const read = await shop.owner.get(`/v1/orders/${orderId}`);
    assert.deepEqual([read.body.status, read.body.provider_cancellation], ['cancelled', null]);
    const cancelJobs = (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [`order.provider_cancel:${orderId}`])).rows[0].n;
    assert.equal(cancelJobs, 0);
    assert.equal(await providerMismatches(t.admin, orderId), 0);
    // A later event of the provider's changes nothing; a manager's cancel is refused as for any cancelled order
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'cancelled'))).body.applied, false);
    assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 409);
    assert.equal(await providerMismatches(t.admin, orderId), 0);
    // Someone is asked to refund the customer (or place the order again): one item, however often the provider says so
    const items = await orderFailedItems(t.admin, orderId);
    assert.deepEqual(items.map((item) => [item.reason, item.status, item.provider_status, item.source]), [['the provider cancelled the order on its side', 'cancelled', 'cancelled', 'webhook']]);
    assert.equal(typeof items[0]!.payment_reference, 'string');
  });

  it('the provider reporting "cancelled" an order completed here opens one order_provider_mismatch; the order stays completed', async () => {
    // Given an order a manager completed (courier confirmed by phone)
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    assert.equal((await shop.owner.post(`/v1/orders/${orderId}/complete`, { reason: 'courier confirmed by phone' })).status, 200);
    // When the provider reports it cancelled
    const cancelled = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'cancelled'));
    assert.equal(cancelled.status, 200);
    assert.deepEqual([cancelled.body.applied, cancelled.body.status], [false, 'completed']);
    // Then it stays completed, and someone is asked to look
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    const items = await t.admin.query(`SELECT status, detail FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId]);
    assert.equal(items.rows.length, 1);
    assert.deepEqual([items.rows[0].status, items.rows[0].detail.status, items.rows[0].detail.provider_status, items.rows[0].detail.source], ['open', 'completed', 'cancelled', 'webhook']);
  });

  it('the provider reporting "failed" an order a manager completed by hand opens one order_provider_mismatch, however often it says so', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    // Given an order the provider is working on, completed by a manager (courier confirmed by phone)
    assert.equal((await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'processing'))).status, 200);
    const completed = await shop.owner.post(`/v1/orders/${orderId}/complete`, { reason: 'courier confirmed by phone' });
    assert.equal(completed.status, 200, JSON.stringify(completed.body));
    // When the provider then reports it failed, twice (two events)
    for (let report = 0; report < 2; report++) {
      const failed = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'failed'));
      assert.equal(failed.status, 200);
      assert.deepEqual([failed.body.applied, failed.body.status], [false, 'completed']);
    }
    // Then the order stays completed, and one review item asks someone to look
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    const items = await t.admin.query(`SELECT severity, status, store_id, detail FROM review_items WHERE subject_id = $1 AND kind = 'order_provider_mismatch'`, [orderId]);
    assert.equal(items.rows.length, 1);
    assert.equal(items.rows[0].status, 'open');
    assert.equal(items.rows[0].store_id, shop.storeId);
    assert.equal(items.rows[0].detail.status, 'completed');
    assert.equal(items.rows[0].detail.provider_status, 'failed');
    assert.equal(items.rows[0].detail.source, 'webhook');
  });

  it('concurrent cancellations: exactly one wins', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const results = await Promise.all(Array.from({ length: 6 }, () => shop.owner.post(`/v1/orders/${orderId}/cancel`, {})));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 409, 409, 409, 409, 409]);
    assert.equal(await statusOf(t.admin, orderId), 'cancelled');
    assert.equal((await historyOf(t.admin, orderId)).filter((row) => row.to_status === 'cancelled').length, 1);
  });

  it('scopes: other tenant 404, cashier may create but not manage (403)', async () => {
    const shop = await newOrderShop(t);
    const other = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    assert.equal((await other.owner.get(`/v1/orders/${orderId}`)).status, 404);
    assert.equal((await other.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 404);
    const token = await shop.owner.post('/v1/tokens', { name: 'till', role: 'cashier' });
    const cashier = t.client(token.body.token);
    assert.equal((await cashier.post('/v1/orders', orderBody(shop))).status, 201);
    assert.equal((await cashier.post(`/v1/orders/${orderId}/cancel`, {})).status, 403);
    const secondStore = await shop.owner.post('/v1/stores', { code: 'OTHER', name: 'Other store' });
    const scoped = await shop.owner.post('/v1/tokens', { name: 'elsewhere', role: 'manager', store_ids: [secondStore.body.id] });
    assert.equal(scoped.status, 201, JSON.stringify(scoped.body));
    assert.equal((await t.client(scoped.body.token).get(`/v1/orders/${orderId}`)).status, 404);
    assert.equal(await statusOf(t.admin, orderId), 'pending');
  });

  it('a redelivery of a processed event with only its delivery metadata changed is acknowledged (200, replay) and applied once', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const event = numberedProviderEvent(shop.tenantId, orderId, 'processing', 1);
    const first = await postWebhook(t.baseUrl, { ...event, delivery_attempt: 1, sent_at: new Date().toISOString() });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.applied, true);
    const version = (await t.admin.query(`SELECT version FROM orders WHERE id = $1`, [orderId])).rows[0].version;
    // The provider's retry: the same event, a new attempt number, send time and signature time.
    const retried = { ...event, delivery_attempt: 2, sent_at: new Date(Date.now() + 30_000).toISOString() };
    const again = await postWebhook(t.baseUrl, retried, { timestamp: Math.floor(Date.now() / 1000) + 30 });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    assert.equal(await statusOf(t.admin, orderId), 'processing');
    assert.equal((await t.admin.query(`SELECT version FROM orders WHERE id = $1`, [orderId])).rows[0].version, version);
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'processing:webhook']);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['processing:applied']);
    assert.equal(await webhookConflicts(t.admin, orderId), 0);
  });

  it('a redelivery of a processed event id with different content is acknowledged (200), not applied, and opens one review item', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const event = numberedProviderEvent(shop.tenantId, orderId, 'processing', 1);
    assert.equal((await postWebhook(t.baseUrl, event)).body.applied, true);
    const changed = { ...event, type: 'order.completed', data: { ...event.data, status: 'completed' } };
    const rowsLeft = async () => ({
      status: await statusOf(t.admin, orderId),
      history: (await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`),
      events: await webhookOutcomes(t.admin, orderId),
      conflicts: await webhookConflicts(t.admin, orderId),
    });
    const expected = { status: 'processing', history: ['pending:api', 'processing:webhook'], events: ['processing:applied'], conflicts: 1 };

    const conflicting = await postWebhook(t.baseUrl, changed);
    assert.equal(conflicting.status, 200, JSON.stringify(conflicting.body));
    assert.deepEqual(
      [conflicting.body.event_id, conflicting.body.order_id, conflicting.body.duplicate, conflicting.body.applied, conflicting.body.conflict],
      [event.id, orderId, true, false, true],
    );
    assert.deepEqual(await rowsLeft(), expected);
    const item = (
      await t.admin.query(`SELECT severity, subject_type, store_id, detail FROM review_items WHERE subject_id = $1 AND kind = 'fulfilment_webhook_conflict'`, [orderId])
    ).rows[0];
    assert.deepEqual([item.severity, item.subject_type, item.store_id], ['warning', 'order', shop.storeId]);
    assert.equal(item.detail.event_id, event.id);
    assert.deepEqual([item.detail.recorded.data.status, item.detail.received.data.status], ['processing', 'completed']);

    // The provider retries the conflicting delivery: acknowledged again, still one open item.
    assert.equal((await postWebhook(t.baseUrl, changed, { timestamp: Math.floor(Date.now() / 1000) + 10 })).status, 200);
    assert.deepEqual(await rowsLeft(), expected);
    // The same once the idempotency record has expired (the recorded event still decides).
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = $2`, [shop.tenantId, `fulfilment-webhook:${event.id}`]);
    const late = await postWebhook(t.baseUrl, changed);
    assert.deepEqual([late.status, late.body.duplicate, late.body.applied, late.body.conflict], [200, true, false, true]);
    assert.deepEqual(await rowsLeft(), expected);
    // The original content, redelivered, is a plain duplicate.
    const original = await postWebhook(t.baseUrl, event);
    assert.equal(original.status, 200);
    assert.notEqual(original.body.conflict, true);
    assert.deepEqual(await rowsLeft(), expected);
  });

  it('concurrent redeliveries of a processed event, some with other content: the order moved once, one review item', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const event = numberedProviderEvent(shop.tenantId, orderId, 'processing', 1);
    assert.equal((await postWebhook(t.baseUrl, event)).body.applied, true);
    const changed = { ...event, type: 'order.completed', data: { ...event.data, status: 'completed' } };
    const deliveries = await Promise.all(
      Array.from({ length: 8 }, (_, attempt) => postWebhook(t.baseUrl, { ...(attempt % 2 === 0 ? event : changed), delivery_attempt: attempt + 2 })),
    );
    // None is refused (409 idempotency_key_in_flight while another holds the event's key would read to the provider as final).
    assert.deepEqual(deliveries.map((delivery) => delivery.status), Array(8).fill(200), JSON.stringify(deliveries.map((delivery) => delivery.body)));
    // A replay answers what the first delivery did (applied); any other answer applied nothing.
    assert.ok(deliveries.every((delivery) => delivery.status !== 200 || delivery.headers.get('idempotent-replayed') === 'true' || delivery.body.applied === false));
    assert.equal(await statusOf(t.admin, orderId), 'processing');
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'processing:webhook']);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['processing:applied']);
    assert.equal(await webhookConflicts(t.admin, orderId), 1);
  });

  it('a redelivery arriving while the first delivery is still being processed waits for it: both 200, applied once', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const event = numberedProviderEvent(shop.tenantId, orderId, 'processing', 1);
    // Hold the order's row: the first delivery takes the event's key, then waits for the order.
    const holder = await t.admin.connect();
    let first: Promise<Awaited<ReturnType<typeof postWebhook>>>;
    let again: Promise<Awaited<ReturnType<typeof postWebhook>>>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM orders WHERE id = $1 FOR UPDATE', [orderId]);
      first = postWebhook(t.baseUrl, { ...event, delivery_attempt: 1 });
      await waitFor("the first delivery waiting for the order's lock", async () => {
        const { rows } = await t.admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM orders WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE%'`,
        );
        return rows[0].n >= 1;
      });
      again = postWebhook(t.baseUrl, { ...event, delivery_attempt: 2 });
      await sleep(100);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    const answers = await Promise.all([first, again]);
    assert.deepEqual(answers.map((answer) => [answer.status, answer.body.applied]), [[200, true], [200, true]], JSON.stringify(answers.map((answer) => answer.body)));
    assert.equal(answers[1].headers.get('idempotent-replayed'), 'true');
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'processing:webhook']);
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['processing:applied']);
  });

  it('a webhook for an unknown order is 404 and writes nothing', async () => {
    const shop = await newOrderShop(t);
    const response = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, '00000000-0000-4000-8000-000000000001', 'completed'));
    assert.equal(response.status, 404);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM fulfilment_webhook_events WHERE tenant_id = $1`, [shop.tenantId])).rows[0].n, 0);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'order.webhook'`, [shop.tenantId])).rows[0].n, 0);
  });

  it('integrity: order_not_stuck and order_status_matches_history each report their corruption, only theirs', async () => {
    const stuckShop = await newOrderShop(t);
    const stuckId: string = (await stuckShop.owner.post('/v1/orders', orderBody(stuckShop))).body.id;
    await t.admin.query(`UPDATE orders SET status_changed_at = now() - interval '1 hour' WHERE id = $1`, [stuckId]);
    const stuck = await stuckShop.owner.get('/v1/integrity');
    assert.deepEqual(stuck.body.findings.map((f: { check: string; subject: string }) => [f.check, f.subject]), [['order_not_stuck', stuckId]]);

    const driftShop = await newOrderShop(t);
    const driftId: string = (await driftShop.owner.post('/v1/orders', orderBody(driftShop))).body.id;
    await t.admin.query(`UPDATE orders SET status = 'processing' WHERE id = $1`, [driftId]);
    const drift = await driftShop.owner.get('/v1/integrity');
    assert.deepEqual(drift.body.findings.map((f: { check: string; subject: string }) => [f.check, f.subject]), [['order_status_matches_history', driftId]]);
  });
});

describe('webhook secret rotation (FULFILMENT_WEBHOOK_SECRET and FULFILMENT_WEBHOOK_SECRET_PREVIOUS)', () => {
  const NEW_SECRET = 'rotated-fulfilment-secret';
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ fulfilmentWebhookSecret: NEW_SECRET, fulfilmentWebhookSecretPrevious: WEBHOOK_SECRET });
  });
  after(async () => {
    await t.close();
  });

  it('a delivery signed with the new or the previous secret, or carrying several v1 signatures of which one is ours, is applied; one signed with neither is 401 and changes nothing', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    const now = () => Math.floor(Date.now() / 1000);
    const mac = (secret: string, timestamp: number, text: string) => createHmac('sha256', secret).update(`${timestamp}.${text}`).digest('hex');
    const rows = async () =>
      (
        await t.admin.query(
          `SELECT (SELECT version FROM orders WHERE id = $1) AS version,
                  (SELECT count(*) FROM fulfilment_webhook_events WHERE order_id = $1)::int AS events,
                  (SELECT count(*) FROM operations WHERE tenant_id = $2)::int AS operations`,
          [orderId, shop.tenantId],
        )
      ).rows[0];

    // Signed with neither secret, alone or as several v1 signatures: refused, nothing written.
    const before = await rows();
    const completed = providerEvent(shop.tenantId, orderId, 'completed');
    const completedText = JSON.stringify(completed);
    for (const signature of [
      signWebhook('a-third-secret', now(), completedText),
      `t=${now()},v1=${mac('a-third-secret', now(), completedText)},v1=${mac('a-fourth-secret', now(), completedText)}`,
    ]) {
      const refused = await postWebhook(t.baseUrl, completed, { signature });
      assert.deepEqual([refused.status, refused.body.code], [401, 'invalid_signature'], signature);
    }
    assert.deepEqual(await rows(), before);
    assert.equal(await statusOf(t.admin, orderId), 'pending');

    // The provider still signs with the secret being retired.
    const accepted = await postWebhook(t.baseUrl, providerEvent(shop.tenantId, orderId, 'accepted'), { secret: WEBHOOK_SECRET });
    assert.deepEqual([accepted.status, accepted.body.applied], [200, true], JSON.stringify(accepted.body));
    // Mid-rotation it signs with both, the new signature last (a Map of the header kept only one of them).
    const processing = providerEvent(shop.tenantId, orderId, 'processing');
    const processingText = JSON.stringify(processing);
    const both = `t=${now()},v1=${mac('a-third-secret', now(), processingText)},v1=${mac(NEW_SECRET, now(), processingText)}`;
    const mid = await postWebhook(t.baseUrl, processing, { signature: both });
    assert.deepEqual([mid.status, mid.body.applied], [200, true], JSON.stringify(mid.body));
    // Then with the new secret only.
    const done = await postWebhook(t.baseUrl, completed, { secret: NEW_SECRET });
    assert.deepEqual([done.status, done.body.applied], [200, true], JSON.stringify(done.body));
    assert.deepEqual(await webhookOutcomes(t.admin, orderId), ['accepted:applied', 'processing:applied', 'completed:applied']);
    assert.deepEqual((await historyOf(t.admin, orderId)).map((row) => `${row.to_status}:${row.source}`), ['pending:api', 'submitted:webhook', 'processing:webhook', 'completed:webhook']);
  });
});
