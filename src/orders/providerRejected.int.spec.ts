import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Config } from '../config.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { sleep } from '../../test/support/wait.js';
import { startTestWorker } from '../../test/support/worker.js';
import type { RunningWorker } from '../jobs/worker.js';
import { historyOf, newOrderShop, orderBody, waitForStatus, WEBHOOK_SECRET } from './testkit.js';

/** What the provider refuses a create with: an answer whose quoted form is cut by the error's 500-character limit inside an emoji. */
const PREFIX = '{"error":"address_not_deliverable","detail":"';
const refusal = { error: 'address_not_deliverable', detail: `${'x'.repeat(500 - PREFIX.length - 1)}\u{1F69A} cannot reach this address` };

describe('a provider refusal quoted in the order', () => {
  let t: TestApp;
  let worker: RunningWorker;
  let provider: http.Server;
  let creates = 0;

  before(async () => {
    assert.equal(JSON.stringify(refusal).indexOf('\u{1F69A}'), 499, 'the emoji straddles the 500th character');
    provider = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.method === 'POST') creates++;
        response.writeHead(422, { 'content-type': 'application/json' }).end(JSON.stringify(refusal));
      });
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    const overrides: Partial<Config> = {
      fulfilmentUrl: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`,
      fulfilmentWebhookSecret: WEBHOOK_SECRET,
      fulfilmentTimeoutMs: 1_000,
      ordersStuckAfterSeconds: 3_600,
      jobRetryBaseMs: 20,
      jobRetryMaxMs: 100,
      jobMaxAttempts: 3,
      workerMetricsPort: 0,
    };
    t = await startTestApp(overrides);
    worker = await startTestWorker(t, overrides);
  });
  after(async () => {
    await worker.stop();
    await new Promise<void>((resolve) => provider.close(() => resolve()));
    await t.close();
  });

  it('an answer cut inside a character still fails the order at once with the readable part of the answer, asked once', async () => {
    const shop = await newOrderShop(t);
    const orderId: string = (await shop.owner.post('/v1/orders', orderBody(shop))).body.id;
    await waitForStatus(t.admin, orderId, 'failed', 5_000);
    await sleep(300);
    const row = (await t.admin.query(`SELECT submit_attempts, last_error FROM orders WHERE id = $1`, [orderId])).rows[0];
    assert.equal(row.submit_attempts, 1);
    assert.equal(creates, 1, 'the provider was asked once');
    assert.ok(row.last_error.startsWith(`provider refused the order (422): ${PREFIX}xxx`), row.last_error);
    assert.deepEqual((await historyOf(t.admin, orderId)).at(-1), { from_status: 'submitting', to_status: 'failed', source: 'worker' });
    const items = await t.admin.query(`SELECT count(*)::int AS n FROM review_items WHERE kind = 'job_failed' AND detail->'data'->>'order_id' = $1`, [orderId]);
    assert.equal(items.rows[0].n, 0);
  });
});
