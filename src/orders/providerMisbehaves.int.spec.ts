/** A provider that answers badly: text PostgreSQL cannot store, answers that are not an order, bodies that never finish. */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep, waitFor } from '../../test/support/wait.js';
import { startTestWorker } from '../../test/support/worker.js';
import type { RunningWorker } from '../jobs/worker.js';
import { historyOf, newOrderShop, orderBody, postWebhook, providerEvent, waitForStatus, WEBHOOK_SECRET, type OrderShop } from './testkit.js';

interface StandInOrder {
  id: string;
  status: string;
  reference: string;
  merchant: string;
  idempotency_key: string;
}

/** Answers one call instead of the well-behaved provider; returns true when it did. */
type Override = (request: http.IncomingMessage, response: http.ServerResponse, url: URL, body: string) => boolean;

describe('a provider that misbehaves', () => {
  let t: TestApp;
  let worker: RunningWorker;
  let provider: http.Server;
  const orders = new Map<string, StandInOrder>();
  const calls: Array<{ method: string; path: string }> = [];
  let override: Override | null = null;
  const overrides: Partial<Config> = {
    fulfilmentWebhookSecret: WEBHOOK_SECRET,
    fulfilmentTimeoutMs: 500,
    ordersStuckAfterSeconds: 1,
    jobRetryBaseMs: 20,
    jobRetryMaxMs: 100,
    jobMaxAttempts: 4,
    workerMetricsPort: 0,
  };

  const json = (response: http.ServerResponse, status: number, body: unknown) =>
    response.writeHead(status, { 'content-type': 'application/json' }).end(typeof body === 'string' ? body : JSON.stringify(body));

  before(async () => {
    provider = http.createServer((request, response) => {
      let text = '';
      request.on('data', (chunk) => (text += chunk));
      request.on('end', () => {
        const url = new URL(request.url ?? '/', 'http://stand-in');
        calls.push({ method: request.method ?? '', path: `${url.pathname}${url.search}` });
        if (override?.(request, response, url, text)) return;
        const key = String(request.headers['idempotency-key'] ?? '');
        if (request.method === 'POST' && url.pathname === '/orders') {
          const body = JSON.parse(text) as { reference: string; merchant: string };
          let order = [...orders.values()].find((o) => o.idempotency_key === key);
          if (!order) {
            order = { id: `po_${orders.size + 1}_${body.reference.slice(0, 8)}`, status: 'accepted', reference: body.reference, merchant: body.merchant, idempotency_key: key };
            orders.set(order.id, order);
          }
          return json(response, 201, order);
        }
        if (request.method === 'GET' && url.pathname === '/orders') {
          const order = [...orders.values()].find((o) => o.idempotency_key === url.searchParams.get('idempotency_key'));
          return order ? json(response, 200, order) : json(response, 404, { error: 'not_found' });
        }
        const cancel = /^\/orders\/([^/]+)\/cancel$/.exec(url.pathname);
        if (request.method === 'POST' && cancel) {
          const order = orders.get(decodeURIComponent(cancel[1]!));
          if (!order) return json(response, 404, { error: 'not_found' });
          if (order.status === 'completed') return json(response, 422, { error: 'order_not_cancellable', status: order.status });
          order.status = 'cancelled';
          return json(response, 200, order);
        }
        return json(response, 404, { error: 'not_found' });
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    overrides.fulfilmentUrl = `http://127.0.0.1:${(provider.address() as AddressInfo).port}`;
    t = await startTestApp(overrides);
    worker = await startTestWorker(t, overrides);
  });
  beforeEach(() => {
    override = null;
  });
  after(async () => {
    override = null;
    await worker?.stop();
    provider.closeAllConnections();
    await new Promise<void>((resolve) => provider.close(() => resolve()));
    await t.close();
  });

  const orderRow = async (orderId: string) =>
    (await t.admin.query(`SELECT status, provider_order_id, provider_cancellation, last_error, version FROM orders WHERE id = $1`, [orderId])).rows[0];
  /** Until the provider's answer to our cancel of the order is recorded (provider_cancellation no longer `requested`). */
  const untilCancellationAnswered = (orderId: string) =>
    waitFor(`the cancellation of ${orderId} to be answered`, async () => (await orderRow(orderId)).provider_cancellation !== 'requested', 10_000, 50);
  const waitForCancellation = (orderId: string, outcome: string, timeoutMs = 8_000) =>
    waitFor(
      `the provider's cancellation of ${orderId} to be ${outcome}`,
      async () => (await orderRow(orderId)).provider_cancellation === outcome,
      timeoutMs,
      50,
    );
  const reviewItems = async (orderId: string, kind: string) =>
    (await t.admin.query(`SELECT severity, status, detail FROM review_items WHERE subject_id = $1 AND kind = $2`, [orderId, kind])).rows;
  const standInOf = (orderId: string) => [...orders.values()].find((order) => order.reference === orderId)!;

  async function submittedOrder(shop: OrderShop): Promise<string> {
    const created = await shop.owner.post('/v1/orders', orderBody(shop));
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await waitForStatus(t.admin, created.body.id, 'submitted');
    return created.body.id as string;
  }

  /** A cancel call is answered with `body` (raw JSON text) and `status`, instead of by the stand-in. */
  const answerCancels = (status: number, body: string): Override => (request, response, url) => {
    if (request.method !== 'POST' || !url.pathname.endsWith('/cancel')) return false;
    json(response, status, body);
    return true;
  };
  const deep = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;

  for (const [what, answer, check] of [
    [
      'a NUL character',
      '{"error":"order_not_cancellable","status":"completed","detail":"shipped\\u0000today"}',
      (detail: any) => assert.equal(detail.answer.detail, 'shipped\ufffdtoday'),
    ],
    [
      'half a character (an unpaired surrogate) in a member name',
      '{"error":"order_not_cancellable","status":"completed","\\ud83d":"truck"}',
      (detail: any) => assert.equal(detail.answer['\ufffd'], 'truck'),
    ],
    [
      'a value nested 20 000 deep',
      `{"error":"order_not_cancellable","status":"completed","trace":${deep(20_000)}}`,
      (detail: any) => assert.equal(detail.answer.error, 'order_not_cancellable'),
    ],
  ] as const) {
    it(`a refusal to cancel whose answer holds ${what} is recorded, cleaned, with its one critical item`, async () => {
      const shop = await newOrderShop(t);
      const orderId = await submittedOrder(shop);
      override = answerCancels(422, answer);
      const cancelled = await shop.owner.post(`/v1/orders/${orderId}/cancel`, { reason: 'customer changed mind' });
      assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
      await waitForCancellation(orderId, 'refused');
      const row = await orderRow(orderId);
      assert.equal(row.status, 'cancelled');
      assert.match(row.last_error, /refused the cancellation \(422\).*completed/);
      const items = await reviewItems(orderId, 'order_cancel_refused');
      assert.equal(items.length, 1);
      assert.equal(items[0].severity, 'critical');
      assert.equal(items[0].detail.provider_status, 'completed');
      assert.equal(items[0].detail.http_status, 422);
      check(items[0].detail);
      const failedJobs = await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE kind = 'job_failed' AND subject_id = $1`, [orderId]);
      assert.equal(failedJobs.rows[0].n, 0, 'the answer was recorded at the first try, not given up on');
    });
  }

  /** The next `times` lookups by key are answered by `answer` instead of by the stand-in. */
  const spoilLookups = (times: number, answer: (response: http.ServerResponse) => void): Override => {
    let left = times;
    return (request, response, url) => {
      if (request.method !== 'GET' || url.pathname !== '/orders' || left <= 0) return false;
      left--;
      answer(response);
      return true;
    };
  };

  for (const [what, answer] of [
    ['200 with a page that is not JSON (a proxy, a redirect to a login page)', (response: http.ServerResponse) =>
      response.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Please sign in</body></html>')],
    ['200 with JSON that is not an order (id a number, status a number)', (response: http.ServerResponse) => json(response, 200, { id: 42, status: 3 })],
    ['200 whose body drips in slower than the timeout', (response: http.ServerResponse) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"id":');
      const timer = setInterval(() => (response.destroyed ? clearInterval(timer) : response.write(' ')), 100);
      setTimeout(() => {
        clearInterval(timer);
        response.destroy();
      }, 3_000);
    }],
  ] as const) {
    it(`a lookup answered ${what} is not "the provider holds no such order": the cancel is asked again and lands`, async () => {
      const shop = await newOrderShop(t);
      const orderId = await submittedOrder(shop);
      override = spoilLookups(1, answer);
      assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 200);
      await untilCancellationAnswered(orderId);
      assert.equal((await orderRow(orderId)).provider_cancellation, 'confirmed');
      assert.equal(standInOf(orderId).status, 'cancelled', 'the provider cancelled the order');
    });
  }

  it('a create answered 201 with something that is not an order is tried again (same key), never taken as submitted', async () => {
    const shop = await newOrderShop(t);
    let spoiled = 0;
    override = (request, response, url) => {
      if (request.method !== 'POST' || url.pathname !== '/orders' || spoiled > 0) return false;
      spoiled++;
      response.writeHead(201, { 'content-type': 'text/html' }).end('<html>Created</html>');
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitFor(`order ${orderId} to have a provider order`, async () => (await orderRow(orderId)).provider_order_id !== null, 10_000, 50);
    const row = await orderRow(orderId);
    assert.equal(row.status, 'submitted');
    assert.equal(row.provider_order_id, standInOf(orderId).id);
    assert.equal(calls.filter((call) => call.method === 'POST' && call.path === '/orders').length >= 2, true);
  });

  it('a create refused with an answer nested 20 000 deep fails the order at once (asked once)', async () => {
    const shop = await newOrderShop(t);
    let creates = 0;
    override = (request, response, url) => {
      if (request.method !== 'POST' || url.pathname !== '/orders') return false;
      creates++;
      json(response, 422, `{"error":"address_not_deliverable","trace":${deep(20_000)}}`);
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitForStatus(t.admin, orderId, 'failed', 8_000);
    await sleep(300);
    assert.equal(creates, 1);
    assert.match((await orderRow(orderId)).last_error, /^provider refused the order \(422\): \{"error":"address_not_deliverable"/);
  });

  it('a cancel answered 200 whose body says the order shipped is a refusal, not a confirmation', async () => {
    const shop = await newOrderShop(t);
    const orderId = await submittedOrder(shop);
    override = (request, response, url) => {
      if (request.method !== 'POST' || !url.pathname.endsWith('/cancel')) return false;
      const order = standInOf(orderId);
      order.status = 'completed';
      json(response, 200, { ...order, cancelled: false });
      return true;
    };
    assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 200);
    await untilCancellationAnswered(orderId);
    assert.equal((await orderRow(orderId)).provider_cancellation, 'refused');
    const items = await reviewItems(orderId, 'order_cancel_refused');
    assert.equal(items.length, 1);
    assert.equal(items[0].detail.provider_status, 'completed');
  });

  for (const [what, answer] of [
    ['a page that is not JSON', (response: http.ServerResponse) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>OK</html>')],
    ['an order still processing', (response: http.ServerResponse, order: StandInOrder) => json(response, 200, { ...order, status: 'processing' })],
  ] as const) {
    it(`a cancel answered 200 with ${what} is not a confirmation: asked again until the provider says cancelled`, async () => {
      const shop = await newOrderShop(t);
      const orderId = await submittedOrder(shop);
      let spoiled = 0;
      override = (request, response, url) => {
        if (request.method !== 'POST' || !url.pathname.endsWith('/cancel') || spoiled > 0) return false;
        spoiled++;
        answer(response, standInOf(orderId));
        return true;
      };
      assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 200);
      await untilCancellationAnswered(orderId);
      assert.equal((await orderRow(orderId)).provider_cancellation, 'confirmed');
      assert.equal(spoiled, 1);
      assert.equal(standInOf(orderId).status, 'cancelled', 'confirmed only once the provider cancelled it');
    });
  }

  it("a provider that answers one order's key with another order of ours is not believed: the other order is never cancelled in its place", async () => {
    const shop = await newOrderShop(t);
    const first = await submittedOrder(shop);
    const second = await submittedOrder(shop);
    const firstAtProvider = standInOf(first);
    // The provider mixes its orders up: our second order's key finds the first one's order
    override = (request, response, url) => {
      if (request.method !== 'GET' || url.pathname !== '/orders' || url.searchParams.get('idempotency_key') !== standInOf(second).idempotency_key) return false;
      json(response, 200, firstAtProvider);
      return true;
    };
    assert.equal((await shop.owner.post(`/v1/orders/${second}/cancel`, {})).status, 200);
    await sleep(1_500);
    assert.equal(firstAtProvider.status, 'accepted', 'the first order, which nobody cancelled, still ships');
    assert.equal((await orderRow(second)).provider_cancellation, 'requested', 'not confirmed on the strength of another order');
    assert.equal(calls.some((call) => call.path === `/orders/${firstAtProvider.id}/cancel`), false);
  });

  it("a create answered with the provider's order of another of our orders does not take its id", async () => {
    const shop = await newOrderShop(t);
    const first = await submittedOrder(shop);
    const firstAtProvider = standInOf(first);
    override = (request, response, url) => {
      if (request.method !== 'POST' || url.pathname !== '/orders') return false;
      json(response, 200, firstAtProvider);
      return true;
    };
    const second: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await sleep(1_500);
    const row = await orderRow(second);
    assert.notEqual(row.provider_order_id, firstAtProvider.id);
    assert.equal(row.status, 'submitting', 'still waiting for an answer about this order');
  });

  it('a create answered with a redirect is not followed (the answer where it points is not taken): tried again, same key', async () => {
    const shop = await newOrderShop(t);
    let redirected = 0;
    override = (request, response, url, body) => {
      if (url.pathname === '/elsewhere') {
        // an order-shaped answer for this very order, that the provider never gave
        json(response, 201, { id: 'po_elsewhere', status: 'accepted', reference: url.searchParams.get('ref'), merchant: shop.tenantId, idempotency_key: 'x' });
        return true;
      }
      if (request.method !== 'POST' || url.pathname !== '/orders' || redirected > 0) return false;
      redirected++;
      const { reference } = JSON.parse(body) as { reference: string };
      response.writeHead(307, { location: `/elsewhere?ref=${reference}` }).end();
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitFor(`order ${orderId} to have a provider order`, async () => (await orderRow(orderId)).provider_order_id !== null, 10_000, 50);
    const row = await orderRow(orderId);
    assert.equal(redirected, 1);
    assert.notEqual(row.provider_order_id, 'po_elsewhere', 'the answer the redirect pointed at was taken');
    assert.equal(row.provider_order_id, standInOf(orderId)?.id, 'the order the provider created');
    assert.equal(calls.filter((call) => call.path.startsWith('/elsewhere')).length, 0, 'the redirect was not followed');
  });

  it('a create answered with a body larger than the provider answers are read (1 MiB) is not taken: tried again, same key', async () => {
    const shop = await newOrderShop(t);
    let huge = 0;
    override = (request, response, url, body) => {
      if (request.method !== 'POST' || url.pathname !== '/orders' || huge > 0) return false;
      huge++;
      const { reference, merchant } = JSON.parse(body) as { reference: string; merchant: string };
      json(response, 201, { id: 'po_huge', status: 'accepted', reference, merchant, idempotency_key: 'x', padding: 'x'.repeat(3 * 1024 * 1024) });
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitFor(`order ${orderId} to have a provider order`, async () => (await orderRow(orderId)).provider_order_id !== null, 10_000, 50);
    assert.equal(huge, 1);
    const taken = (await orderRow(orderId)).provider_order_id;
    assert.notEqual(taken, 'po_huge', 'the oversized answer was taken');
    assert.equal(taken, standInOf(orderId)?.id, 'the order the provider created');
  });

  it('a create answered 202 Accepted with the order is the order created, not a refusal: submitted, no order_failed item', async () => {
    const shop = await newOrderShop(t);
    let accepted = 0;
    override = (request, response, url, body) => {
      if (request.method !== 'POST' || url.pathname !== '/orders') return false;
      const { reference, merchant } = JSON.parse(body) as { reference: string; merchant: string };
      // only this test's order (a retry of an earlier test's order is the stand-in's as usual)
      if (merchant !== shop.tenantId) return false;
      accepted++;
      const key = String(request.headers['idempotency-key'] ?? '');
      let order = [...orders.values()].find((o) => o.idempotency_key === key);
      if (!order) {
        order = { id: `po_202_${reference.slice(0, 8)}`, status: 'accepted', reference, merchant, idempotency_key: key };
        orders.set(order.id, order);
      }
      json(response, 202, order);
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitFor(`order ${orderId} to leave submitting`, async () => !['pending', 'submitting'].includes((await orderRow(orderId)).status), 10_000, 50);
    const row = await orderRow(orderId);
    assert.equal(row.status, 'submitted', `the provider holds the order; ours is ${row.status} (${row.last_error})`);
    assert.equal(row.provider_order_id, standInOf(orderId).id);
    assert.equal(accepted, 1);
    assert.equal((await reviewItems(orderId, 'order_failed')).length, 0);
  });

  it('a create answered 204 No Content (no order in it) is tried again with the same key, never a refusal', async () => {
    const shop = await newOrderShop(t);
    let empty = 0;
    override = (request, response, url, body) => {
      if (request.method !== 'POST' || url.pathname !== '/orders' || empty > 0) return false;
      // only this test's order (a retry of an earlier test's order is the stand-in's as usual)
      if ((JSON.parse(body) as { merchant: string }).merchant !== shop.tenantId) return false;
      empty++;
      response.writeHead(204).end();
      return true;
    };
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitFor(`order ${orderId} to leave submitting`, async () => !['pending', 'submitting'].includes((await orderRow(orderId)).status), 10_000, 50);
    const row = await orderRow(orderId);
    assert.equal(row.status, 'submitted', `ours is ${row.status} (${row.last_error})`);
    assert.equal(row.provider_order_id, standInOf(orderId).id);
    assert.equal(empty, 1);
    assert.equal((await reviewItems(orderId, 'order_failed')).length, 0);
  });

  it('a cancel answered 202 Accepted saying cancelled is a confirmation, not a refusal (no order_cancel_refused item)', async () => {
    const shop = await newOrderShop(t);
    const orderId = await submittedOrder(shop);
    override = (request, response, url) => {
      if (request.method !== 'POST' || !url.pathname.endsWith('/cancel')) return false;
      const order = standInOf(orderId);
      order.status = 'cancelled';
      json(response, 202, order);
      return true;
    };
    assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 200);
    await untilCancellationAnswered(orderId);
    assert.equal((await orderRow(orderId)).provider_cancellation, 'confirmed');
    assert.equal((await reviewItems(orderId, 'order_cancel_refused')).length, 0);
  });

  it('a cancel answered 204 No Content is no answer yet: asked again until the provider says cancelled, never a refusal', async () => {
    const shop = await newOrderShop(t);
    const orderId = await submittedOrder(shop);
    let empty = 0;
    override = (request, response, url) => {
      if (request.method !== 'POST' || !url.pathname.endsWith('/cancel') || empty > 0) return false;
      empty++;
      response.writeHead(204).end();
      return true;
    };
    assert.equal((await shop.owner.post(`/v1/orders/${orderId}/cancel`, {})).status, 200);
    await untilCancellationAnswered(orderId);
    assert.equal((await orderRow(orderId)).provider_cancellation, 'confirmed');
    assert.equal(empty, 1);
    assert.equal(standInOf(orderId).status, 'cancelled');
    assert.equal((await reviewItems(orderId, 'order_cancel_refused')).length, 0);
  });

  it('a manual completion racing the provider\'s completed and failed webhooks: one winner, history matching the status, one version bump', async () => {
    const shop = await newOrderShop(t);
    for (let round = 0; round < 5; round++) {
      const orderId = await submittedOrder(shop);
      const providerId = standInOf(orderId).id;
      const event = (status: string) => ({ ...providerEvent(shop.tenantId, orderId, status), data: { ...providerEvent(shop.tenantId, orderId, status).data, order_id: providerId } });
      assert.equal((await postWebhook(t.baseUrl, event('processing'))).status, 200);
      const before = await orderRow(orderId);
      assert.equal(before.status, 'processing');
      const [manual, completed, failed] = await Promise.all([
        shop.owner.post(`/v1/orders/${orderId}/complete`, {}),
        postWebhook(t.baseUrl, event('completed')),
        postWebhook(t.baseUrl, event('failed')),
      ]);
      assert.ok([200, 409].includes(manual.status), JSON.stringify(manual.body));
      assert.deepEqual([completed.status, failed.status], [200, 200]);
      const after = await orderRow(orderId);
      const history = await historyOf(t.admin, orderId);
      const moves = history.filter((entry) => entry.from_status === 'processing');
      assert.equal(moves.length, 1, JSON.stringify(history));
      assert.equal(moves[0]!.to_status, after.status);
      assert.equal(history.at(-1)!.to_status, after.status);
      assert.equal(after.version, before.version + 1, `one move, one version (round ${round}: ${after.status})`);
      assert.equal([manual.status === 200, completed.body.applied, failed.body.applied].filter(Boolean).length, 1);
    }
  });

  for (const ended of ['failed', 'cancelled'] as const) {
    it(`the provider's ${ended} webhook arriving before its answer "accepted" to the create: the order is ${ended}, and the late answer opens no order_provider_mismatch`, async () => {
      const shop = await newOrderShop(t);
      let webhook: { status: number; body: any } | undefined;
      let answered = false;
      override = (request, response, url, body) => {
        if (request.method !== 'POST' || url.pathname !== '/orders') return false;
        const key = String(request.headers['idempotency-key']);
        const { reference, merchant } = JSON.parse(body) as { reference: string; merchant: string };
        if (merchant !== shop.tenantId || webhook !== undefined) return false;
        const order: StandInOrder = { id: `po_ended_${reference.slice(0, 8)}`, status: ended, reference, merchant: shop.tenantId, idempotency_key: key };
        orders.set(order.id, order);
        const event = providerEvent(shop.tenantId, reference, ended);
        void (async () => {
          webhook = await postWebhook(t.baseUrl, { ...event, data: { ...event.data, order_id: order.id } });
          // The answer the provider composed when it took the order, before it ended it.
          json(response, 201, { ...order, status: 'accepted' });
          answered = true;
        })();
        return true;
      };
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      await waitFor(`the answer to the create of ${orderId}`, async () => answered, 8_000, 20);
      assert.equal(webhook!.status, 200, JSON.stringify(webhook!.body));
      assert.equal(webhook!.body.applied, true);
      await waitFor(
        `the submit job of ${orderId} to finish`,
        async () => (await t.admin.query(`SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE key = $1`, [`order.submit:${orderId}`])).rows[0].n === 0,
        8_000,
        50,
      );
      await sleep(200);
      assert.equal((await orderRow(orderId)).status, ended);
      assert.equal((await reviewItems(orderId, 'order_failed')).length, 1);
      assert.deepEqual(await reviewItems(orderId, 'order_provider_mismatch'), [], 'a false alarm: the provider ended the order itself, after composing that answer');
    });
  }

  it("the provider's webhook arriving before its answer to the create: the order follows the webhook, the late answer changes nothing", async () => {
    const shop = await newOrderShop(t);
    for (let round = 0; round < 8; round++) {
      let webhook: { status: number; body: any } | undefined;
      let stateAtWebhook: unknown;
      override = (request, response, url, body) => {
        if (request.method !== 'POST' || url.pathname !== '/orders') return false;
        const key = String(request.headers['idempotency-key']);
        const { reference, merchant } = JSON.parse(body) as { reference: string; merchant: string };
        // (an order an earlier test left retrying is not this test's)
        if (merchant !== shop.tenantId || webhook !== undefined) return false;
        const order: StandInOrder = { id: `po_early_${reference.slice(0, 8)}_${round}`, status: 'processing', reference, merchant: shop.tenantId, idempotency_key: key };
        orders.set(order.id, order);
        const event = providerEvent(shop.tenantId, reference, 'processing');
        void (async () => {
          stateAtWebhook = (await t.admin.query(`SELECT status, version FROM orders WHERE id = $1`, [reference])).rows[0];
          webhook = await postWebhook(t.baseUrl, { ...event, data: { ...event.data, order_id: order.id } });
          json(response, 201, { ...order, status: 'accepted' });
        })();
        return true;
      };
      const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
      await waitFor(`the webhook of ${orderId}`, async () => webhook !== undefined, 8_000, 20);
      assert.equal(webhook!.status, 200, `round ${round}: ${JSON.stringify(webhook!.body)}; the order was ${JSON.stringify(stateAtWebhook)}`);
      await waitForStatus(t.admin, orderId, 'processing', 8_000);
      await sleep(300);
      const row = await orderRow(orderId);
      assert.equal(row.status, 'processing');
      assert.equal(row.provider_order_id, standInOf(orderId).id);
      assert.deepEqual((await historyOf(t.admin, orderId)).map((entry) => `${entry.from_status}>${entry.to_status}:${entry.source}`), [
        'null>pending:api',
        'pending>submitting:worker',
        'submitting>processing:webhook',
      ]);
    }
  });
});
