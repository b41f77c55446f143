import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, saleRowCounts } from './testkit.js';

describe('POST /v1/sales/{id}/void', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let cheese: string;
  let rope: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'V1');
    cheese = await givenSku(owner, 'CHEESE', 'kg', 1500);
    rope = await givenSku(owner, 'ROPE', 'metre', 200);
    await givenStock(owner, storeId, [
      { sku_id: cheese, quantity: 5000 },
      { sku_id: rope, quantity: 100_000 },
    ]);
  });
  after(() => t.close());

  const sell = (items: Array<{ sku_id: string; quantity: number; unit_price: number }>, client = owner) =>
    client.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items }, { idempotencyKey: randomUUID() });

  it('returns the stock exactly through new ledger rows, keeps the receipt number, marks the sale voided', async () => {
    // Given
    const sale = (await sell([{ sku_id: cheese, quantity: 750, unit_price: 1500 }, { sku_id: rope, quantity: 2500, unit_price: 200 }, { sku_id: cheese, quantity: 250, unit_price: 1500 }])).body;
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, cheese), { balance: 4000, ledger: 4000 });
    // When
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'customer changed their mind' }, { idempotencyKey: randomUUID() });
    // Then
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal(voided.body.status, 'voided');
    assert.equal(voided.body.receipt_number, sale.receipt_number);
    assert.equal(voided.body.void_reason, 'customer changed their mind');
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, cheese), { balance: 5000, ledger: 5000 });
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, rope), { balance: 100_000, ledger: 100_000 });
    const { rows } = await t.admin.query(
      `SELECT sku_id, quantity_change::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 AND kind = 'void' ORDER BY sku_id`,
      [tenantId, voided.body.voided_by_op],
    );
    assert.deepEqual(rows, [{ sku_id: cheese, quantity_change: 1000 }, { sku_id: rope, quantity_change: 2500 }].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)));
    assert.deepEqual((await owner.get(`/v1/sales/${sale.id}`)).body, voided.body);

    // the number is never reused
    const next = await sell([{ sku_id: cheese, quantity: 1, unit_price: 1500 }]);
    assert.equal(next.body.receipt_number, sale.receipt_number + 1);
  });

  it('voiding a voided sale returns it again (200) and writes nothing but its key, which a different request then cannot reuse', async () => {
    const sale = (await sell([{ sku_id: cheese, quantity: 10, unit_price: 1500 }])).body;
    const first = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'once' });
    assert.equal(first.status, 200);
    const before = await saleRowCounts(t, tenantId);
    const key = randomUUID();
    const second = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'twice' }, { idempotencyKey: key });
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, first.body);
    assert.equal(second.body.void_reason, 'once');
    // A no-op replay, said as such, like completing a completed visit.
    assert.equal(first.headers.get('idempotent-replayed'), null);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    const third = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'without a key' });
    assert.equal(third.status, 200);
    assert.equal(third.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(third.body, first.body);
    // Nothing new but the second request's key, kept with its answer and the void that did it.
    assert.deepEqual(await saleRowCounts(t, tenantId), { ...before, keys: Number(before.keys) + 1 });
    const kept = await t.admin.query(`SELECT op_id, response_status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.deepEqual(kept.rows, [{ op_id: first.body.voided_by_op, response_status: 200 }]);

    // The same key and request again: the same answer. The same key for another request: 422, and that sale is not voided.
    const again = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'twice' }, { idempotencyKey: key });
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    const other = (await sell([{ sku_id: cheese, quantity: 10, unit_price: 1500 }])).body;
    const reused = await owner.post(`/v1/sales/${other.id}/void`, { reason: 'twice' }, { idempotencyKey: key });
    assert.equal(reused.status, 422);
    assert.equal(reused.body.code, 'idempotency_key_reused');
    assert.equal((await owner.get(`/v1/sales/${other.id}`)).body.status, 'completed');

    // Once expired, the key may name another request: its record is that request's alone (no sender left over from the earlier answer)
    const stored = await t.admin.query(`SELECT actor_token_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.notEqual(stored.rows[0].actor_token_id, null, 'the already-done answer names who sent it');
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    const afterExpiry = await owner.post(`/v1/sales/${other.id}/void`, { reason: 'new request' }, { idempotencyKey: key });
    assert.equal(afterExpiry.status, 200, JSON.stringify(afterExpiry.body));
    const replaced = await t.admin.query(`SELECT op_id, actor_token_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.deepEqual(replaced.rows, [{ op_id: afterExpiry.body.voided_by_op, actor_token_id: null }]);
  });

  it('concurrent voids of one sale return the stock once', async () => {
    const sale = (await sell([{ sku_id: rope, quantity: 1000, unit_price: 200 }])).body;
    const before = await balanceAndLedger(t, tenantId, storeId, rope);
    const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => owner.post(`/v1/sales/${sale.id}/void`, { reason: `void ${i}` }, { idempotencyKey: randomUUID() })));
    assert.ok(responses.every((r) => r.status === 200), JSON.stringify(responses.map((r) => r.status)));
    assert.equal(new Set(responses.map((r) => r.body.voided_by_op)).size, 1);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, rope), { balance: before.balance + 1000, ledger: before.ledger + 1000 });
  });

  it('another store\'s or tenant\'s sale is 404, and nothing is written', async () => {
    const sale = (await sell([{ sku_id: cheese, quantity: 1, unit_price: 1500 }])).body;
    const otherStore = await givenStore(owner, 'V2');
    const scoped = await givenToken(t, owner, 'manager', [otherStore]);
    const { owner: stranger } = await t.newTenant();
    const before = await saleRowCounts(t, tenantId);
    assert.equal((await scoped.post(`/v1/sales/${sale.id}/void`, { reason: 'x' })).status, 404);
    assert.equal((await stranger.post(`/v1/sales/${sale.id}/void`, { reason: 'x' })).status, 404);
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    assert.equal((await owner.get(`/v1/sales/${sale.id}`)).body.status, 'completed');
  });

  it('a cashier may not void (403)', async () => {
    const sale = (await sell([{ sku_id: cheese, quantity: 1, unit_price: 1500 }])).body;
    const cashier = await givenToken(t, owner, 'cashier');
    const response = await cashier.post(`/v1/sales/${sale.id}/void`, { reason: 'x' });
    assert.equal(response.status, 403);
    assert.equal((await owner.get(`/v1/sales/${sale.id}`)).body.status, 'completed');
  });

  it('a void racing new sales of the same SKU leaves stock consistent', async () => {
    // Given: a SKU sold out by one sale of 20
    const sku = await givenSku(owner, 'RACE', 'piece', 10);
    await givenStock(owner, storeId, [{ sku_id: sku, quantity: 20 }]);
    const big = (await sell([{ sku_id: sku, quantity: 20, unit_price: 10 }])).body;
    // When: the void races 40 one-unit sales
    const [voided, ...sales] = await Promise.all([
      owner.post(`/v1/sales/${big.id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() }),
      ...Array.from({ length: 40 }, () => sell([{ sku_id: sku, quantity: 1, unit_price: 10 }])),
    ]);
    // Then
    assert.equal(voided.status, 200);
    const sold = sales.filter((r) => r.status === 201).length;
    assert.ok(sales.every((r) => r.status === 201 || (r.status === 409 && r.body.code === 'insufficient_stock')));
    assert.ok(sold <= 20);
    const { balance, ledger } = await balanceAndLedger(t, tenantId, storeId, sku);
    assert.equal(balance, ledger);
    assert.equal(balance, 20 - sold);
    // every sale that succeeded is in the database, and the sums agree with the rows
    const { rows } = await t.admin.query(
      `SELECT coalesce(sum(i.quantity) FILTER (WHERE s.status = 'completed'), 0)::int AS sold
       FROM sales s JOIN sale_items i ON i.tenant_id = s.tenant_id AND i.sale_id = s.id WHERE s.tenant_id = $1 AND i.sku_id = $2`,
      [tenantId, sku],
    );
    assert.equal(rows[0].sold, sold);
    // Then sell what is left: exactly the balance
    if (balance > 0) assert.equal((await sell([{ sku_id: sku, quantity: balance, unit_price: 10 }])).status, 201);
    assert.equal((await sell([{ sku_id: sku, quantity: 1, unit_price: 10 }])).status, 409);
  });
});
