/** Stuck-order recovery: an order whose submission keeps failing before it reaches the provider, and two recoveries of one order at once. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import type { RunningWorker } from '../jobs/worker.js';
import { startProviderSim, type ProviderSim } from '../providerSim/providerSim.js';
import type { TaskDefinition } from '../jobs/task.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksForTenant } from '../integrity/runChecks.js';
import { submitJobKey } from './createOrder.js';
import { MAX_RECOVERIES, recoverOrder } from './recoverOrderJob.js';
import { submitOrder } from './submitOrderJob.js';
import { makeStuckSubmitting, newOrderShop, orderBody, providerLookups, statusOf, WEBHOOK_SECRET } from './testkit.js';
import { testCheckLog } from '../../test/support/integrity.js';

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
    worker = await startTestWorker(t, overrides);
    // When the worker runs (scaled: stuck after 1 s, swept every 0.5 s)
    await waitFor('the order to be given up', async () => (await statusOf(t.admin, orderId)) === 'failed', 30_000, 200);
    // Then it was recovered MAX_RECOVERIES times, failed once, for review
    const order = (await t.admin.query(`SELECT recoveries, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(order.recoveries, MAX_RECOVERIES);
    assert.match(order.last_error, /still pending after 3 recoveries/);
    const items = (await t.admin.query(`SELECT detail FROM review_items WHERE tenant_id = $1 AND kind = 'order_failed' AND subject_id = $2`, [shop.tenantId, orderId])).rows;
    assert.equal(items.length, 1);
    // with what README promises every order_failed item says: why, the status and who failed it, what to refund
    const { detail } = items[0];
    assert.match(detail.reason, /still pending after 3 recoveries/);
    assert.deepEqual([detail.status, detail.source, detail.payment_reference], ['failed', 'recovery', created.body.payment_reference]);
    await sleep(2_000);
    assert.equal(await statusOf(t.admin, orderId), 'failed', 'and stays failed');
    const run = await runChecksForTenant(t.db, shop.tenantId, allChecks, { ordersStuckSeconds: 2 }, testCheckLog);
    assert.deepEqual(run.findings.filter((finding) => finding.check === 'order_not_stuck'), []);
  });

  /** A new pending order, its submit's job key and queued job (the worker stopped). */
  async function pendingOrder(): Promise<{ orderId: string; key: string; queued: { id: string; payload: Record<string, unknown> } }> {
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    const key = submitJobKey(orderId);
    const queued = (await t.admin.query(`SELECT id, payload FROM graphile_worker._private_jobs WHERE key = $1`, [key])).rows[0];
    return { orderId, key, queued };
  }

  it('leaves a submit that waits for its retry as it is: its attempt count and its time survive a recovery', async () => {
    await worker?.stop();
    // Given a pending order whose submit already failed twice and waits an hour for attempt 3
    const { orderId, key, queued } = await pendingOrder();
    const runAt = new Date(Date.now() + 3_600_000);
    await t.admin.query(`SELECT graphile_worker.add_job('order.submit', $1::json, run_at => $2, job_key => $3, job_key_mode => 'replace', max_attempts => 5)`, [
      JSON.stringify({ ...queued.payload, attempt: 3, max_attempts: 4, last_error: 'provider said 503' }),
      runAt,
      key,
    ]);
    // When it has been pending long enough to be recovered, and the worker recovers it
    await sleep(1_200);
    worker = await startTestWorker(t, overrides);
    await waitFor('a recovery', async () => (await t.admin.query(`SELECT recoveries FROM orders WHERE id = $1`, [orderId])).rows[0].recoveries >= 1, 15_000, 100);
    // Then the waiting submit is the same attempt 3 at the same time (not attempt 1 again)
    const jobs = (await t.admin.query(`SELECT payload, run_at FROM graphile_worker._private_jobs WHERE key = $1`, [key])).rows;
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0].payload.attempt, 3);
    assert.equal(jobs[0].payload.max_attempts, 4);
    assert.equal(jobs[0].run_at.getTime(), runAt.getTime());
    assert.equal(await statusOf(t.admin, orderId), 'pending');
  });

  it('a second recovery job of the order, queued by a sweep while the first ran, finds it recovered and does nothing', async () => {
    await worker?.stop();
    // Given a pending order stuck for an hour whose submit waits an hour for its retry
    const { orderId, key, queued } = await pendingOrder();
    await t.admin.query(`SELECT graphile_worker.add_job('order.submit', $1::json, run_at => now() + interval '1 hour', job_key => $2, job_key_mode => 'replace', max_attempts => 5)`, [
      JSON.stringify({ ...queued.payload, attempt: 2, max_attempts: 4 }),
      key,
    ]);
    await t.admin.query(`UPDATE orders SET status_changed_at = now() - interval '1 hour' WHERE id = $1`, [orderId]);
    // And two recovery jobs of it: the sweep's, and one a later sweep added while the first was running
    // (a running job no longer holds its key)
    const tenantId = (await t.admin.query(`SELECT tenant_id FROM orders WHERE id = $1`, [orderId])).rows[0].tenant_id as string;
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId });
    // When a worker runs them one after the other (no sweep of its own; stuck after a minute)
    worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 60, workerConcurrency: 1 }, [recoverOrder]);
    await waitFor(
      'both recovery jobs to run',
      async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE task_id IN (SELECT id FROM graphile_worker._private_tasks WHERE identifier = 'order.recover')`)).rows[0].n === 0,
      15_000,
      100,
    );
    // Then the order was recovered once, not twice
    const recoveries = (await t.admin.query(`SELECT recoveries FROM orders WHERE id = $1`, [orderId])).rows[0].recoveries;
    assert.equal(recoveries, 1);
    const operations = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'order.recover'`, [tenantId])).rows[0].n;
    assert.equal(operations, 1);
  });

  /** A new order stuck in `submitting` for an hour after `recoveries` recoveries (its submit job gone, the worker stopped), the provider never having heard of it. */
  async function stuckSubmittingOrder(recoveries: number): Promise<{ orderId: string; tenantId: string; providerKey: string }> {
    await worker?.stop();
    const { orderId } = await pendingOrder();
    return { orderId, ...(await makeStuckSubmitting(t.admin, orderId, recoveries)) };
  }

  /**
   * Two `order.recover` jobs of the order — the sweep's, and one a later sweep
   * added while the first was running (a running job no longer holds its key) —
   * run side by side by one worker (no sweep of its own) while every provider
   * call takes 1.5 s; resolves once both have run.
   */
  async function recoverTwiceAtOnce(orderId: string, tenantId: string, tasks: TaskDefinition[] = [recoverOrder]): Promise<void> {
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId });
    sim.faults.latencyMs = 1_500;
    try {
      worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 60, fulfilmentTimeoutMs: 10_000, workerConcurrency: 2 }, tasks);
      await waitFor(
        'both recovery jobs to run',
        async () =>
          (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE task_id IN (SELECT id FROM graphile_worker._private_tasks WHERE identifier = 'order.recover')`))
            .rows[0].n === 0,
        20_000,
        100,
      );
    } finally {
      sim.faults.latencyMs = 0;
    }
  }

  const lookupsOf = (providerKey: string) => providerLookups(sim, providerKey);
  const operationsOf = async (tenantId: string, type: string) =>
    (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = $2`, [tenantId, type])).rows[0].n as number;

  it('two recoveries of one stuck order run at once while the provider is slow: one asks the provider and submits again, the other does nothing', async () => {
    // Given an order stuck in submitting that the provider never created
    const { orderId, tenantId, providerKey } = await stuckSubmittingOrder(0);
    // When two recovery jobs of it run side by side, each lookup taking 1.5 s
    await recoverTwiceAtOnce(orderId, tenantId);
    // Then the provider was asked once, and the order was submitted again once
    assert.equal(lookupsOf(providerKey), 1, 'one lookup at the provider');
    const order = (await t.admin.query(`SELECT status, recoveries FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.deepEqual([order.status, order.recoveries], ['submitting', 1]);
    const resubmits = (await t.admin.query(`SELECT count(*)::int AS n FROM order_status_history WHERE order_id = $1 AND detail ->> 'event' = 'resubmit'`, [orderId])).rows[0].n;
    assert.equal(resubmits, 1);
    assert.equal(await operationsOf(tenantId, 'order.recover'), 1, 'one recovery recorded');
    const submits = (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [submitJobKey(orderId)])).rows[0].n;
    assert.equal(submits, 1, 'one submit queued');
  });

  it('two recoveries of an order at its last recovery run at once: one lookup, one give-up, one order_failed item', async () => {
    // Given an order stuck in submitting after MAX_RECOVERIES recoveries, still unknown to the provider
    const { orderId, tenantId, providerKey } = await stuckSubmittingOrder(MAX_RECOVERIES);
    // When two recovery jobs of it run side by side, each lookup taking 1.5 s
    await recoverTwiceAtOnce(orderId, tenantId);
    // Then it was failed once, for review, by one chain that asked the provider once
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await operationsOf(tenantId, 'order.give_up'), 1, 'one give-up operation');
    assert.equal(lookupsOf(providerKey), 1, 'one lookup at the provider');
    const items = (await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1 AND kind = 'order_failed'`, [orderId])).rows[0].n;
    assert.equal(items, 1);
    const failedMoves = (await t.admin.query(`SELECT count(*)::int AS n FROM order_status_history WHERE order_id = $1 AND to_status = 'failed'`, [orderId])).rows[0].n;
    assert.equal(failedMoves, 1);
  });

  it("a recovery at its last try does not give up an order whose own submit is running: the provider's create landing after the lookup is not an order failed for review", async () => {
    // Given an order stuck in submitting after MAX_RECOVERIES recoveries, still unknown to the provider,
    // its submit chain still at work (a retry after a 5xx, or the resubmit's job), every provider call taking 1.5 s
    const { orderId, tenantId, providerKey } = await stuckSubmittingOrder(MAX_RECOVERIES);
    sim.faults.webhooks = false;
    sim.faults.latencyMs = 1_500;
    try {
      // (slots to spare: an earlier test's order may have a submit due, which this worker runs too)
      worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 60, fulfilmentTimeoutMs: 10_000, workerConcurrency: 4 }, [recoverOrder, submitOrder]);
      // When its recovery asks the provider, and while that lookup is on its way the submit's create goes out
      await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
      await waitFor('the recovery to ask the provider', async () => providerLookups(sim, providerKey) === 1, 10_000, 20);
      await enqueueForTenant(t, tenantId, 'order.submit', { order_id: orderId }, { jobKey: submitJobKey(orderId) });
      await waitFor(
        'both jobs to run',
        async () =>
          (
            await t.admin.query(
              `SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE payload -> 'data' ->> 'order_id' = $1`,
              [orderId],
            )
          ).rows[0].n === 0,
        20_000,
        100,
      );
    } finally {
      sim.faults.latencyMs = 0;
      sim.faults.webhooks = true;
    }
    // Then the provider holds one order (the lookup came before the create and found nothing)…
    const atProvider = [...sim.orders.values()].filter((order) => order.reference === orderId);
    assert.equal(atProvider.length, 1);
    // …and ours follows it: submitted, not failed for someone to refund while the goods ship
    const order = (await t.admin.query(`SELECT status, provider_order_id FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.deepEqual([order.status, order.provider_order_id], ['submitted', atProvider[0]!.id]);
    const items = (await t.admin.query(`SELECT kind FROM review_items WHERE subject_id = $1 AND kind IN ('order_failed', 'order_provider_mismatch')`, [orderId])).rows;
    assert.deepEqual(items, []);
    assert.equal(await operationsOf(tenantId, 'order.give_up'), 0, 'no give-up recorded');
    const history = await t.admin.query(`SELECT from_status, to_status FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId]);
    assert.deepEqual(history.rows.at(-1), { from_status: 'submitting', to_status: 'submitted' });
  });

  it('a recovery at its last try leaves an order whose submit waits for its retry (it will call the provider again); with no submit left it gives up', async () => {
    // Given an order stuck in submitting after MAX_RECOVERIES recoveries, unknown to the provider, its submit waiting an hour for attempt 3
    const { orderId, tenantId } = await stuckSubmittingOrder(MAX_RECOVERIES);
    const key = submitJobKey(orderId);
    await enqueueForTenant(t, tenantId, 'order.submit', { order_id: orderId }, { jobKey: key, runAt: new Date(Date.now() + 3_600_000) });
    const runRecovery = async () => {
      await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
      worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 60 }, [recoverOrder]);
      await waitFor('the recovery to run', async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [`order.recover:${orderId}`])).rows[0].n === 0, 15_000, 100);
      await worker.stop();
    };
    // When its recovery runs
    await runRecovery();
    // Then it is left to its submit: not failed, no item, no operation
    assert.equal(await statusOf(t.admin, orderId), 'submitting');
    assert.equal(await operationsOf(tenantId, 'order.give_up'), 0);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE subject_id = $1`, [orderId])).rows[0].n, 0);
    // And once that submit is gone (it gave up), the next recovery gives the order up
    await t.admin.query(`SELECT graphile_worker.remove_job($1)`, [key]);
    await t.admin.query(`UPDATE orders SET recovery_claimed_at = NULL WHERE id = $1`, [orderId]);
    await runRecovery();
    assert.equal(await statusOf(t.admin, orderId), 'failed');
    assert.equal(await operationsOf(tenantId, 'order.give_up'), 1);
  });

  it('a stuck order the provider holds as cancelled is cancelled by its recovery, not moved to submitted', async () => {
    // Given an order stuck in submitting that the provider created (the answer was lost) and then cancelled on its side
    const { orderId, tenantId, providerKey } = await stuckSubmittingOrder(0);
    const created = await fetch(`${sim.url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': providerKey },
      body: JSON.stringify({ reference: orderId, merchant: tenantId, lines: [] }),
    });
    assert.equal(created.status, 201);
    const simOrder = [...sim.orders.values()].find((order) => order.idempotency_key === providerKey)!;
    simOrder.status = 'cancelled';
    // When its recovery runs
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 60 }, [recoverOrder]);
    await waitFor('the order to move on', async () => (await statusOf(t.admin, orderId)) !== 'submitting', 15_000, 100);
    // Then it is cancelled as the provider did it, with its provider order id, and not submitted again
    const order = (await t.admin.query(`SELECT status, provider_order_id, recoveries FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.deepEqual([order.status, order.provider_order_id, order.recoveries], ['cancelled', simOrder.id, 0]);
    const history = await t.admin.query(`SELECT from_status, to_status, source FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId]);
    assert.deepEqual(history.rows.at(-1), { from_status: 'submitting', to_status: 'cancelled', source: 'recovery' });
  });

  it('keep_waiting holds the waiting submit until the recovering transaction ends: a running worker cannot take it in between', async () => {
    await worker?.stop();
    // Given a pending order whose submit is due now
    const { orderId, key, queued } = await pendingOrder();
    // When a recovery finds it waiting (enqueue_job keep_waiting) and, before that transaction commits, a worker looks for work
    const recovery = await t.admin.connect();
    try {
      await recovery.query('BEGIN');
      await recovery.query(`SELECT set_config('app.tenant_id', $1, true)`, [queued.payload.tenant_id]);
      const kept = await recovery.query(`SELECT enqueue_job('order.submit', $1::jsonb, NULL, NULL, $2, 'keep_waiting') AS id`, [JSON.stringify(queued.payload), key]);
      assert.equal(String(kept.rows[0].id), String(queued.id), 'the waiting job is kept, not replaced');
      // (no sweep of its own: with the order pending past a 1 s stuck-after, the
      // worker's own recovery could run while the submit does and queue a second
      // submit — a real, idempotent second call that is not what this checks; nor
      // a retry after a 300 ms provider timeout on a loaded machine)
      worker = await startTestWorker(t, { ...overrides, ordersStuckAfterSeconds: 3_600, fulfilmentTimeoutMs: 10_000 });
      await sleep(1_500);
      // Then the worker has not taken it: the recovering transaction holds its row (the worker skips locked jobs)
      const meanwhile = (await t.admin.query(`SELECT locked_at, attempts FROM graphile_worker._private_jobs WHERE key = $1`, [key])).rows;
      assert.deepEqual(meanwhile, [{ locked_at: null, attempts: 0 }]);
      assert.equal(await statusOf(t.admin, orderId), 'pending');
      await recovery.query('COMMIT');
    } finally {
      await recovery.query('ROLLBACK').catch(() => undefined);
      recovery.release();
    }
    // And once it has committed, the worker takes the one job and submits the order
    await waitFor('the order to be submitted', async () => ['submitted', 'processing', 'completed'].includes((await statusOf(t.admin, orderId)) ?? ''), 15_000, 100);
    const atProvider = [...sim.orders.values()].filter((order) => order.reference === orderId);
    assert.equal(atProvider.length, 1);
    assert.equal(atProvider[0]!.create_calls, 1);
    assert.equal((await t.admin.query(`SELECT recoveries FROM orders WHERE id = $1`, [orderId])).rows[0].recoveries, 0, 'no recovery of its own ran');
  });
});
