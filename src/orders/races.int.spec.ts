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
import type { Config } from '../config.js';
import type { RunningWorker } from '../jobs/worker.js';
import { startProviderSim, type ProviderSim } from '../providerSim/providerSim.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { waitFor } from '../../test/support/wait.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { providerCancelJobKey } from './cancelOrder.js';
import { recoverOrder } from './recoverOrderJob.js';
import { makeStuckSubmitting, newOrderShop, orderBody, postWebhook, providerEvent, providerLookups, providerMismatches, WEBHOOK_SECRET } from './testkit.js';

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

  it('one event delivered twice at once, its merchant and reference once in capitals: the same event (ids read in any letter case), applied once, no conflict', async () => {
    const shop = await newOrderShop(t);
    for (let round = 0; round < 6; round++) {
      // Given an order, and the provider's `accepted` for it
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      const event = providerEvent(shop.tenantId, orderId, 'accepted');
      const shouted = { ...event, data: { ...event.data, merchant: shop.tenantId.toUpperCase(), reference: orderId.toUpperCase() } };
      // When it arrives twice at once, once with its ids in capitals (each signed as sent)
      const deliveries = await Promise.all([postWebhook(t.baseUrl, round % 2 ? shouted : event), postWebhook(t.baseUrl, round % 2 ? event : shouted)]);
      // Then both are acknowledged with the first answer: one applied it, the other replays that answer
      const bodies = JSON.stringify(deliveries.map((d) => d.body));
      assert.deepEqual(deliveries.map((delivery) => delivery.status), [200, 200], bodies);
      assert.deepEqual(
        deliveries.map((delivery) => [delivery.body.order_id, delivery.body.duplicate, delivery.body.applied, delivery.body.conflict]),
        [[orderId, false, true, undefined], [orderId, false, true, undefined]],
        bodies,
      );
      assert.deepEqual(deliveries.map((delivery) => delivery.headers.get('idempotent-replayed')).sort(), [null, 'true'], bodies);
      const events = (await t.admin.query(`SELECT order_id, outcome, payload -> 'data' ->> 'reference' AS reference, payload -> 'data' ->> 'merchant' AS merchant FROM fulfilment_webhook_events WHERE id = $1`, [event.id])).rows;
      assert.deepEqual(events, [{ order_id: orderId, outcome: 'applied', reference: orderId, merchant: shop.tenantId }]);
      const history = (await t.admin.query(`SELECT to_status, source FROM order_status_history WHERE order_id = $1 AND source = 'webhook'`, [orderId])).rows;
      assert.deepEqual(history, [{ to_status: 'submitted', source: 'webhook' }]);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1`, [orderId])).rows[0].n, 0);
    }
    assert.deepEqual(await integrityFindings(t.admin, shop.tenantId), []);
  });
});

describe('a recovery racing the provider\'s webhooks (API + worker + provider-sim)', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let worker: RunningWorker | undefined;
  const overrides: Partial<Config> = { fulfilmentTimeoutMs: 10_000, ordersStuckAfterSeconds: 60, jobRetryBaseMs: 20, jobRetryMaxMs: 100, jobMaxAttempts: 4, workerMetricsPort: 0 };
  before(async () => {
    sim = await startProviderSim({ secret: WEBHOOK_SECRET, faults: { webhooks: false } });
    Object.assign(overrides, { fulfilmentUrl: sim.url, fulfilmentWebhookSecret: WEBHOOK_SECRET });
    t = await startTestApp(overrides);
  });
  after(async () => {
    await worker?.stop();
    await sim.stop();
    await t.close();
  });

  it('a stuck order the provider holds: its recovery (a slow lookup) and the provider\'s events, each delivered twice, all at once; one move per status, nothing written by the stale lookup', async () => {
    const shop = await newOrderShop(t);
    for (let round = 0; round < 3; round++) {
      // Given an order stuck in submitting that the provider created (our answer was lost)
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      const { providerKey } = await makeStuckSubmitting(t.admin, orderId);
      const made = await fetch(`${sim.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': providerKey },
        body: JSON.stringify({ reference: orderId, merchant: shop.tenantId, lines: [] }),
      });
      assert.equal(made.status, 201);
      const providerOrderId = ((await made.json()) as { id: string }).id;
      const event = (status: string) => {
        const base = providerEvent(shop.tenantId, orderId, status);
        return { ...base, data: { ...base.data, order_id: providerOrderId } };
      };
      const operationsBefore = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1`, [shop.tenantId])).rows[0].n as number;
      // When its recovery asks the provider (500 ms a call) and, while it waits, the provider's events arrive, each twice
      sim.faults.latencyMs = 500;
      try {
        worker = await startTestWorker(t, overrides, [recoverOrder]);
        await enqueueForTenant(t, shop.tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
        await waitFor('the recovery to ask the provider', async () => providerLookups(sim, providerKey) === 1, 10_000, 10);
        const accepted = event('accepted');
        const processing = event('processing');
        const deliveries = await Promise.all([accepted, processing, accepted, { ...processing, delivery_attempt: 2 }].map((body) => postWebhook(t.baseUrl, body)));
        assert.deepEqual(deliveries.map((delivery) => delivery.status), [200, 200, 200, 200], JSON.stringify(deliveries.map((d) => d.body)));
        await waitFor('the recovery to end', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [`order.recover:${orderId}`])).rows[0].n === 0, 10_000, 50);
      } finally {
        sim.faults.latencyMs = 0;
        await worker?.stop();
        worker = undefined;
      }
      // Then the order is processing at the provider's order, each status reached once, from where the one before ended
      const order = (await t.admin.query(`SELECT status, provider_order_id, recoveries, version FROM orders WHERE id = $1`, [orderId])).rows[0];
      assert.deepEqual([order.status, order.provider_order_id, order.recoveries], ['processing', providerOrderId, 0]);
      const history = (await t.admin.query(`SELECT from_status, to_status, source FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId])).rows;
      const statuses = history.map((row) => row.to_status);
      assert.equal(new Set(statuses).size, statuses.length, JSON.stringify(history));
      assert.equal(history.filter((row) => row.source === 'recovery').length, 0, 'the lookup answered "accepted" after the provider said more: stale');
      // each event recorded once; the stale lookup wrote nothing (no operation, no resubmission)
      const events = (await t.admin.query(`SELECT provider_status FROM fulfilment_webhook_events WHERE order_id = $1 ORDER BY provider_status`, [orderId])).rows;
      assert.deepEqual(events.map((row) => row.provider_status), ['accepted', 'processing']);
      const written = (await t.admin.query(`SELECT type FROM operations WHERE tenant_id = $1 ORDER BY created_at OFFSET $2`, [shop.tenantId, operationsBefore])).rows.map((row) => row.type);
      assert.ok(written.every((type) => type === 'order.webhook'), JSON.stringify(written));
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1`, [orderId])).rows[0].n, 0);
      assert.equal([...sim.orders.values()].filter((simOrder) => simOrder.reference === orderId).length, 1);
    }
    assert.deepEqual(await integrityFindings(t.admin, shop.tenantId, ['order_status_matches_history', 'order_history_follows_machine', 'order_has_lines']), []);
  });
});
