import { sql } from 'kysely';
import { inTenantTransaction, type Command } from '../core/command.js';
import { newId } from '../core/ids.js';
import { openReviewItems } from '../core/review.js';
import { maybeOne } from '../core/db.js';
import { assert } from '../core/errors.js';
import { enqueueJob } from '../jobs/enqueueJob.js';
import { jobCommand, jobCommandIfChanged } from '../jobs/jobCommand.js';
import { defineTask, type JobContext } from '../jobs/task.js';
import { applyOrderEvent, openOrderFailedItem } from './applyOrderEvent.js';
import { claimOrder } from './claimOrder.js';
import { submitJobKey } from './createOrder.js';
import { findOrder } from './findOrder.js';
import { providerStatusOf } from './orderStatus.js';
import { providerFrom } from './provider.js';
import { byOrder, orderStoreOf, recordProviderOrder } from './submitOrderJob.js';

/** Times an order is submitted again after the provider did not know it, before it is failed for review. */
export const MAX_RECOVERIES = 3;

/**
 * One `task` job per order, keyed by the order (two sweeps, or two workers,
 * add one job). keep_waiting: a job waiting for its retry keeps its attempt
 * count (replacing it restarted the count at 1 on every sweep, so a recovery
 * whose provider lookup kept failing never gave up).
 */
async function enqueueForEachOrder(ctx: JobContext, task: 'order.recover' | 'order.poll' | 'order.provider_cancel', orders: ReadonlyArray<{ tenant_id: string; id: string }>): Promise<void> {
  for (const order of orders) {
    await inTenantTransaction(ctx.db, order.tenant_id, (tx) =>
      enqueueJob(tx, task, { order_id: order.id }, { tenantId: order.tenant_id, jobKey: `${task}:${order.id}`, jobKeyMode: 'keep_waiting' }),
    );
  }
}


/**
 * The lookup's claim: provider_checked_at, when the provider was last asked
 * about the order (a try to ask it began), set while the order waits on the
 * provider — with `dueAfterSeconds`, only if the order has neither moved nor
 * been asked about for that long (WAITING_UNASKED). The sweep asks again
 * only after another ORDERS_POLL_AFTER_SECONDS.
 */
const lookupClaim = (tenantId: string, orderId: string, dueAfterSeconds: number | null) => sql<{ claimed: number }>`
  UPDATE orders SET provider_checked_at = now()
  WHERE tenant_id = ${tenantId} AND id = ${orderId} AND status IN ('submitted', 'processing')
    AND (${dueAfterSeconds === null} OR greatest(status_changed_at, provider_checked_at) < now() - make_interval(secs => ${dueAfterSeconds ?? 0}))
  RETURNING 1 AS claimed`;

/**
 * Orders stuck before the provider took them: pending/submitting for longer
 * than $1 seconds, and not claimed by a recovery for as long (see claimRecovery).
 */
const STUCK = `status IN ('pending', 'submitting') AND status_changed_at < now() - make_interval(secs => $1)
  AND (recovery_claimed_at IS NULL OR recovery_claimed_at < now() - make_interval(secs => $1))`;
/** Orders the provider holds that have neither moved nor been asked about for $1 seconds. */
const WAITING_UNASKED = `status IN ('submitted', 'processing') AND greatest(status_changed_at, provider_checked_at) < now() - make_interval(secs => $1)`;

/**
 * `orders.sweep`: finds orders in `pending`/`submitting` longer than
 * ORDERS_STUCK_AFTER_SECONDS across all tenants (as the owner; an index keeps
 * it to the in-flight few) and enqueues one `order.recover` per order (job
 * key per order: two sweeps, or two workers, add one job).
 */
export const sweepStuckOrders = defineTask<Record<string, unknown>>({
  name: 'orders.sweep',
  maxAttempts: 1,
  async handle(_data, ctx) {
    const { rows } = await ctx.ownerPool.query<{ tenant_id: string; id: string }>(
      `SELECT tenant_id, id FROM orders WHERE ${STUCK} ORDER BY status_changed_at LIMIT 1000`,
      [ctx.config.ordersStuckAfterSeconds],
    );
    await enqueueForEachOrder(ctx, 'order.recover', rows);
    if (rows.length > 0) ctx.logger.info({ orders: rows.length }, 'stuck orders queued for recovery');

    // Orders the provider holds that have not moved (nor been asked about)
    // for ORDERS_POLL_AFTER_SECONDS: their webhooks may have been lost.
    const { rows: waiting } = await ctx.ownerPool.query<{ tenant_id: string; id: string }>(
      `SELECT tenant_id, id FROM orders WHERE ${WAITING_UNASKED} ORDER BY greatest(status_changed_at, provider_checked_at) LIMIT 1000`,
      [ctx.config.ordersPollAfterSeconds],
    );
    await enqueueForEachOrder(ctx, 'order.poll', waiting);
    if (waiting.length > 0) ctx.logger.info({ orders: waiting.length }, 'orders waiting on the provider queued for a lookup');

    // Cancellations the provider has not answered for ORDERS_STUCK_AFTER_SECONDS
    // (its job lost with a worker killed -9, or its last round given up in an
    // outage): another round. The job key is the one the cancel used, so a
    // job still waiting for its retry is left as it is.
    const { rows: cancelling } = await ctx.ownerPool.query<{ tenant_id: string; id: string }>(
      `SELECT tenant_id, id FROM orders
       WHERE provider_cancellation = 'requested' AND provider_cancellation_at < now() - make_interval(secs => $1)
       ORDER BY provider_cancellation_at LIMIT 1000`,
      [ctx.config.ordersStuckAfterSeconds],
    );
    await enqueueForEachOrder(ctx, 'order.provider_cancel', cancelling);
    if (cancelling.length > 0) ctx.logger.info({ orders: cancelling.length }, 'cancellations not yet answered by the provider queued again');
  },
});

