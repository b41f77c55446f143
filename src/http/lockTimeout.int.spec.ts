import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { capturingLogger } from '../../test/support/logs.js';

/**
 * A command that waits longer than lock_timeout (15 s, src/core/db.ts) for a
 * row another transaction holds — a stuck session, a long manual UPDATE in
 * psql — is refused by PostgreSQL with lock_not_available (55P03), and a
 * statement past statement_timeout with query_canceled (57014). Nothing was
 * written (the command's transaction rolled back) and the same request may
 * simply be sent again: `503 service_unavailable` with `Retry-After`, as for
 * the database being unreachable — not `500 internal_error`, which tells a
 * till the server is broken. The operator still hears of it (logged at warn,
 * reported): something held the row for 15 s — once per kind and relation a
 * minute, so an incident is one report, not one per request. A sale refused
 * at once because group commit found its row held (RowHeldElsewhere: it
 * waited for nothing) is an expected refusal: counted, logged briefly, never
 * reported.
 *
 * What a wait past lock_timeout does does not depend on its length: the app's
 * pool here waits LOCK_WAIT_MS (createPool's lockTimeoutMs), not 15 s, so the
 * file does not sit idle for 15 s. A synced sale's wait is the lane's own
 * (SALE_LOCK_WAIT_MS), unchanged.
 */
describe('a command that waited past lock_timeout', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let skuId: string;
  /** A second SKU of the store: a second request waits for its own row (two waiters of one row time out one after the other). */
  let otherSkuId: string;
  const logs = capturingLogger('info');
  const reported: unknown[] = [];
  /** The app pool's lock_timeout in this file (ms): long enough that both requests below are waiting before either gives up. */
  const LOCK_WAIT_MS = 1_500;
  /** storekeep_database_wait_refusals_total{kind}, as the API's /metrics serves it. */
  const refusals = async (kind: string) => {
    const text = (await owner.get('/metrics')).body as string;
    const line = text.split('\n').find((each) => each.startsWith(`storekeep_database_wait_refusals_total{kind="${kind}"}`));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  before(async () => {
    t = await startTestApp({}, { logger: logs.logger, reportError: (error) => reported.push(error), lockTimeoutMs: LOCK_WAIT_MS });
    ({ owner, tenantId } = await t.newTenant());
    storeId = (await owner.post('/v1/stores', { code: 'LOCK', name: 'Locked' })).body.id;
    skuId = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'flour', unit: 'piece', price: 100 })).body.id;
    otherSkuId = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'sugar', unit: 'piece', price: 100 })).body.id;
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 10 }, { sku_id: otherSkuId, quantity: 10 }] })).status, 201);
  });
  after(() => t.close());

  const rows = async () => {
    const { rows } = await t.admin.query(
      `SELECT (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS balance,
              (SELECT count(*)::int FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS ledger_rows,
              (SELECT count(*)::int FROM operations WHERE tenant_id = $1) AS operations,
              (SELECT count(*)::int FROM events WHERE tenant_id = $1) AS events`,
      [tenantId, storeId, skuId],
    );
    return rows[0] as { balance: number; ledger_rows: number; operations: number; events: number };
  };

  it('is 503 service_unavailable with Retry-After, nothing written; the same request sent again is applied once; two such waits at once are one report', async () => {
    const before = await rows();
    const timeoutsBefore = await refusals('lock_timeout');
    const holder: pg.PoolClient = await t.admin.connect();
    const key = `adjust-${randomUUID()}`;
    let answer;
    let second;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = ANY($3::uuid[]) FOR UPDATE`, [tenantId, storeId, [skuId, otherSkuId]]);
      // Two requests wait at once, each for a row the holder has, each past its lock_timeout.
      [answer, second] = await Promise.all([
        owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key }),
        owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: otherSkuId, quantity_change: -1, reason: 'damaged' }, { idempotencyKey: `adjust-${randomUUID()}` }),
      ]);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.match(String(answer.headers.get('content-type')), /^application\/problem\+json/);
    assert.equal(answer.body.code, 'service_unavailable');
    assert.match(answer.body.detail, /nothing was written/);
    assert.ok(Number(answer.headers.get('retry-after')) >= 1, `Retry-After: ${answer.headers.get('retry-after')}`);
    assert.deepEqual(await rows(), before, 'nothing written');
    assert.equal(second.status, 503, JSON.stringify(second.body));
    assert.deepEqual(await rows(), before, 'nothing written');
    const waits = logs.lines.filter((line) => line.level === 40 && line.msg === 'the database gave up waiting for this request');
    assert.deepEqual(
      [answer.body.correlation_id, second.body.correlation_id].map((id) => waits.filter((line) => line.correlation_id === id).length),
      [1, 1],
      'each logged at warn under its request',
    );
    assert.deepEqual(waits.map((line) => [line.kind, line.relation, line.reported]).sort(), [['lock_timeout', 'stock_balances', false], ['lock_timeout', 'stock_balances', true]]);
    assert.equal(reported.length, 1, 'the two timeouts of one kind and relation are one report');
    assert.equal(await refusals('lock_timeout'), timeoutsBefore + 2, 'each counted');

    const again = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    const replay = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -3, reason: 'damaged' }, { idempotencyKey: key });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    const after = await rows();
    assert.equal(after.balance, before.balance - 3);
    assert.equal(after.ledger_rows, before.ledger_rows + 1);
    assert.equal(after.operations, before.operations + 1);
  });

  it('a synced sale behind a held row: its result is 503, nothing written; refused at once once the row is known held (RowHeldElsewhere), it is counted and logged briefly, not reported', async () => {
    // A SKU of its own: the test above left its stock moved.
    const sku = (await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'salt', unit: 'piece', price: 100 })).body.id as string;
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: sku, quantity: 10 }] })).status, 201);
    const sales = async () => Number((await t.admin.query(`SELECT count(*)::int AS n FROM sales WHERE tenant_id = $1`, [tenantId])).rows[0].n);
    const salesBefore = await sales();
    const heldBefore = await refusals('row_held');
    const holder: pg.PoolClient = await t.admin.connect();
    const key = `sync-${randomUUID()}`;
    let synced;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, storeId, sku]);
      synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, store_id: storeId, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 100 }] }] });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const [result] = synced.body.results;
    assert.equal(result.status, 503, JSON.stringify(result));
    assert.equal(result.body.code, 'service_unavailable');
    assert.equal(await sales(), salesBefore, 'nothing written');
    const logged = logs.lines.filter((line) => line.idempotency_key === key);
    assert.deepEqual(
      logged.map((line) => [line.level, line.msg]),
      [[30, 'a row the request needs is held by another transaction: refused at once']],
      'the synced sale refused at once is logged at info, naming its key',
    );
    assert.equal(logged[0]!.err, undefined, 'without a stack');
    assert.match(JSON.stringify(logged[0]!.error), /held by another transaction/);
    assert.equal(await refusals('row_held'), heldBefore + 1, 'counted');
    assert.equal(reported.filter((error) => (error as { code?: unknown }).code === '55P03').length, 1, 'reported: the adjustment above only');
  });
});
