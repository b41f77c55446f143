/** Stuck-order recovery when an order's submission keeps failing before it reaches the provider. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig, type Config } from '../config.js';
import { createLogger } from '../core/logger.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { startWorker, type RunningWorker } from '../jobs/worker.js';
import { startProviderSim, type ProviderSim } from '../providerSim/providerSim.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksForTenant } from '../integrity/runChecks.js';
import { MAX_RECOVERIES } from './recoverOrderJob.js';
import { newOrderShop, orderBody, statusOf, WEBHOOK_SECRET } from './testkit.js';

describe('recovery of an order stuck in pending', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let worker: RunningWorker;
  const overrides: Partial<Config> = {
    fulfilmentTimeoutMs: 300,
    ordersStuckAfterSeconds: 1,
    jobRetryBaseMs: 20,
    jobRetryMaxMs: 100,
    jobMaxAttempts: 4,
    workerMetricsPort: 0,
  };
  before(async () => {
    sim = await startProviderSim({ secret: WEBHOOK_SECRET });
    Object.assign(overrides, { fulfilmentUrl: sim.url, fulfilmentWebhookSecret: WEBHOOK_SECRET });
    t = await startTestApp(overrides);
    sim.webhookUrl = `${t.baseUrl}/v1/webhooks/fulfilment`;
  });
  after(async () => {
    await worker?.stop();
    await sim.stop();
    await t.close();
  });

  it('is bounded: after MAX_RECOVERIES the order is failed with one order_failed review item, not recovered forever', async () => {
    const shop = await newOrderShop(t);
    // Given an order whose pending → submitting move always fails (any
    // persistent error of the submit command; injected as a trigger)
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    await t.admin.query(`
      CREATE FUNCTION refuse_submit_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF OLD.status = 'pending' AND NEW.status = 'submitting' THEN RAISE EXCEPTION 'injected: submit cannot start'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_submit_for_test BEFORE UPDATE ON orders FOR EACH ROW WHEN (OLD.id = '${orderId}') EXECUTE FUNCTION refuse_submit_for_test();`);
    worker = await startWorker({ databaseUrl: t.url, config: { ...loadConfig({ LOG_LEVEL: 'silent' }), ...overrides }, logger: createLogger('silent'), cronItems: [], pollIntervalMs: 100 });
    // When the worker runs (scaled: stuck after 1 s, swept every 0.5 s)
    await waitFor('the order to be given up', async () => (await statusOf(t.admin, orderId)) === 'failed', 30_000, 200);
    // Then it was recovered MAX_RECOVERIES times, failed once, for review
    const order = (await t.admin.query(`SELECT recoveries, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(order.recoveries, MAX_RECOVERIES);
    assert.match(order.last_error, /still pending after 3 recoveries/);
    const items = (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE tenant_id = $1 AND kind = 'order_failed' AND subject_id = $2`, [shop.tenantId, orderId])).rows[0].n;
    assert.equal(items, 1);
    await sleep(2_000);
    assert.equal(await statusOf(t.admin, orderId), 'failed', 'and stays failed');
    const run = await runChecksForTenant(t.db, shop.tenantId, allChecks, { ordersStuckSeconds: 2 });
    assert.deepEqual(run.findings.filter((finding) => finding.check === 'order_not_stuck'), []);
  });
});