/**
 * Claims the order for this try of a lookup (claimOrder: provider_checked_at,
 * no operation). A chain's first try claims it only while it is still due
 * (WAITING_UNASKED), in one conditional UPDATE: a second job of the order —
 * queued by a sweep while this one ran (a running job holds its key no
 * longer), and run beside it — finds it claimed and does nothing, however the
 * two interleave (a check before the lookup and a mark after it let a slow
 * lookup be joined by one more chain per sweep). Retries claim it again, so
 * the sweep queues nothing while a chain is at work. False: not due, or no
 * longer waiting on the provider.
 */
function claimLookup(ctx: JobContext, tenantId: string, orderId: string): Promise<boolean> {
  const firstTry = ctx.attempt <= 1;
  return claimOrder(ctx, tenantId, orderId, lookupClaim(tenantId, orderId, firstTry ? ctx.config.ordersPollAfterSeconds : null));
}

/**
 * `order.poll`: an order in `submitted`/`processing` that has not moved for
 * ORDERS_POLL_AFTER_SECONDS (a provider stops retrying a webhook it could not
 * deliver; without this the order would wait forever). Asks the provider by
 * the order's idempotency key and applies what it says, as a webhook would be
 * (forward only), in one command — written only if it changed the order: a
 * stale answer, or one the order already says ("still processing"), writes
 * nothing. The claim before each try (provider_checked_at) is when it asked,
 * so the order is asked about again only after another
 * ORDERS_POLL_AFTER_SECONDS. A provider that does not know the order is
 * asked again later (the order is never failed for it: the provider accepted
 * it), and one open order_unknown_to_provider item asks someone to look
 * (noteUnknownToProvider).
 */
export const pollOrder = defineTask<{ order_id: string }>({
  name: 'order.poll',
  maxAttempts: 3,
  reviewSubjectOf: byOrder,
  reviewStoreOf: orderStoreOf,
  // The provider could not be asked (down, refusing our key): the claim is
  // renewed, so the order is asked about again after another
  // ORDERS_POLL_AFTER_SECONDS from the give-up, not at the next sweep — an
  // outage does not turn into a lookup a minute per order.
  async onGiveUp(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    await claimOrder(ctx, tenantId, data.order_id, lookupClaim(tenantId, data.order_id, null));
  },
  async handle(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    if (!(await claimLookup(ctx, tenantId, data.order_id))) return;
    const order = await inTenantTransaction(ctx.db, tenantId, (tx) => findOrder(tx, tenantId, data.order_id));
    if (!order || (order.status !== 'submitted' && order.status !== 'processing')) return;
    const found = await providerFrom(ctx.config).findByIdempotencyKey(order.provider_key, { reference: order.id, merchant: tenantId });
    const status = found ? providerStatusOf(found.status) : undefined;
    let now = order.status;
    if (found && status) {
      const outcome = await jobCommandIfChanged(ctx, tenantId, 'order.poll', async (cmd) => {
        const result = await applyOrderEvent(cmd, order.id, { type: 'provider_status', status }, 'recovery', order.provider_order_id === null ? { providerOrderId: found.id } : {});
        return { status: 200, body: { status: result.order.status, provider_status: found.status } };
      });
      if (outcome.status === 200) now = (outcome.body as { status: typeof now }).status;
    }
    if (!found) await jobCommandIfChanged(ctx, tenantId, 'order.poll', (cmd) => noteUnknownToProvider(cmd, order.id));
    const logged = { order_id: order.id, provider_status: found?.status ?? null, status: now };
    if (!found) ctx.logger.warn(logged, 'the provider does not know an order it accepted (an order_unknown_to_provider review item is open); asking again later');
    else ctx.logger.info(logged, 'order looked up at the provider');
  },
});

