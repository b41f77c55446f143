/**
 * Claims of an order by its jobs (order.poll, order.recover): a try that
 * changes nothing writes nothing durable — no operation, no audit event, only
 * the claim's one timestamp on the order row, overwritten by the next try; a
 * try that changes the order is one operation with its effects; two workers
 * never both act on one order; a worker killed after claiming leaves a lease
 * that runs out, and the order is recovered by another.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { enqueueForTenant, startTestWorker } from '../../test/support/worker.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { root } from '../../test/support/processes.js';
import { waitFor } from '../../test/support/wait.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksForTenant } from '../integrity/runChecks.js';
import type { RunningWorker } from '../jobs/worker.js';
import type { TaskDefinition } from '../jobs/task.js';
import { startProviderSim, type ProviderSim, type SimOrder } from '../providerSim/providerSim.js';
import { pollOrder, recoverOrder } from './recoverOrderJob.js';
import { makeStuckSubmitting, newOrderShop, orderBody, providerLookups, statusOf, waitForStatus, WEBHOOK_SECRET } from './testkit.js';
import { testCheckLog } from '../../test/support/integrity.js';

describe('claims of an order by its jobs', () => {
  let t: TestApp;
  let sim: ProviderSim;
  let workers: RunningWorker[] = [];
  // Scaled: stuck after 1 s (the sweep runs every 0.5 s), asked about after 1 s without moving, retries 20–50 ms apart;
  // the provider's answers waited for 10 s (a loaded machine must not turn a lookup into a timeout and a give-up).
  const overrides: Partial<Config> = {
    fulfilmentTimeoutMs: 10_000,
    ordersStuckAfterSeconds: 1,
    ordersPollAfterSeconds: 1,
    jobRetryBaseMs: 20,
    jobRetryMaxMs: 50,
    workerMetricsPort: 0,
  };
  before(async () => {
    // A provider whose webhooks never arrive: the order moves only by what the jobs find out
    sim = await startProviderSim({ secret: WEBHOOK_SECRET, faults: { webhooks: false } });
    Object.assign(overrides, { fulfilmentUrl: sim.url, fulfilmentWebhookSecret: WEBHOOK_SECRET });
    t = await startTestApp(overrides);
  });
  after(async () => {
    await stopWorkers();
    await sim.stop();
    await t.close();
  });

  async function startWorkers(count: number, config: Partial<Config>, tasks?: TaskDefinition[]): Promise<void> {
    for (let n = 0; n < count; n++) workers.push(await startTestWorker(t, { ...overrides, ...config }, tasks));
  }
  async function stopWorkers(): Promise<void> {
    const running = workers;
    workers = [];
    await Promise.all(running.map((worker) => worker.stop()));
  }

  /** What the tenant's operations and audit events, and the order's row, history and review items, are now. */
  async function footprint(tenantId: string, orderId: string) {
    const { rows } = await t.admin.query(
      `SELECT (SELECT coalesce(array_agg(id::text ORDER BY id), '{}') FROM operations WHERE tenant_id = $1) AS operations,
              (SELECT count(*)::int FROM events WHERE tenant_id = $1) AS events,
              (SELECT count(*)::int FROM order_status_history WHERE order_id = $2) AS history,
              (SELECT count(*)::int FROM review_items WHERE tenant_id = $1) AS review_items,
              o.status, o.version, o.status_changed_at, o.updated_at, o.recoveries, o.submit_attempts, o.last_error, o.provider_order_id
       FROM orders o WHERE o.id = $2`,
      [tenantId, orderId],
    );
    return rows[0] as { operations: string[]; events: number; history: number; review_items: number; version: number } & Record<string, unknown>;
  }

  /** The operations written since `before`, with the effects their command's audit event lists and their number of audit events. */
  async function operationsSince(tenantId: string, before: { operations: string[] }) {
    const { rows } = await t.admin.query(
      `SELECT o.id, o.type,
              (SELECT e.effects FROM events e WHERE e.tenant_id = o.tenant_id AND e.op_id = o.id AND e.subject_type IS NULL) AS effects,
              (SELECT count(*)::int FROM events e WHERE e.tenant_id = o.tenant_id AND e.op_id = o.id) AS events
       FROM operations o WHERE o.tenant_id = $1 AND NOT (o.id::text = ANY($2::text[])) ORDER BY o.created_at, o.id`,
      [tenantId, before.operations],
    );
    return rows as Array<{ id: string; type: string; effects: Array<{ table: string; id: string; action: string }> | null; events: number }>;
  }

  const lookupsOf = (providerKey: string) => providerLookups(sim, providerKey);
  const simOrderOf = (orderId: string): SimOrder => {
    const found = [...sim.orders.values()].filter((order) => order.reference === orderId);
    assert.equal(found.length, 1, `one provider order for ${orderId}`);
    return found[0]!;
  };
  const jobsLeft = async (task: string) =>
    (
      await t.admin.query(
        `SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE task_id IN (SELECT id FROM graphile_worker._private_tasks WHERE identifier = $1)`,
        [task],
      )
    ).rows[0].n as number;

  /** A new order the provider accepted (`submitted` here), submitted by a worker that is then stopped. */
  async function submittedOrder() {
    await stopWorkers();
    const shop = await newOrderShop(t);
    await startWorkers(1, {});
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    await waitForStatus(t.admin, orderId, 'submitted');
    await stopWorkers();
    const providerKey = (await t.admin.query(`SELECT provider_key FROM orders WHERE id = $1`, [orderId])).rows[0].provider_key as string;
    return { tenantId: shop.tenantId, orderId, providerKey };
  }

  /** A new order stuck in `submitting` for an hour (its submit job gone, no worker running); `atProvider`: the provider created it (our answer was lost). */
  async function stuckSubmittingOrder(atProvider: boolean) {
    await stopWorkers();
    const shop = await newOrderShop(t);
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const orderId = created.body.id as string;
    const { providerKey } = await makeStuckSubmitting(t.admin, orderId);
    if (atProvider) {
      const made = await fetch(`${sim.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': providerKey },
        body: JSON.stringify({ reference: orderId, merchant: shop.tenantId, lines: [] }),
      });
      assert.equal(made.status, 201);
    }
    return { tenantId: shop.tenantId, orderId, providerKey };
  }

  /** The one operation a try that moved the order wrote: its effect on the order, its audit events, and the history row carrying its id. */
  async function assertOneTransition(tenantId: string, orderId: string, before: { operations: string[] }, type: string, from: string, to: string) {
    const written = await operationsSince(tenantId, before);
    assert.deepEqual(
      written.map((operation) => operation.type),
      [type],
      `the operations written: ${JSON.stringify(written)}`,
    );
    const [operation] = written;
    assert.deepEqual(operation!.effects, [{ table: 'orders', id: orderId, action: 'updated' }]);
    assert.equal(operation!.events, 2, 'the command and the order, audited');
    const moves = (await t.admin.query(`SELECT from_status, to_status, op_id FROM order_status_history WHERE order_id = $1 ORDER BY id`, [orderId])).rows;
    assert.deepEqual(moves.filter((move) => move.to_status === to), [{ from_status: from, to_status: to, op_id: operation!.id }]);
  }

  it('lookups answering what the order already says leave no operation, no audit event and no history; the lookup that moves it writes one operation', async () => {
    // Given an order the provider accepted and still holds as accepted (its webhooks lost)
    const { tenantId, orderId, providerKey } = await submittedOrder();
    const before = await footprint(tenantId, orderId);
    // When the sweep has it looked up four times (asked again after each quarter second unchanged — the poll period scaled
    // below the file's 1 s: the sweep runs every 0.5 s, so each sweep finds it due), and the worker stops (its running try ends)
    const pollSoon: Partial<Config> = { ordersPollAfterSeconds: 0.25 };
    const lookupsBefore = lookupsOf(providerKey);
    await startWorkers(1, pollSoon);
    await waitFor('four lookups at the provider', async () => lookupsOf(providerKey) - lookupsBefore >= 4, 20_000, 50);
    await stopWorkers();
    // Then nothing was written but the claim's timestamp
    const afterLookups = await footprint(tenantId, orderId);
    assert.deepEqual(await operationsSince(tenantId, before), [], 'no operation for a lookup that changed nothing');
    assert.deepEqual(afterLookups, before);
    const checked = (await t.admin.query(`SELECT provider_checked_at FROM orders WHERE id = $1`, [orderId])).rows[0].provider_checked_at as Date | null;
    assert.ok(checked !== null, 'each try marks the order as asked (the claim)');

    // When the provider moves it on (processing), the next lookup moves it here: one operation, one history row
    simOrderOf(orderId).status = 'processing';
    await startWorkers(1, pollSoon);
    await waitForStatus(t.admin, orderId, 'processing', 15_000);
    // and three more lookups answering "processing", as the order now says, write nothing more
    const lookupsMoved = lookupsOf(providerKey);
    await waitFor('three more lookups', async () => lookupsOf(providerKey) - lookupsMoved >= 3, 20_000, 50);
    await stopWorkers();
    await assertOneTransition(tenantId, orderId, before, 'order.poll', 'submitted', 'processing');
    const moved = await footprint(tenantId, orderId);
    assert.deepEqual([moved.history, moved.version, moved.review_items], [before.history + 1, before.version + 1, before.review_items]);
  });

  it('recovery tries that find nothing (the provider refuses the lookup) leave nothing but their give-up; the recovery that moves the order writes one operation', async () => {
    // Given an order stuck in submitting that the provider holds, and a provider refusing the next three lookups (401)
    const { tenantId, orderId, providerKey } = await stuckSubmittingOrder(true);
    const before = await footprint(tenantId, orderId);
    sim.faults.refuseAuth = 3;
    // When one recovery tries three times and gives up (no sweep of its own)
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    await startWorkers(1, { ordersStuckAfterSeconds: 60, jobMaxAttempts: 3 }, [recoverOrder]);
    await waitFor('the recovery to give up', async () => (await jobsLeft('order.recover')) === 0, 15_000, 50);
    await stopWorkers();
    // Then its one give-up (with its job_failed item) is all that was written: no operation per try
    assert.equal(lookupsOf(providerKey), 3);
    assert.deepEqual(
      (await operationsSince(tenantId, before)).map((operation) => operation.type),
      ['job.give_up'],
    );
    const gaveUp = await footprint(tenantId, orderId);
    assert.deepEqual({ ...gaveUp, operations: before.operations, events: before.events, review_items: before.review_items }, before, 'the order as it was');
    assert.equal(gaveUp.review_items, before.review_items + 1);
    const afterGiveUp = await footprint(tenantId, orderId);

    // When the claim has run out and the next recovery reaches the provider
    await t.admin.query(`UPDATE orders SET recovery_claimed_at = now() - interval '1 hour' WHERE id = $1`, [orderId]);
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    await startWorkers(1, { ordersStuckAfterSeconds: 60 }, [recoverOrder]);
    await waitForStatus(t.admin, orderId, 'submitted', 15_000);
    await waitFor('the recovery to end', async () => (await jobsLeft('order.recover')) === 0, 15_000, 50);
    await stopWorkers();
    // Then that try is one operation: the move, its audit events and its history row
    await assertOneTransition(tenantId, orderId, afterGiveUp, 'order.recover', 'submitting', 'submitted');
  });

  it('pollers on two workers, four jobs of one order at once: one lookup, one transition, one operation', async () => {
    // Given an order the provider completed, due for a lookup (unmoved for an hour), and a provider taking 1.5 s to answer
    const { tenantId, orderId, providerKey } = await submittedOrder();
    await t.admin.query(`UPDATE orders SET status_changed_at = now() - interval '1 hour', provider_checked_at = NULL WHERE id = $1`, [orderId]);
    simOrderOf(orderId).status = 'completed';
    const before = await footprint(tenantId, orderId);
    const lookupsBefore = lookupsOf(providerKey);
    // When four lookups of it are queued (the sweep's, and three queued while others ran) and two workers run them side by side
    await enqueueForTenant(t, tenantId, 'order.poll', { order_id: orderId }, { jobKey: `order.poll:${orderId}`, jobKeyMode: 'keep_waiting' });
    for (let n = 0; n < 3; n++) await enqueueForTenant(t, tenantId, 'order.poll', { order_id: orderId });
    sim.faults.latencyMs = 1_500;
    try {
      await startWorkers(2, { ordersPollAfterSeconds: 60, fulfilmentTimeoutMs: 10_000, workerConcurrency: 2 }, [pollOrder]);
      await waitFor('every lookup job to run', async () => (await jobsLeft('order.poll')) === 0, 20_000, 50);
      await stopWorkers();
    } finally {
      sim.faults.latencyMs = 0;
    }
    // Then the provider was asked once, and the order completed once, in one operation
    assert.equal(lookupsOf(providerKey) - lookupsBefore, 1, 'one lookup at the provider');
    assert.equal(await statusOf(t.admin, orderId), 'completed');
    await assertOneTransition(tenantId, orderId, before, 'order.poll', 'submitted', 'completed');
  });

  it('recoveries on two workers, four jobs of one stuck order at once: one lookup, one transition, one operation', async () => {
    // Given an order stuck in submitting that the provider created (the answer was lost), and a provider taking 1.5 s to answer
    const { tenantId, orderId, providerKey } = await stuckSubmittingOrder(true);
    const before = await footprint(tenantId, orderId);
    // When four recoveries of it are queued and two workers run them side by side
    await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId }, { jobKey: `order.recover:${orderId}`, jobKeyMode: 'keep_waiting' });
    for (let n = 0; n < 3; n++) await enqueueForTenant(t, tenantId, 'order.recover', { order_id: orderId });
    sim.faults.latencyMs = 1_500;
    try {
      await startWorkers(2, { ordersStuckAfterSeconds: 60, fulfilmentTimeoutMs: 10_000, workerConcurrency: 2 }, [recoverOrder]);
      await waitFor('every recovery job to run', async () => (await jobsLeft('order.recover')) === 0, 20_000, 50);
      await stopWorkers();
    } finally {
      sim.faults.latencyMs = 0;
    }
    // Then the provider was asked once, the order moved on once, in one operation, and nothing was submitted again
    assert.equal(lookupsOf(providerKey), 1, 'one lookup at the provider');
    await assertOneTransition(tenantId, orderId, before, 'order.recover', 'submitting', 'submitted');
    const order = await footprint(tenantId, orderId);
    assert.deepEqual([order.status, order.recoveries], ['submitted', 0]);
    assert.equal(simOrderOf(orderId).create_calls, 1, 'the provider order was created once');
  });

  it('a worker killed -9 after claiming a stuck order: the claim wrote nothing, holds the order for ORDERS_STUCK_AFTER_SECONDS, then another worker recovers it once', { timeout: 120_000 }, async () => {
    // Given an order stuck in submitting that the provider never created, and a provider that takes 30 s to answer
    const { tenantId, orderId, providerKey } = await stuckSubmittingOrder(false);
    const orderOperations = async () =>
      (await t.admin.query(`SELECT type FROM operations WHERE tenant_id = $1 AND type LIKE 'order.%' ORDER BY created_at, id`, [tenantId])).rows.map((row) => row.type as string);
    const operationsBefore = await orderOperations();
    const before = await footprint(tenantId, orderId);
    sim.faults.latencyMs = 30_000;
    // When a worker process claims it, is asking the provider, and is killed -9
    const output: string[] = [];
    let child: ChildProcess | undefined;
    try {
      child = spawn(process.execPath, [path.join(root, 'bin/storekeep.js'), 'worker'], {
        cwd: root,
        env: {
          ...process.env,
          DATABASE_URL: t.url,
          DATABASE_APP_URL: t.appUrl,
          LOG_LEVEL: 'warn',
          FULFILMENT_PROVIDER_URL: sim.url,
          FULFILMENT_WEBHOOK_SECRET: WEBHOOK_SECRET,
          // its call would be cut off after 2.9 s (a claim must outlast a call: ORDERS_STUCK_AFTER_SECONDS above it); it is killed before that
          FULFILMENT_TIMEOUT_MS: '2900',
          ORDERS_STUCK_AFTER_SECONDS: '3',
          WORKER_METRICS_PORT: '0',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      const running = child;
      await waitFor(
        'the worker process to ask the provider',
        async () => {
          if (running.exitCode !== null) throw new Error(`the worker exited ${running.exitCode}: ${output.join('')}`);
          return lookupsOf(providerKey) >= 1;
        },
        60_000,
        20,
      );
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      sim.faults.latencyMs = 0;
    }
    // Then the claim is on the order, and nothing else was written: no operation, no history, the same version
    const claimedAt = (await t.admin.query(`SELECT recovery_claimed_at FROM orders WHERE id = $1`, [orderId])).rows[0].recovery_claimed_at as Date | null;
    assert.ok(claimedAt !== null, 'claimed before the lookup');
    assert.deepEqual(await orderOperations(), operationsBefore, `operations of orders written by the killed worker (its log: ${output.join('')})`);
    const claimed = await footprint(tenantId, orderId);
    assert.deepEqual([claimed.status, claimed.version, claimed.history, claimed.recoveries], [before.status, before.version, before.history, before.recoveries]);
    // And the claim hides nothing: the order is still reported stuck
    const run = await runChecksForTenant(t.db, tenantId, allChecks, { ordersStuckSeconds: 1 }, testCheckLog);
    assert.deepEqual(
      run.findings.filter((finding) => finding.check === 'order_not_stuck').map((finding) => finding.subject),
      [orderId],
    );

    // When a worker runs again (the dead worker's job stays locked)
    await startWorkers(1, { ordersStuckAfterSeconds: 2 });
    // Then once the claim has run out, one recovery asks the provider (not found), submits it again, and it is submitted
    await waitForStatus(t.admin, orderId, 'submitted', 30_000);
    const resubmits = (await t.admin.query(`SELECT created_at FROM order_status_history WHERE order_id = $1 AND detail ->> 'event' = 'resubmit'`, [orderId])).rows;
    assert.equal(resubmits.length, 1, 'submitted again once');
    assert.ok(resubmits[0].created_at.getTime() - claimedAt.getTime() >= 2_000, 'not before the dead worker\'s claim ran out');
    await stopWorkers();
    const written = (await orderOperations()).slice(operationsBefore.length);
    assert.equal(written.filter((type) => type === 'order.recover').length, 1, `operations of orders: ${written.join(', ')}`);
    assert.ok(
      written.every((type) => ['order.recover', 'order.submit', 'order.provider_accepted'].includes(type)),
      `only what moved the order was recorded: ${written.join(', ')}`,
    );
    assert.equal(simOrderOf(orderId).create_calls, 1);
    const recovered = await runChecksForTenant(t.db, tenantId, allChecks, { ordersStuckSeconds: 1 }, testCheckLog);
    assert.deepEqual(recovered.findings.filter((finding) => finding.check.startsWith('order_')), []);
  });
});
