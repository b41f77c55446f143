import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { catchUpDailySales } from '../analytics/catchUpDailySales.js';
import { runCommand } from '../core/command.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, givenToken, returnRowCounts, saleMoney as saleMoneyOf } from './testkit.js';

describe('POST /v1/sales/{id}/returns', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let cheese: string;
  let milk: string;
  let bread: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'R1');
    cheese = await givenSku(owner, 'CHEESE', 'kg', 1500);
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    bread = await givenSku(owner, 'BREAD', 'piece', 90);
    await givenStock(owner, storeId, [
      { sku_id: cheese, quantity: 100_000 },
      { sku_id: milk, quantity: 1000 },
      { sku_id: bread, quantity: 1000 },
    ]);
  });
  after(() => t.close());

  type Line = { sku_id: string; quantity: number; unit_price: number };
  const sell = async (items: Line[], extra: Record<string, unknown> = {}) => {
    const response = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items, ...extra }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string; receipt_number: number; total: number; items: Array<{ id: string }> };
  };
  const giveBack = (saleId: string, items: Array<{ sku_id: string; quantity: number }>, options: { client?: ApiClient; key?: string; reason?: string } = {}) =>
    (options.client ?? owner).post(`/v1/sales/${saleId}/returns`, { items, reason: options.reason ?? 'customer brought it back' }, { idempotencyKey: options.key ?? randomUUID() });

  /** Every row a return could write, for this tenant. */
  const rowCounts = () => returnRowCounts(t, tenantId);
  /** The net of the sale's money entries (sale, its returns, its void) per account key. */
  const saleMoney = (saleId: string) => saleMoneyOf(t, tenantId, storeId, saleId);

  const noFindings = async () => assert.deepEqual(await integrityFindings(t.admin, tenantId), []);

  it('takes back part of a cash sale: stock through return ledger rows, the refund out of the drawer, the receipt number kept', async () => {
    // Given a sale of 600 g of cheese at 999 per kg (599.4 → 599) and 3 milk
    const sale = await sell([{ sku_id: cheese, quantity: 600, unit_price: 999 }, { sku_id: milk, quantity: 3, unit_price: 120 }]);
    assert.equal(sale.total, 599 + 360);
    const cheeseBefore = await balanceAndLedger(t, tenantId, storeId, cheese);
    // When the customer brings back 200 g and one milk
    const response = await giveBack(sale.id, [{ sku_id: cheese, quantity: 200 }, { sku_id: milk, quantity: 1 }]);
    // Then
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const returned = response.body;
    assert.equal(returned.sale_id, sale.id);
    assert.equal(returned.return_number, 1);
    assert.equal(returned.refund_total, 200 + 120); // 199.8 → 200
    assert.deepEqual(
      returned.lines.map((line: { line_number: number; sku_id: string; quantity: number; refund: number }) => [line.line_number, line.sku_id, line.quantity, line.refund]),
      [[1, cheese, 200, 200], [2, milk, 1, 120]],
    );
    assert.equal(returned.sale_returned_total, 320);
    assert.deepEqual(returned.remaining, [
      { sku_id: cheese, sold: 600, returned: 200, returnable: 400, returnable_piece_ids: [] },
      { sku_id: milk, sold: 3, returned: 1, returnable: 2, returnable_piece_ids: [] },
    ]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, cheese), { balance: cheeseBefore.balance + 200, ledger: cheeseBefore.ledger + 200 });
    const ledger = await t.admin.query(`SELECT sku_id, quantity_change::int, kind FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY quantity_change`, [tenantId, returned.op_id]);
    assert.deepEqual(ledger.rows, [{ sku_id: milk, quantity_change: 1, kind: 'return' }, { sku_id: cheese, quantity_change: 200, kind: 'return' }]);
    // the refund leaves the drawer and the revenue
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 959 - 320, sales_revenue: -(959 - 320) });
    const entry = await t.admin.query(`SELECT kind, subject_type, subject_id, store_id, op_id FROM journal_entries WHERE tenant_id = $1 AND op_id = $2`, [tenantId, returned.op_id]);
    assert.deepEqual(entry.rows, [{ kind: 'sale_return', subject_type: 'sale_return', subject_id: returned.id, store_id: storeId, op_id: returned.op_id }]);

    // GET shows the sale with its returns, still completed, its number kept
    const got = (await owner.get(`/v1/sales/${sale.id}`)).body;
    assert.equal(got.status, 'completed');
    assert.equal(got.receipt_number, sale.receipt_number);
    assert.equal(got.total, 959);
    assert.equal(got.returned_total, 320);
    const { remaining: _remaining, sale_returned_total: _total, ...shown } = returned;
    assert.deepEqual(got.returns, [shown]);

    // GET /v1/operations/{op_id} lists the rows the return wrote
    const operation = (await owner.get(`/v1/operations/${returned.op_id}`)).body;
    assert.equal(operation.type, 'sale.return');
    const tables = (operation.effects as Array<{ table: string }>).map((effect) => effect.table);
    for (const table of ['sale_returns', 'sale_return_items', 'stock_ledger', 'stock_balances', 'sales', 'journal_entries', 'postings']) {
      assert.ok(tables.includes(table), `${table} in ${JSON.stringify(tables)}`);
    }
    assert.equal(tables.filter((table) => table === 'sale_return_items').length, 2);
    assert.equal(tables.filter((table) => table === 'stock_ledger').length, 2);
    await noFindings();
  });

  it('returning everything in parts refunds exactly the sale total (cumulative rounding), then nothing more is returnable', async () => {
    // 3 g at 1,500 per kg is 4.5 → 5; 5 g at 999 is 4.995 → 5; a second line of the same SKU at another price
    const sale = await sell([{ sku_id: cheese, quantity: 3, unit_price: 1500 }, { sku_id: cheese, quantity: 5, unit_price: 999 }, { sku_id: bread, quantity: 2, unit_price: 90 }]);
    assert.equal(sale.total, 5 + 5 + 180);
    const refunds: number[] = [];
    for (const items of [[{ sku_id: cheese, quantity: 1 }], [{ sku_id: cheese, quantity: 1 }, { sku_id: bread, quantity: 1 }], [{ sku_id: cheese, quantity: 3 }], [{ sku_id: cheese, quantity: 3 }, { sku_id: bread, quantity: 1 }]]) {
      const response = await giveBack(sale.id, items);
      assert.equal(response.status, 201, JSON.stringify(response.body));
      refunds.push(response.body.refund_total);
    }
    // 1 g: 1.5 → 2; 2 g: 3 − 2 = 1; then 1 g of line 1 (4.5 → 5, − 3 = 2) and 2 g of line 2 (1.998 → 2); then 3 g of line 2 (4.995 → 5, − 2 = 3)
    assert.deepEqual(refunds, [2, 1 + 90, 2 + 2, 3 + 90]);
    assert.equal(refunds.reduce((a, b) => a + b, 0), sale.total);
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    const last = await giveBack(sale.id, [{ sku_id: bread, quantity: 1 }]);
    assert.equal(last.status, 409);
    assert.equal(last.body.code, 'return_exceeds_sale');
    assert.deepEqual(last.body.returnable, [{ sku_id: bread, requested: 1, returnable: 0 }]);
    // A void of a sale whose returns took everything back moves nothing more (no stock, no entry), and keeps the books straight
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'all back already' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voided.body.voided_by_op])).rows[0].n, 0);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM journal_entries WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voided.body.voided_by_op])).rows[0].n, 0);
    assert.equal(voided.body.returned_total, sale.total);
    assert.equal(voided.body.returns.length, 4);
    await noFindings();
  });

  it('a void after a partial return brings back only what is left, stock and money', async () => {
    const sale = await sell([{ sku_id: cheese, quantity: 1000, unit_price: 1500 }, { sku_id: milk, quantity: 4, unit_price: 120 }]);
    const cheeseBefore = await balanceAndLedger(t, tenantId, storeId, cheese);
    const milkBefore = await balanceAndLedger(t, tenantId, storeId, milk);
    assert.equal((await giveBack(sale.id, [{ sku_id: cheese, quantity: 300 }, { sku_id: milk, quantity: 4 }])).status, 201);
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'the rest too' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    const { rows } = await t.admin.query(`SELECT sku_id, quantity_change::int FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voided.body.voided_by_op]);
    assert.deepEqual(rows, [{ sku_id: cheese, quantity_change: 700 }]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, cheese), { balance: cheeseBefore.balance + 1000, ledger: cheeseBefore.ledger + 1000 });
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), { balance: milkBefore.balance + 4, ledger: milkBefore.ledger + 4 });
    const voidEntry = await t.admin.query(
      `SELECT a.key, p.amount::int FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id JOIN accounts a ON a.id = p.account_id
       WHERE e.tenant_id = $1 AND e.op_id = $2 AND e.kind = 'sale_void' ORDER BY a.key`,
      [tenantId, voided.body.voided_by_op],
    );
    // 1,500 + 480 sold, 450 + 480 refunded by the return: the void gives back 1,050
    assert.deepEqual(voidEntry.rows.map((row) => [row.key.replace(`store/${storeId}/`, ''), row.amount]), [['cash_drawer', -1050], ['sales_revenue', 1050]]);
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    // and a return after the void is 409, nothing written
    const before = await rowCounts();
    const late = await giveBack(sale.id, [{ sku_id: cheese, quantity: 1 }]);
    assert.equal(late.status, 409);
    assert.equal(late.body.code, 'invalid_transition');
    assert.deepEqual(await rowCounts(), before);
    await noFindings();
  });

  it('more than was sold minus earlier returns: 409 listing each line\'s returnable quantity, nothing written', async () => {
    const sale = await sell([{ sku_id: milk, quantity: 3, unit_price: 120 }, { sku_id: bread, quantity: 2, unit_price: 90 }]);
    assert.equal((await giveBack(sale.id, [{ sku_id: milk, quantity: 2 }])).status, 201);
    const before = await rowCounts();
    const response = await giveBack(sale.id, [{ sku_id: bread, quantity: 1 }, { sku_id: milk, quantity: 1 }, { sku_id: milk, quantity: 1 }]);
    assert.equal(response.status, 409);
    assert.equal(response.body.code, 'return_exceeds_sale');
    assert.deepEqual(response.body.returnable, [
      { sku_id: bread, requested: 1, returnable: 2 },
      { sku_id: milk, requested: 2, returnable: 1 },
    ]);
    assert.deepEqual(await rowCounts(), before);
  });

  it('bad inputs are 4xx with the path named, and write nothing', async () => {
    const sale = await sell([{ sku_id: milk, quantity: 3, unit_price: 120 }]);
    const before = await rowCounts();
    const cases: Array<[unknown, number, string]> = [
      [{ items: [{ sku_id: milk, quantity: 0 }], reason: 'x' }, 400, '/body/items/0/quantity'],
      [{ items: [{ sku_id: milk, quantity: -1 }], reason: 'x' }, 400, '/body/items/0/quantity'],
      [{ items: [{ sku_id: milk, quantity: 1.5 }], reason: 'x' }, 400, '/body/items/0/quantity'],
      [{ items: [], reason: 'x' }, 400, '/body/items'],
      [{ items: [{ sku_id: milk, quantity: 1 }] }, 400, '/body'],
      [{ items: [{ sku_id: milk, quantity: 1 }], reason: '' }, 400, '/body/reason'],
      [{ items: [{ sku_id: milk, quantity: 1 }, { sku_id: bread, quantity: 1 }], reason: 'x' }, 400, '/body/items/1/sku_id'],
      [{ items: [{ sku_id: randomUUID(), quantity: 1 }], reason: 'x' }, 400, '/body/items/0/sku_id'],
      [{ items: [{ sku_id: 'not-a-uuid', quantity: 1 }], reason: 'x' }, 400, '/body/items/0/sku_id'],
      [{ items: [{ sku_id: milk, quantity: 1, unit_price: 5 }], reason: 'x' }, 400, '/body/items/0'],
      [{ items: [{ sku_id: milk, quantity: 1 }], reason: 'x', client_created_at: 'yesterday' }, 400, '/body/client_created_at'],
      [{ items: [{ sku_id: milk, quantity: 4 }], reason: 'x' }, 409, ''],
    ];
    for (const [body, status, path] of cases) {
      const response = await owner.post(`/v1/sales/${sale.id}/returns`, body, { idempotencyKey: randomUUID() });
      assert.equal(response.status, status, `${JSON.stringify(body)}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
      if (path !== '') assert.ok(JSON.stringify(response.body.errors ?? []).includes(path), `${JSON.stringify(body)} names ${path}: ${JSON.stringify(response.body)}`);
    }
    // an unknown sale is 404
    assert.equal((await giveBack(randomUUID(), [{ sku_id: milk, quantity: 1 }])).status, 404);
    assert.deepEqual(await rowCounts(), before);
  });

  it('concurrent returns of one sale never take back more than was sold', async () => {
    // Given a sale of 5 milk
    const sale = await sell([{ sku_id: milk, quantity: 5, unit_price: 120 }]);
    const milkBefore = await balanceAndLedger(t, tenantId, storeId, milk);
    // When 12 tills each take one back at once
    const responses = await Promise.all(Array.from({ length: 12 }, () => giveBack(sale.id, [{ sku_id: milk, quantity: 1 }])));
    // Then exactly 5 are taken back, the others refused as exceeding the sale
    const statuses = responses.map((response) => response.status).sort();
    assert.deepEqual(statuses, [...Array(5).fill(201), ...Array(7).fill(409)], JSON.stringify(responses.map((r) => r.body)));
    assert.ok(responses.filter((r) => r.status === 409).every((r) => r.body.code === 'return_exceeds_sale'));
    // And the rows say so
    const { rows } = await t.admin.query(
      `SELECT count(*)::int AS returns, sum(r.refund_total)::int AS refunds, array_agg(r.return_number ORDER BY r.return_number) AS numbers,
              (SELECT sum(quantity)::int FROM sale_return_items WHERE tenant_id = $1 AND sale_id = $2) AS quantity,
              (SELECT returned_total::int FROM sales WHERE tenant_id = $1 AND id = $2) AS returned_total
       FROM sale_returns r WHERE r.tenant_id = $1 AND r.sale_id = $2`,
      [tenantId, sale.id],
    );
    assert.deepEqual(rows, [{ returns: 5, refunds: 600, numbers: [1, 2, 3, 4, 5], quantity: 5, returned_total: 600 }]);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), { balance: milkBefore.balance + 5, ledger: milkBefore.ledger + 5 });
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    await noFindings();
  });

  it('concurrent returns and a void of one sale: stock and money come back exactly once', async () => {
    const sale = await sell([{ sku_id: bread, quantity: 6, unit_price: 90 }]);
    const breadBefore = await balanceAndLedger(t, tenantId, storeId, bread);
    const [voided, ...returns] = await Promise.all([
      owner.post(`/v1/sales/${sale.id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() }),
      ...Array.from({ length: 6 }, () => giveBack(sale.id, [{ sku_id: bread, quantity: 2 }])),
    ]);
    assert.equal(voided.status, 200);
    const taken = returns.filter((response) => response.status === 201).length;
    assert.ok(returns.every((response) => response.status === 201 || (response.status === 409 && ['return_exceeds_sale', 'invalid_transition'].includes(response.body.code))), JSON.stringify(returns.map((r) => r.body)));
    assert.ok(taken <= 3);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, bread), { balance: breadBefore.balance + 6, ledger: breadBefore.ledger + 6 });
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    await noFindings();
  });

  it('idempotent: the same key replays the return, a different body under it is 422, the same key sent concurrently makes one return', async () => {
    const sale = await sell([{ sku_id: milk, quantity: 10, unit_price: 120 }]);
    const key = randomUUID();
    const first = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { key });
    assert.equal(first.status, 201);
    const before = await rowCounts();
    const again = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { key });
    assert.equal(again.status, 201);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, first.body);
    const other = await giveBack(sale.id, [{ sku_id: milk, quantity: 2 }], { key });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.deepEqual(await rowCounts(), before);
    // kept as long as the return, like a sale's key
    const kept = await t.admin.query(`SELECT expires_at = 'infinity' AS forever FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.deepEqual(kept.rows, [{ forever: true }]);

    const concurrentKey = randomUUID();
    const responses = await Promise.all(Array.from({ length: 8 }, () => giveBack(sale.id, [{ sku_id: milk, quantity: 3 }], { key: concurrentKey })));
    assert.ok(responses.every((r) => r.status === 201 || (r.status === 409 && r.body.code === 'idempotency_key_in_flight')), JSON.stringify(responses.map((r) => r.body)));
    const made = new Set(responses.filter((r) => r.status === 201).map((r) => r.body.id));
    assert.equal(made.size, 1);
    const { rows } = await t.admin.query(`SELECT count(*)::int AS n, sum(refund_total)::int AS refunds FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2`, [tenantId, sale.id]);
    assert.deepEqual(rows, [{ n: 2, refunds: 120 + 360 }]);
  });

  it('another store\'s or tenant\'s sale is 404; a cashier may not (403); a manager may', async () => {
    const sale = await sell([{ sku_id: milk, quantity: 2, unit_price: 120 }]);
    const otherStore = await givenStore(owner, 'R2');
    const scoped = await givenToken(t, owner, 'manager', [otherStore]);
    const { owner: stranger } = await t.newTenant();
    const cashier = await givenToken(t, owner, 'cashier');
    const before = await rowCounts();
    assert.equal((await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { client: scoped })).status, 404);
    assert.equal((await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { client: stranger })).status, 404);
    const forbidden = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { client: cashier });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.code, 'forbidden');
    assert.deepEqual(await rowCounts(), before);
    const manager = await givenToken(t, owner, 'manager', [storeId]);
    assert.equal((await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], { client: manager })).status, 201);
  });

  it('card and credit sales: the refund leaves the clearing account, or the customer\'s receivable', async () => {
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Tab' })).body.id;
    const card = await sell([{ sku_id: milk, quantity: 2, unit_price: 120 }], { payment_method: 'card' });
    const credit = await sell([{ sku_id: milk, quantity: 2, unit_price: 120 }], { payment_method: 'credit', customer_id: customer });
    assert.equal((await giveBack(card.id, [{ sku_id: milk, quantity: 1 }])).status, 201);
    assert.equal((await giveBack(credit.id, [{ sku_id: milk, quantity: 1 }])).status, 201);
    assert.deepEqual(await saleMoney(card.id), { card_clearing: 120, sales_revenue: -120 });
    assert.deepEqual(await saleMoney(credit.id), { [`party/${customer}`]: 120, sales_revenue: -120 });
    await noFindings();
  });

  it('the day\'s settlement shows cash refunds as cash_returns, and expected cash takes them out', async () => {
    const { owner: shopOwner, tenantId: shop } = await t.newTenant();
    const store = await givenStore(shopOwner, 'S');
    const sku = await givenSku(shopOwner, 'TEA', 'piece', 250);
    await givenStock(shopOwner, store, [{ sku_id: sku, quantity: 10 }]);
    const sale = (await shopOwner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 4, unit_price: 250 }] })).body;
    const voidedSale = (await shopOwner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 1, unit_price: 250 }] })).body;
    assert.equal((await shopOwner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: sku, quantity: 1 }], reason: 'one back' })).status, 201);
    assert.equal((await shopOwner.post(`/v1/sales/${voidedSale.id}/void`, { reason: 'gone' })).status, 200);
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    const settlement = await shopOwner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 750 });
    assert.equal(settlement.status, 201, JSON.stringify(settlement.body));
    assert.equal(settlement.body.cash_sales, 1250);
    assert.equal(settlement.body.cash_voids, 250);
    assert.equal(settlement.body.cash_returns, 250);
    assert.equal(settlement.body.other_cash, 0);
    assert.equal(settlement.body.expected_cash, 750); // float 0 + 1,250 − 250 − 250
    assert.equal(settlement.body.variance, 0);
    const { rows } = await t.admin.query(`SELECT cash_returns::int FROM settlements WHERE tenant_id = $1`, [shop]);
    assert.deepEqual(rows, [{ cash_returns: 250 }]);
    assert.deepEqual(await integrityFindings(t.admin, shop), []);
    // A cashier's blind count hides the figure like the others
    const cashier = await givenToken(t, shopOwner, 'cashier');
    const seen = await cashier.get(`/v1/settlements/${settlement.body.id}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.body.cash_returns, null);
  });

  it('a SKU sold as workshop pieces is returned by naming its pieces: a quantity for it is 400 at its line, nothing written; the sale\'s other lines are returned', async () => {
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id;
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 3000 }] }, { idempotencyKey: randomUUID() });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const piece = received.body.pieces[0].id;
    const sale = await sell([{ sku_id: cloth, piece_ids: [piece], unit_price: 500 }, { sku_id: milk, quantity: 2, unit_price: 120 }] as unknown as Line[]);
    const before = await rowCounts();
    const refused = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }, { sku_id: cloth, quantity: 1000 }]);
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'validation_failed');
    assert.deepEqual(refused.body.errors.map((error: { path: string }) => error.path), ['/body/items/1/piece_ids']);
    assert.deepEqual(await rowCounts(), before);
    const milkBack = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }]);
    assert.equal(milkBack.status, 201, JSON.stringify(milkBack.body));
    assert.deepEqual(milkBack.body.remaining, [
      { sku_id: cloth, sold: 3000, returned: 0, returnable: 3000, returnable_piece_ids: [piece] },
      { sku_id: milk, sold: 2, returned: 1, returnable: 1, returnable_piece_ids: [] },
    ]);
    // the void returns the piece and what is left of the milk
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'rest' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal((await t.admin.query(`SELECT status FROM pieces WHERE id = $1`, [piece])).rows[0].status, 'in_stock');
    await noFindings();
  });

  it('a return a till queued offline sends client_created_at: kept on the return, its refund booked on the till\'s day but never before the sale\'s', async () => {
    const sale = await sell([{ sku_id: milk, quantity: 2, unit_price: 120 }]);
    const yesterday = new Date(Date.now() - 86_400_000).toISOString();
    const response = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: milk, quantity: 1 }], reason: 'queued', client_created_at: yesterday }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.body.client_created_at, yesterday);
    const { rows } = await t.admin.query(
      `SELECT r.business_date::text = s.business_date::text AS same_day FROM journal_entries r, journal_entries s
       WHERE r.tenant_id = $1 AND r.op_id = $2 AND s.tenant_id = $1 AND s.subject_id = $3 AND s.kind = 'sale'`,
      [tenantId, response.body.op_id, sale.id],
    );
    assert.deepEqual(rows, [{ same_day: true }]);
    assert.equal((await owner.get(`/v1/sales/${sale.id}`)).body.returns[0].client_created_at, yesterday);
    await noFindings();
  });

  it('daily figures: revenue is net of returns on the sale\'s day, and the next catch-up counts a return made after that day was rolled up', async () => {
    const { owner: shopOwner, tenantId: shop } = await t.newTenant();
    const store = await givenStore(shopOwner, 'A');
    const sku = await givenSku(shopOwner, 'TEA', 'piece', 250);
    await givenStock(shopOwner, store, [{ sku_id: sku, quantity: 10 }]);
    const catchUp = async () => {
      const input = { tenantId: shop, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `catch-up-${randomUUID()}`, fingerprint: randomUUID() };
      const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }));
      assert.equal(outcome.status, 200, JSON.stringify(outcome.body));
      return outcome.body as { days: string[] };
    };
    const figures = async () =>
      (await t.admin.query(`SELECT sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1`, [shop])).rows;
    const first = (await shopOwner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: sku, quantity: 4, unit_price: 250 }] })).body;
    const second = (await shopOwner.post('/v1/sales', { store_id: store, payment_method: 'card', items: [{ sku_id: sku, quantity: 2, unit_price: 250 }] })).body;
    await catchUp();
    assert.deepEqual(await figures(), [{ sales_count: 2, voided_count: 0, revenue: 1500 }]);
    // a return after the day was rolled up: the figures do not count it yet, and the check waits for the next run (stale, not wrong)
    assert.equal((await shopOwner.post(`/v1/sales/${first.id}/returns`, { items: [{ sku_id: sku, quantity: 1 }], reason: 'one back' })).status, 201);
    assert.deepEqual(await integrityFindings(t.admin, shop), []);
    assert.equal((await catchUp()).days.length, 1);
    assert.deepEqual(await figures(), [{ sales_count: 2, voided_count: 0, revenue: 1250 }]);
    // a void of the other sale after a return of it: the sale leaves the revenue whole
    assert.equal((await shopOwner.post(`/v1/sales/${second.id}/returns`, { items: [{ sku_id: sku, quantity: 1 }], reason: 'one back' })).status, 201);
    assert.equal((await shopOwner.post(`/v1/sales/${second.id}/void`, { reason: 'the rest' })).status, 200);
    await catchUp();
    assert.deepEqual(await figures(), [{ sales_count: 2, voided_count: 1, revenue: 750 }]);
    // nothing new: nothing recomputed, every change seen
    assert.deepEqual((await catchUp()).days, []);
    const { rows } = await t.admin.query(
      `SELECT bool_and(s.returned_xid IS NOT NULL AND pg_visible_in_snapshot(s.returned_xid, p.changes_snapshot)) AS seen
       FROM daily_sales_rollup_progress p JOIN sales s ON s.tenant_id = p.tenant_id WHERE p.tenant_id = $1`,
      [shop],
    );
    assert.deepEqual(rows, [{ seen: true }]);
    assert.deepEqual(await integrityFindings(t.admin, shop), []);
  });
});