/**
 * The provider answered a lookup of an order it accepted (submitted or
 * processing here) with no order under our key: it lost it, and nothing will
 * ship. The order is not failed (the provider accepted it, and may find it
 * again), but someone must look — chase the provider, or refund the customer
 * and place the order again: one open `order_unknown_to_provider` item per
 * order, written only when it opens (a lookup finding it open writes nothing).
 * Before, the lookup only logged a warning, every ORDERS_POLL_AFTER_SECONDS,
 * for ever, and the order waited in `submitted` with nobody told.
 */
async function noteUnknownToProvider(cmd: Command, orderId: string) {
  const order = await findOrder(cmd.tx, cmd.tenantId, orderId);
  if (!order || (order.status !== 'submitted' && order.status !== 'processing')) return { status: 200, body: {} };
  const id = newId();
  const [opened] = await openReviewItems(cmd.tx, cmd.tenantId, [
    {
      id,
      opId: cmd.opId,
      kind: 'order_unknown_to_provider',
      severity: 'warning',
      subjectType: 'order',
      subjectId: order.id,
      storeId: order.store_id,
      dedupeKey: `order-unknown-to-provider:${order.id}`,
      detail: { status: order.status, source: 'recovery', provider_order_id: order.provider_order_id, provider_key: order.provider_key, payment_reference: order.payment_reference },
    },
  ]);
  if (opened === id) {
    cmd.storeId = order.store_id;
    cmd.touch('review_items', id, 'created');
  }
  return { status: 200, body: { review_item_id: opened } };
}

/**
 * Claims a stuck order for this try of a recovery (claimOrder:
 * recovery_claimed_at, no operation; not the order's version, nor its
 * status_changed_at: nothing a client sees changes, and the order_not_stuck
 * check still reports a recovery that keeps failing). A chain's first try
 * claims it only while it is still stuck and unclaimed (STUCK): a second
 * recovery of the order — queued by a sweep while this one ran (a running
 * job holds its key no longer), and run beside it — finds it claimed and
 * does nothing, however the two interleave (a check before the provider
 * lookup let both look the order up, and both give it up). Retries of the
 * chain claim it again while it is pending/submitting, so the sweep queues
 * nothing while a chain is at work. False: not due, or no longer stuck.
 */
function claimRecovery(ctx: JobContext, tenantId: string, orderId: string): Promise<boolean> {
  const firstTry = ctx.attempt <= 1;
  const seconds = ctx.config.ordersStuckAfterSeconds;
  return claimOrder(
    ctx,
    tenantId,
    orderId,
    sql<{ claimed: number }>`
      UPDATE orders SET recovery_claimed_at = now()
      WHERE tenant_id = ${tenantId} AND id = ${orderId} AND status IN ('pending', 'submitting')
        AND (${!firstTry} OR (status_changed_at < now() - make_interval(secs => ${seconds})
                              AND (recovery_claimed_at IS NULL OR recovery_claimed_at < now() - make_interval(secs => ${seconds}))))
      RETURNING 1 AS claimed`,
  );
}

/**
 * Whether the order's `order.submit` chain is still at work: its job (the
 * key is the order's: retries and resubmits keep it) is waiting with runs
 * left (one the queue gave up on after crashes stays, dead), or running —
 * taken less than ORDERS_STUCK_AFTER_SECONDS ago (above FULFILMENT_TIMEOUT_MS):
 * one taken longer ago is a worker that died, and its call is long over.
 */
