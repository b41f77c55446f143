import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, saleRowCounts } from './testkit.js';

describe('POST /v1/sales: an atomic sale', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let apples: string; // kg
  let bread: string; // piece

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'MAIN');
    apples = await givenSku(owner, 'APPLE', 'kg', 299);
    bread = await givenSku(owner, 'BREAD', 'piece', 150);
    await givenStock(owner, storeId, [
      { sku_id: apples, quantity: 10_000 },
      { sku_id: bread, quantity: 20 },
    ]);
  });
  after(() => t.close());

  it('records the sale, its lines, the stock ledger and the next receipt number in one go', async () => {
    // When
    const response = await owner.post(
      '/v1/sales',
      {
        store_id: storeId,
        payment_method: 'cash',
        items: [
          { sku_id: apples, quantity: 1234, unit_price: 299 },
          { sku_id: bread, quantity: 2, unit_price: 150 },
        ],
        client_created_at: '2026-11-23T10:00:00.000Z',
      },
      { idempotencyKey: randomUUID() },
    );
    // Then
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const sale = response.body;
    assert.equal(sale.receipt_number, 1);
    assert.equal(sale.status, 'completed');
    assert.equal(sale.sale_type, 'regular');
    assert.equal(sale.source, 'online');
    // 1,234 g × 2.99 per kg = 368.966 → 369; 2 × 150 = 300
    assert.deepEqual(sale.items.map((item: { line_total: number }) => item.line_total), [369, 300]);
    assert.equal(sale.total, 669);
    assert.equal(sale.client_created_at, '2026-11-23T10:00:00.000Z');

    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, apples), { balance: 10_000 - 1234, ledger: 10_000 - 1234 });
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, bread), { balance: 18, ledger: 18 });
    const { rows } = await t.admin.query(
      `SELECT l.kind, l.quantity_change, l.op_id FROM stock_ledger l WHERE l.tenant_id = $1 AND l.kind = 'sale' ORDER BY l.id`,
      [tenantId],
    );
    assert.deepEqual(rows.map((row) => [row.kind, Number(row.quantity_change), row.op_id]).sort(), [
      ['sale', -2, sale.op_id],
      ['sale', -1234, sale.op_id],
    ].sort());

    const read = await owner.get(`/v1/sales/${sale.id}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, sale);
  });

  it('client_created_at is read as PostgreSQL reads it: an hour-only offset, a leap second, microseconds kept', async () => {
    const candles = await givenSku(owner, 'CANDLES', 'piece', 5);
    await givenStock(owner, storeId, [{ sku_id: candles, quantity: 10 }]);
    const sell = (clientCreatedAt: string) =>
      owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: candles, quantity: 1, unit_price: 1 }], client_created_at: clientCreatedAt });
    const cases: Array<[string, string, string]> = [
      ['2026-06-01T10:00:00+05', '2026-06-01T05:00:00.000Z', '2026-06-01 05:00:00+00'],
      ['2016-12-31T23:59:60Z', '2017-01-01T00:00:00.000Z', '2017-01-01 00:00:00+00'],
      ['2026-11-23T10:00:00.123456Z', '2026-11-23T10:00:00.123Z', '2026-11-23 10:00:00.123456+00'],
      // the first and the last microsecond of the years 0001–9999 in UTC
      ['0001-01-01T01:00:00+01:00', '0001-01-01T00:00:00.000Z', '0001-01-01 00:00:00+00'],
      ['9999-12-31T18:59:59.999999-05:00', '9999-12-31T23:59:59.999Z', '9999-12-31 23:59:59.999999+00'],
    ];
    for (const [sent, returned, stored] of cases) {
      const response = await sell(sent);
      assert.equal(response.status, 201, `${sent}: ${JSON.stringify(response.body)}`);
      assert.equal(response.body.client_created_at, returned, sent);
      const row = await t.admin.query(`SELECT (client_created_at AT TIME ZONE 'UTC')::text || '+00' AS at FROM sales WHERE id = $1`, [response.body.id]);
      assert.equal(row.rows[0].at, stored, sent);
      assert.deepEqual((await owner.get(`/v1/sales/${response.body.id}`)).body, response.body, 'GET returns what POST returned');
    }
  });

  it('GET /v1/operations/{op_id} lists every row the sale touched', async () => {
    const sale = (await owner.post('/v1/sales', { store_id: storeId, payment_method: 'card', items: [{ sku_id: bread, quantity: 1, unit_price: 150 }] })).body;
    const operation = await owner.get(`/v1/operations/${sale.op_id}`);
    assert.equal(operation.status, 200);
    assert.equal(operation.body.type, 'sale.create');
    const effects = operation.body.effects as Array<{ table: string; id: string; action: string }>;
    const ledgerIds = (await t.admin.query(`SELECT id::text FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, sale.op_id])).rows.map((r) => r.id);
    assert.deepEqual(
      effects.filter((e) => e.table === 'sales'),
      [{ table: 'sales', id: sale.id, action: 'created' }],
    );
    assert.deepEqual(effects.filter((e) => e.table === 'sale_items').map((e) => e.id), sale.items.map((i: { id: string }) => i.id));
    assert.deepEqual(effects.filter((e) => e.table === 'stock_ledger').map((e) => e.id).sort(), ledgerIds.sort());
    assert.ok(effects.some((e) => e.table === 'store_receipt_counters' && e.id === storeId));
  });

  it('a multi-line sale whose second line is short: 409 with every shortage, nothing written, no receipt number taken', async () => {
    // Given
    const before = await saleRowCounts(t, tenantId);
    const lastNumber = (await t.admin.query(`SELECT max(receipt_number)::int AS n FROM sales WHERE tenant_id = $1 AND store_id = $2`, [tenantId, storeId])).rows[0].n;
    // When
    const response = await owner.post(
      '/v1/sales',
      {
        store_id: storeId,
        payment_method: 'cash',
        items: [
          { sku_id: apples, quantity: 100, unit_price: 299 },
          { sku_id: bread, quantity: 500, unit_price: 150 },
        ],
      },
      { idempotencyKey: randomUUID() },
    );
    // Then
    assert.equal(response.status, 409);
    assert.equal(response.body.code, 'insufficient_stock');
    assert.deepEqual(response.body.shortages, [{ sku_id: bread, requested: 500, available: 17 }]);
    assert.deepEqual(await saleRowCounts(t, tenantId), before);

    const next = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 150 }] });
    assert.equal(next.status, 201);
    assert.equal(next.body.receipt_number, lastNumber + 1);
  });

  it('lists every short line, and sums lines of the same SKU before checking', async () => {
    const before = await saleRowCounts(t, tenantId);
    const { balance: breadLeft } = await balanceAndLedger(t, tenantId, storeId, bread);
    const { balance: applesLeft } = await balanceAndLedger(t, tenantId, storeId, apples);
    const response = await owner.post('/v1/sales', {
      store_id: storeId,
      payment_method: 'cash',
      items: [
        { sku_id: bread, quantity: breadLeft - 1, unit_price: 150 },
        { sku_id: apples, quantity: applesLeft + 1, unit_price: 299 },
        { sku_id: bread, quantity: 2, unit_price: 150 },
      ],
    });
    assert.equal(response.status, 409);
    const shortages = [...response.body.shortages].sort((a: { sku_id: string }, b: { sku_id: string }) => (a.sku_id < b.sku_id ? -1 : 1));
    assert.deepEqual(
      shortages,
      [
        { sku_id: bread, requested: breadLeft + 1, available: breadLeft },
        { sku_id: apples, requested: applesLeft + 1, available: applesLeft },
      ].sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1)),
    );
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
  });

  it('the same Idempotency-Key retried concurrently makes one sale', async () => {
    const before = await balanceAndLedger(t, tenantId, storeId, apples);
    const salesBefore = (await saleRowCounts(t, tenantId)).sales as number;
    const key = randomUUID();
    const body = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: apples, quantity: 10, unit_price: 299 }] };
    const responses = await Promise.all(Array.from({ length: 16 }, () => owner.post('/v1/sales', body, { idempotencyKey: key })));
    const created = responses.filter((r) => r.status === 201);
    assert.ok(created.length >= 1);
    for (const response of responses) {
      assert.ok(response.status === 201 || (response.status === 409 && response.body.code === 'idempotency_key_in_flight'), JSON.stringify(response.body));
    }
    assert.equal(new Set(created.map((r) => r.body.id)).size, 1, 'every success is the same sale');
    assert.equal(created.filter((r) => r.headers.get('idempotent-replayed') !== 'true').length, 1, 'only one was not a replay');
    assert.equal((await saleRowCounts(t, tenantId)).sales, salesBefore + 1);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, apples), { balance: before.balance - 10, ledger: before.ledger - 10 });
    const replay = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.body.id, created[0]!.body.id);
  });

  it('bulk sales need sales.bulk: 403 for a cashier, nothing written; allowed for a manager', async () => {
    const settings = await owner.request('PATCH', '/v1/tenant/settings', { bulk_sale_threshold: 5000 });
    assert.ok(settings.status === 200 || settings.status === 201, JSON.stringify(settings.body));
    const cashier = await givenToken(t, owner, 'cashier');
    const manager = await givenToken(t, owner, 'manager');
    const before = await saleRowCounts(t, tenantId);

    const overThreshold = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: apples, quantity: 5000, unit_price: 299 }] };
    const split = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: apples, quantity: 2500, unit_price: 299 }, { sku_id: apples, quantity: 2500, unit_price: 299 }] };
    const explicit = { store_id: storeId, payment_method: 'cash', sale_type: 'bulk', items: [{ sku_id: bread, quantity: 1, unit_price: 150 }] };
    for (const body of [overThreshold, split, explicit]) {
      const refused = await cashier.post('/v1/sales', body, { idempotencyKey: randomUUID() });
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'forbidden');
    }
    assert.deepEqual(await saleRowCounts(t, tenantId), before);

    const small = await cashier.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: apples, quantity: 4999, unit_price: 299 }] });
    assert.equal(small.status, 201);
    assert.equal(small.body.sale_type, 'regular');
    const bulk = await manager.post('/v1/sales', explicit);
    assert.equal(bulk.status, 201);
    assert.equal(bulk.body.sale_type, 'bulk');

    // null removes the threshold: only sales sent as bulk are bulk.
    const unset = await owner.patch('/v1/tenant/settings', { bulk_sale_threshold: null, geofence_radius_m: 250 });
    assert.equal(unset.status, 200, JSON.stringify(unset.body));
    assert.equal('bulk_sale_threshold' in unset.body, false);
    assert.equal(unset.body.geofence_radius_m, 250);
    assert.equal('bulk_sale_threshold' in (await owner.get('/v1/tenant/settings')).body, false);
    await givenStock(owner, storeId, [{ sku_id: apples, quantity: 5000 }]);
    const noLongerBulk = await cashier.post('/v1/sales', overThreshold);
    assert.equal(noLongerBulk.status, 201, JSON.stringify(noLongerBulk.body));
    assert.equal(noLongerBulk.body.sale_type, 'regular');
    assert.equal((await owner.patch('/v1/tenant/settings', { geofence_radius_m: null })).body.geofence_radius_m, undefined);
  });

  it('another store\'s sale is 404 for a token scoped elsewhere', async () => {
    const other = await givenStore(owner, 'OTHER');
    const scoped = await givenToken(t, owner, 'cashier', [other]);
    const sale = (await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 150 }] })).body;
    assert.equal((await scoped.get(`/v1/sales/${sale.id}`)).status, 404);
    const before = await saleRowCounts(t, tenantId);
    const sell = await scoped.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 150 }] });
    assert.equal(sell.status, 404);
    assert.deepEqual(await saleRowCounts(t, tenantId), before);
    // another tenant's sale too
    const { owner: stranger } = await t.newTenant();
    assert.equal((await stranger.get(`/v1/sales/${sale.id}`)).status, 404);
  });

  describe('bad input: problem+json, nothing written', () => {
    const unknown = '00000000-0000-4000-8000-000000000001';
    const cases: Array<[string, () => Promise<ApiResponse>, number, string]> = [
      ['no items', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [] }), 400, 'validation_failed'],
      ['zero quantity', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 0, unit_price: 1 }] }), 400, 'validation_failed'],
      ['fractional quantity', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1.5, unit_price: 1 }] }), 400, 'validation_failed'],
      ['negative price', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: -1 }] }), 400, 'validation_failed'],
      ['float price', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 1.25 }] }), 400, 'validation_failed'],
      ['missing unit_price', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1 }] }), 400, 'validation_failed'],
      ['unknown payment method', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'gold', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['unknown field', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', discount: 5, items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['bad client_created_at', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', client_created_at: 'yesterday', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['client_created_at in year 0', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', client_created_at: '0000-06-01T10:00:00Z', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['client_created_at before year 0001 in UTC (1 BC)', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', client_created_at: '0001-01-01T00:00:00+01:00', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['client_created_at past year 9999 in UTC', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', client_created_at: '9999-12-31T23:00:00-05:00', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['a line total beyond the largest amount', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1_000_000_000_000, unit_price: 9_000_000_000_000 }] }), 400, 'validation_failed'],
      ['a sale total beyond the largest amount', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 9_000_000_000_000 }, { sku_id: bread, quantity: 1, unit_price: 9_000_000_000_000 }] }), 400, 'validation_failed'],
      ['a customer id in urn:uuid form', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'credit', customer_id: 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['bad sale_type', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', sale_type: 'huge', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['unknown SKU', () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: unknown, quantity: 1, unit_price: 1 }] }), 400, 'validation_failed'],
      ['unknown store', () => owner.post('/v1/sales', { store_id: unknown, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }), 404, 'not_found'],
      ['bad sale id', () => owner.get('/v1/sales/not-a-uuid'), 400, 'validation_failed'],
      ['missing sale', () => owner.get(`/v1/sales/${unknown}`), 404, 'not_found'],
      ['void without reason', () => owner.post(`/v1/sales/${unknown}/void`, {}), 400, 'validation_failed'],
      ['void of a missing sale', () => owner.post(`/v1/sales/${unknown}/void`, { reason: 'x' }), 404, 'not_found'],
      ['sync without sales', () => owner.post('/v1/sync/sales', { sales: [] }), 400, 'validation_failed'],
      ['sync item without key', () => owner.post('/v1/sync/sales', { sales: [{ store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] }] }), 400, 'validation_failed'],
      ['ledger with a bad cursor', () => owner.get(`/v1/stores/${storeId}/stock/${bread}/ledger?cursor=zzz`), 400, 'validation_failed'],
      ['ledger of an unknown SKU', () => owner.get(`/v1/stores/${storeId}/stock/${unknown}/ledger`), 404, 'not_found'],
      ['stock as of a non-date', () => owner.get(`/v1/stores/${storeId}/stock?as_of=soon`), 400, 'validation_failed'],
      ['snapshots through a non-date', () => owner.post('/v1/stock/snapshots', { through: 'yesterday' }), 400, 'validation_failed'],
    ];
    for (const [name, send, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const before = await saleRowCounts(t, tenantId);
        const response = await send();
        assert.equal(response.status, status, JSON.stringify(response.body));
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(response.body.code, code);
        assert.deepEqual(await saleRowCounts(t, tenantId), before);
      });
    }

    it('an auditor may read but not sell (403, nothing written)', async () => {
      const auditor = await givenToken(t, owner, 'auditor');
      const before = await saleRowCounts(t, tenantId);
      const response = await auditor.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: bread, quantity: 1, unit_price: 1 }] });
      assert.equal(response.status, 403);
      assert.deepEqual(await saleRowCounts(t, tenantId), before);
    });
  });
});