async function submitStillTrying(ctx: JobContext, orderId: string): Promise<boolean> {
  const { rows } = await ctx.ownerPool.query<{ trying: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM graphile_worker._private_jobs
       WHERE key = $1 AND (CASE WHEN locked_at IS NULL THEN attempts < max_attempts ELSE locked_at > now() - make_interval(secs => $2) END)) AS trying`,
    [submitJobKey(orderId), ctx.config.ordersStuckAfterSeconds],
  );
  return rows[0]!.trying;
}

/**
 * `order.recover`: one stuck order.
 * - pending (its submit job was lost, e.g. locked by a worker killed with -9):
 *   enqueue the submit job again;
 * - submitting: ask the provider for the order by its idempotency key. Found:
 *   move on to what the provider says. Not found: the provider never created
 *   it, so submit again (same key: never a duplicate).
 * Either way at most MAX_RECOVERIES times; still stuck after that, the order
 * is failed with an order_failed review item (a pending order whose submit
 * keeps failing before it reaches the provider was otherwise recovered
 * forever, and each recovery restarted the clock order_not_stuck reads).
 * The order is claimed first (claimRecovery), so one chain of tries
 * recovers it however many jobs the sweeps queued. Each step that changes
 * the order is a command of its own and restarts its stuck clock
 * (conditionally, so a concurrent move wins); a try that changes nothing (the
 * provider could not be asked) writes nothing but its claim.
 */
export const recoverOrder = defineTask<{ order_id: string }>({
  name: 'order.recover',
  // Every sweep restarts a recovery that gave up (the order is still stuck):
  // while the provider stays away, they share the order's one open item.
  reviewSubjectOf: byOrder,
  reviewStoreOf: orderStoreOf,
  async handle(data, ctx) {
    const tenantId = ctx.tenantId;
    assert(tenantId, 'order jobs carry their tenant');
    if (!(await claimRecovery(ctx, tenantId, data.order_id))) return;
    const order = await inTenantTransaction(ctx.db, tenantId, (tx) => findOrder(tx, tenantId, data.order_id));
    if (!order || (order.status !== 'pending' && order.status !== 'submitting')) return;

    if (order.status === 'submitting') {
      const found = await providerFrom(ctx.config).findByIdempotencyKey(order.provider_key, { reference: order.id, merchant: tenantId });
      if (found) {
        await recordProviderOrder(ctx, tenantId, order.id, found, 'recovery');
        ctx.logger.info({ order_id: order.id, provider_order_id: found.id }, 'stuck order found at the provider');
        return;
      }
    }
    // Submitted again MAX_RECOVERIES times and still stuck — the provider
    // does not know it, or (pending) its submit keeps failing before it
    // reaches the provider: failed for review, never recovered forever.
    if (order.recoveries >= MAX_RECOVERIES) {
      // Not while the order's submit chain is still at work (running, or
      // waiting for its retry): its create may reach the provider after the
      // lookup above found nothing, and a give-up then failed — for someone
      // to refund — an order the provider went on to ship. That chain ends
      // (its attempts are bounded); the sweep looks again after it.
      if (await submitStillTrying(ctx, order.id)) {
        ctx.logger.info({ order_id: order.id }, 'stuck order not given up: its submit is still trying');
        return;
      }
      const gaveUp = await jobCommand(ctx, tenantId, 'order.give_up', async (cmd) => {
        const reason =
          order.status === 'submitting'
            ? `the provider does not know the order after ${order.recoveries} recoveries and ${order.submit_attempts} calls`
            : `the order was still pending after ${order.recoveries} recoveries: its submission keeps failing before it reaches the provider`;
        const result = await applyOrderEvent(cmd, order.id, { type: 'give_up' }, 'recovery', { lastError: reason });
        // The order moved meanwhile (a webhook, a manager's cancel): nothing
        // to give up, and nothing is written (a refused command rolls back).
        if (!result.ok || !result.moved) return { status: 409, body: { reason: `the order is ${result.order.status}` } };
        // Like every order_failed item: the status and who failed it. last_error stays the order's
        // error before the give-up (the provider's last answer, if any): `reason` says why it gave up.
        await openOrderFailedItem(cmd, order, reason, { status: result.order.status, source: 'recovery' });
        return { status: 200, body: { status: result.order.status } };
      });
      if (gaveUp.status === 200) ctx.logger.warn({ order_id: order.id }, 'stuck order failed after its last recovery');
      else ctx.logger.info({ order_id: order.id, reason: gaveUp.body }, 'stuck order moved on before its recovery gave it up');
      return;
    }

    await jobCommand(ctx, tenantId, 'order.recover', async (cmd) => {
      const touched = await maybeOne(
        cmd.tx,
        sql<{ store_id: string }>`
          UPDATE orders SET status_changed_at = now(), version = version + 1, updated_at = now(),
                 recoveries = recoveries + 1
          WHERE tenant_id = ${tenantId} AND id = ${order.id} AND status = ${order.status} AND version = ${order.version}
          RETURNING store_id`,
      );
      if (!touched) return { status: 409, body: { reason: 'the order moved meanwhile' } };
      await sql`
        INSERT INTO order_status_history (tenant_id, order_id, from_status, to_status, source, detail, op_id)
        VALUES (${tenantId}, ${order.id}, ${order.status}, ${order.status}, 'recovery', ${JSON.stringify({ event: 'resubmit' })}::jsonb, ${cmd.opId})`.execute(cmd.tx);
      // keep_waiting: a submit still waiting for its backoff is left as it is
      // (its attempt count and time); a lost or running one gets a new job.
      await enqueueJob(cmd.tx, 'order.submit', { order_id: order.id }, { tenantId, jobKey: submitJobKey(order.id), jobKeyMode: 'keep_waiting' });
      cmd.storeId = touched.store_id;
      cmd.touch('orders', order.id, 'updated');
      cmd.audit({ subjectType: 'order', subjectId: order.id, payload: { recovery: order.recoveries + 1 } });
      return { status: 200, body: {} };
    });
    ctx.logger.info({ order_id: order.id, status: order.status }, 'stuck order submitted again');
  },
});
