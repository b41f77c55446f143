import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { asAppInTenant, withTriggersOff } from '../../test/support/database.js';
import { accountMoved, findingsAfter, integrityFindings } from '../../test/support/integrity.js';

/**
 * Returns to a supplier (POST /v1/purchases/{id}/returns): goods of a
 * purchase sent back, credited at the purchase's unit costs, stock out by a
 * conditional decrement, a `purchase_return` entry (debit the supplier's
 * payable, credit the store's inventory). Through HTTP, rows counted after.
 */
describe('returns to a supplier: POST /v1/purchases/{id}/returns, GET /v1/purchases/{id}', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let otherStore: string;
  let supplier: string;
  let cheese: string; // kg
  let jars: string; // piece
  let rope: string; // metre

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'R1', name: 'Returns one' })).body.id;
    otherStore = (await owner.post('/v1/stores', { code: 'R2', name: 'Returns two' })).body.id;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Dairy', code: 'S-1' })).body.id;
    cheese = (await owner.post('/v1/skus', { code: 'CHEESE', name: 'Cheese', unit: 'kg', price: 2000 })).body.id;
    jars = (await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    rope = (await owner.post('/v1/skus', { code: 'ROPE', name: 'Rope', unit: 'metre', price: 90 })).body.id;
  });
  after(() => t.close());

  type Line = { sku_id: string; quantity: number; unit_cost: number };
  const buy = async (items: Line[], storeId: string = store, supplierId: string = supplier) => {
    const response = await owner.post(`/v1/stores/${storeId}/stock/receipts`, { supplier_id: supplierId, reference: 'DN-7', items }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return { op_id: response.body.op_id as string, ...(response.body.purchase as { id: string; total: number; entry_id: string | null }) };
  };
  const sendBack = (purchaseId: string, items: Array<{ sku_id: string; quantity: number }>, options: { key?: string; client?: ApiClient; reason?: string; reference?: string } = {}) =>
    (options.client ?? owner).post(
      `/v1/purchases/${purchaseId}/returns`,
      { items, reason: options.reason ?? 'damaged in transit', ...(options.reference ? { reference: options.reference } : {}) },
      { idempotencyKey: options.key ?? randomUUID() },
    );

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS stock_ledger,
                (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1)::bigint AS stock,
                (SELECT count(*) FROM purchase_returns WHERE tenant_id = $1)::int AS returns,
                (SELECT count(*) FROM purchase_return_lines WHERE tenant_id = $1)::int AS return_lines,
                (SELECT coalesce(sum(returned_total), 0) FROM purchases WHERE tenant_id = $1)::bigint AS returned_total,
                (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
                (SELECT coalesce(sum(debit_total), 0) FROM accounts WHERE tenant_id = $1)::bigint AS debits`,
        [tenantId],
      )
    ).rows[0];
  const outstanding = async (partyId: string): Promise<number> => {
    const list = await owner.get('/v1/ledger/suppliers?limit=500');
    assert.equal(list.status, 200);
    return list.body.items.find((item: { party_id: string }) => item.party_id === partyId).outstanding;
  };
  const inventoryBalance = async (storeId: string): Promise<number> => {
    const list = await owner.get(`/v1/stores/${storeId}/accounts`);
    assert.equal(list.status, 200);
    return list.body.items.find((item: { kind: string }) => item.kind === 'inventory').balance;
  };
  const stockOf = async (storeId: string, skuId: string): Promise<number> =>
    Number((await t.admin.query(`SELECT coalesce((SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3), 0)::bigint AS q`, [tenantId, storeId, skuId])).rows[0].q);

  it('sends part of a purchase back: stock out, the supplier credited at the purchase\'s costs, one balanced purchase_return entry', async () => {
    const bought = await buy([
      { sku_id: cheese, quantity: 1234, unit_cost: 1500 }, // 1851
      { sku_id: jars, quantity: 12, unit_cost: 45 }, // 540
      { sku_id: jars, quantity: 3, unit_cost: 50 }, // 150: a SKU on two lines keeps both costs
      { sku_id: rope, quantity: 2500, unit_cost: 1201 }, // 3003
    ]);
    const owed = await outstanding(supplier);
    const inventory = await inventoryBalance(store);
    const jarsBefore = await stockOf(store, jars);
    const cheeseBefore = await stockOf(store, cheese);

    const response = await sendBack(bought.id, [{ sku_id: jars, quantity: 10 }, { sku_id: cheese, quantity: 200 }, { sku_id: jars, quantity: 3 }], { reference: 'CN-55', reason: 'broken jars, mouldy cheese' });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const back = response.body;
    // Jars: 13 summed, 12 from line 2 at 45, then 1 from line 3 at 50; cheese 200 g at 15.00/kg = 300.
    assert.deepEqual(back.lines, [
      { line_number: 1, sku_id: cheese, quantity: 200, unit_cost: 1500, line_total: 300 },
      { line_number: 2, sku_id: jars, quantity: 12, unit_cost: 45, line_total: 540 },
      { line_number: 3, sku_id: jars, quantity: 1, unit_cost: 50, line_total: 50 },
    ]);
    assert.equal(back.credit_total, 890);
    assert.deepEqual([back.purchase_id, back.store_id, back.supplier_id, back.return_number, back.reason, back.reference], [bought.id, store, supplier, 1, 'broken jars, mouldy cheese', 'CN-55']);
    assert.equal(back.purchase_returned_total, 890);
    assert.deepEqual(back.remaining, [
      { sku_id: cheese, purchased: 1234, returned: 200, returnable: 1034 },
      { sku_id: jars, purchased: 15, returned: 13, returnable: 2 },
      { sku_id: rope, purchased: 2500, returned: 0, returnable: 2500 },
    ]);
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    assert.equal(back.business_date, today);

    // Money: the supplier's outstanding and the store's inventory drop by the credit.
    assert.equal(await outstanding(supplier), owed - 890);
    assert.equal(await inventoryBalance(store), inventory - 890);
    const postings = await t.admin.query(
      `SELECT a.key, p.amount::int, e.kind, e.subject_type, e.subject_id, e.store_id, e.op_id, e.memo FROM postings p
       JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
       JOIN journal_entries e ON e.tenant_id = p.tenant_id AND e.id = p.entry_id
       WHERE p.tenant_id = $1 AND p.entry_id = $2 ORDER BY a.key`,
      [tenantId, back.entry_id],
    );
    assert.deepEqual(postings.rows.map((row) => [row.key, row.amount]), [[`party/${supplier}`, 890], [`store/${store}/inventory`, -890]]);
    assert.ok(postings.rows.every((row) => row.kind === 'purchase_return' && row.subject_type === 'purchase_return' && row.subject_id === back.id && row.store_id === store && row.op_id === back.op_id && row.memo === 'CN-55'));

    // Stock: out of the purchase's store through supplier_return rows, with the reason.
    assert.equal(await stockOf(store, jars), jarsBefore - 13);
    assert.equal(await stockOf(store, cheese), cheeseBefore - 200);
    const ledger = await t.admin.query(`SELECT sku_id, quantity_change::int, kind, reason, store_id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY sku_id`, [tenantId, back.op_id]);
    assert.deepEqual(
      ledger.rows.map((row) => [row.sku_id, row.quantity_change, row.kind, row.reason, row.store_id]).sort(),
      [[cheese, -200, 'supplier_return', 'broken jars, mouldy cheese', store], [jars, -13, 'supplier_return', 'broken jars, mouldy cheese', store]].sort(),
    );
    // Every row of the return carries its operation.
    const ops = await t.admin.query(
      `SELECT (SELECT count(*) FROM purchase_returns WHERE tenant_id = $1 AND op_id = $2)::int AS returns,
              (SELECT count(*) FROM purchase_return_lines WHERE tenant_id = $1 AND op_id = $2)::int AS lines,
              (SELECT count(*) FROM journal_entries WHERE tenant_id = $1 AND op_id = $2)::int AS entries,
              (SELECT count(*) FROM events WHERE tenant_id = $1 AND op_id = $2)::int AS events`,
      [tenantId, back.op_id],
    );
    assert.deepEqual(ops.rows[0], { returns: 1, lines: 3, entries: 1, events: 2 });

    // The operation names what it wrote.
    const operation = await owner.get(`/v1/operations/${back.op_id}`);
    assert.equal(operation.status, 200);
    assert.equal(operation.body.type, 'purchase.return');
    assert.equal(operation.body.store_id, store);
    const effects = operation.body.effects.map((effect: { table: string; id: string }) => `${effect.table}:${effect.id}`);
    for (const expected of [`purchase_returns:${back.id}`, `purchase_return_lines:${back.id}/1`, `purchase_return_lines:${back.id}/3`, `purchases:${bought.id}`, `journal_entries:${back.entry_id}`, `stock_balances:${store}/${jars}`]) {
      assert.ok(effects.includes(expected), `${expected} in ${effects.join(', ')}`);
    }

    // GET /v1/purchases/{id}: the lines with what was sent back, the return.
    const got = await owner.get(`/v1/purchases/${bought.id}`);
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.deepEqual(
      got.body.lines.map((line: { line_number: number; quantity: number; returned_quantity: number; line_total: number }) => [line.line_number, line.quantity, line.returned_quantity, line.line_total]),
      [[1, 1234, 200, 1851], [2, 12, 12, 540], [3, 3, 1, 150], [4, 2500, 0, 3003]],
    );
    assert.deepEqual([got.body.total, got.body.returned_total, got.body.entry_id, got.body.business_date, got.body.reference, got.body.op_id, got.body.store_id], [bought.total, 890, bought.entry_id, today, 'DN-7', bought.op_id, store]);
    const { purchase_returned_total: _t, remaining: _r, ...shown } = back;
    assert.deepEqual(got.body.returns, [shown]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a line sent back in parts credits exactly its line total (cumulative rounding); more than is left is 409 return_exceeds_purchase, nothing written', async () => {
    const bought = await buy([{ sku_id: cheese, quantity: 3, unit_cost: 1500 }, { sku_id: jars, quantity: 2, unit_cost: 99 }]); // 3 g at 15.00/kg: 4.5 → 5
    const owed = await outstanding(supplier);
    const credits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await sendBack(bought.id, [{ sku_id: cheese, quantity: 1 }]);
      assert.equal(response.status, 201, JSON.stringify(response.body));
      assert.equal(response.body.return_number, i + 1);
      credits.push(response.body.credit_total);
    }
    assert.deepEqual(credits, [2, 1, 2]);
    assert.equal(await outstanding(supplier), owed - 5);

    const before = await counts();
    const over = await sendBack(bought.id, [{ sku_id: jars, quantity: 1 }, { sku_id: cheese, quantity: 1 }]);
    assert.equal(over.status, 409, JSON.stringify(over.body));
    assert.equal(over.body.code, 'return_exceeds_purchase');
    assert.match(over.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.deepEqual(over.body.returnable, [{ sku_id: jars, requested: 1, returnable: 2 }, { sku_id: cheese, requested: 1, returnable: 0 }]);
    assert.deepEqual(await counts(), before);
    const got = (await owner.get(`/v1/purchases/${bought.id}`)).body;
    assert.deepEqual([got.returned_total, got.returns.length, got.lines[0].returned_quantity], [5, 3, 3]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('goods sold meanwhile: 409 insufficient_stock with the shortages, nothing written', async () => {
    const shop = (await owner.post('/v1/stores', { code: 'R3', name: 'Returns three' })).body.id;
    const bought = await buy([{ sku_id: jars, quantity: 5, unit_cost: 40 }], shop);
    const sold = await owner.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: jars, quantity: 4, unit_price: 120 }] }, { idempotencyKey: randomUUID() });
    assert.equal(sold.status, 201, JSON.stringify(sold.body));
    const before = await counts();
    const owed = await outstanding(supplier);
    const response = await sendBack(bought.id, [{ sku_id: jars, quantity: 3 }]);
    assert.equal(response.status, 409, JSON.stringify(response.body));
    assert.equal(response.body.code, 'insufficient_stock');
    assert.deepEqual(response.body.shortages, [{ sku_id: jars, requested: 3, available: 1 }]);
    assert.deepEqual(await counts(), before);
    assert.equal(await outstanding(supplier), owed);
    // What is there goes back.
    assert.equal((await sendBack(bought.id, [{ sku_id: jars, quantity: 1 }])).status, 201);
    assert.equal(await stockOf(shop, jars), 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('goods bought at cost 0 go back with no entry and nothing credited', async () => {
    const bought = await buy([{ sku_id: jars, quantity: 2, unit_cost: 0 }]);
    const before = await counts();
    const owed = await outstanding(supplier);
    const response = await sendBack(bought.id, [{ sku_id: jars, quantity: 2 }]);
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.deepEqual([response.body.credit_total, response.body.entry_id, response.body.business_date], [0, null, null]);
    const afterCounts = await counts();
    assert.deepEqual([afterCounts.entries, afterCounts.returns, afterCounts.return_lines], [before.entries, before.returns + 1, before.return_lines + 1]);
    assert.equal(await outstanding(supplier), owed);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a replay answers the first answer and writes nothing twice; the same key with another body is 422', async () => {
    const bought = await buy([{ sku_id: rope, quantity: 5000, unit_cost: 333 }]);
    const key = randomUUID();
    const first = await sendBack(bought.id, [{ sku_id: rope, quantity: 1000 }], { key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const before = await counts();
    const owed = await outstanding(supplier);
    for (let i = 0; i < 3; i++) {
      const replay = await sendBack(bought.id, [{ sku_id: rope, quantity: 1000 }], { key });
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(replay.body, first.body);
    }
    assert.deepEqual(await counts(), before);
    assert.equal(await outstanding(supplier), owed);
    const other = await sendBack(bought.id, [{ sku_id: rope, quantity: 1001 }], { key });
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.deepEqual(await counts(), before);
  });

  it('bad inputs are problem+json at their field (404 for an unknown purchase), and nothing is written', async () => {
    const bought = await buy([{ sku_id: jars, quantity: 6, unit_cost: 10 }]);
    const long = 'x'.repeat(501);
    const cases: Array<[string, string, unknown, number, string | null]> = [
      ['an unknown purchase', `/v1/purchases/${randomUUID()}/returns`, { items: [{ sku_id: jars, quantity: 1 }], reason: 'r' }, 404, null],
      ['a purchase id that is not a uuid', '/v1/purchases/nope/returns', { items: [{ sku_id: jars, quantity: 1 }], reason: 'r' }, 400, '/params/id'],
      ['a SKU not on the purchase', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1 }, { sku_id: rope, quantity: 1 }], reason: 'r' }, 400, '/body/items/1/sku_id'],
      ['an unknown SKU', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: randomUUID(), quantity: 1 }], reason: 'r' }, 400, '/body/items/0/sku_id'],
      ['a quantity of 0', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 0 }], reason: 'r' }, 400, '/body/items/0/quantity'],
      ['a negative quantity', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: -2 }], reason: 'r' }, 400, '/body/items/0/quantity'],
      ['a fractional quantity', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1.5 }], reason: 'r' }, 400, '/body/items/0/quantity'],
      ['no items', `/v1/purchases/${bought.id}/returns`, { items: [], reason: 'r' }, 400, '/body/items'],
      ['no reason', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1 }] }, 400, '/body/reason'],
      ['an empty reason', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1 }], reason: '' }, 400, '/body/reason'],
      ['a reason too long', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1 }], reason: long }, 400, '/body/reason'],
      ['an unknown field', `/v1/purchases/${bought.id}/returns`, { items: [{ sku_id: jars, quantity: 1, unit_cost: 5 }], reason: 'r' }, 400, '/body/items/0'],
    ];
    const before = await counts();
    for (const [name, path, body, status, field] of cases) {
      const response = await owner.post(path, body, { idempotencyKey: randomUUID() });
      assert.equal(response.status, status, `${name}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/, name);
      if (field !== null) {
        assert.ok(
          (response.body.errors ?? []).some((error: { path: string }) => error.path === field || error.path.startsWith(`${field}/`)),
          `${name}: ${field} in ${JSON.stringify(response.body.errors)}`,
        );
      }
      assert.deepEqual(await counts(), before, name);
    }
    assert.equal((await owner.get(`/v1/purchases/${randomUUID()}`)).status, 404);
  });

  it('scope and permission: another store\'s purchase is 404 to a store-limited token; a cashier may neither send back nor read', async () => {
    const elsewhere = await buy([{ sku_id: jars, quantity: 4, unit_cost: 30 }], otherStore);
    const here = await buy([{ sku_id: jars, quantity: 4, unit_cost: 30 }], store);
    const scoped = t.client((await owner.post('/v1/tokens', { name: 'r1-manager', role: 'manager', store_ids: [store] })).body.token);
    const cashier = t.client((await owner.post('/v1/tokens', { name: 'cashier', role: 'cashier' })).body.token);
    const auditor = t.client((await owner.post('/v1/tokens', { name: 'auditor', role: 'auditor' })).body.token);
    const before = await counts();
    assert.equal((await sendBack(elsewhere.id, [{ sku_id: jars, quantity: 1 }], { client: scoped })).status, 404);
    assert.equal((await scoped.get(`/v1/purchases/${elsewhere.id}`)).status, 404);
    assert.equal((await sendBack(here.id, [{ sku_id: jars, quantity: 1 }], { client: cashier })).status, 403);
    assert.equal((await cashier.get(`/v1/purchases/${here.id}`)).status, 403);
    assert.equal((await sendBack(here.id, [{ sku_id: jars, quantity: 1 }], { client: auditor })).status, 403);
    assert.deepEqual(await counts(), before);
    assert.equal((await auditor.get(`/v1/purchases/${here.id}`)).status, 200);
    const own = await sendBack(here.id, [{ sku_id: jars, quantity: 1 }], { client: scoped });
    assert.equal(own.status, 201, JSON.stringify(own.body));
    assert.equal((await scoped.get(`/v1/purchases/${here.id}`)).body.returned_total, 30);
  });

  it('a receipt is still not reverted (422): a supplier return is how a purchase is corrected', async () => {
    const bought = await buy([{ sku_id: jars, quantity: 2, unit_cost: 70 }]);
    const before = await counts();
    const revert = await owner.post(`/v1/operations/${bought.op_id}/revert`, {}, { idempotencyKey: randomUUID() });
    assert.equal(revert.status, 422);
    assert.deepEqual([revert.body.code, revert.body.operation_type], ['unprocessable', 'stock.receive']);
    assert.match(revert.body.detail, /POST \/v1\/purchases\/\{id\}\/returns/);
    assert.deepEqual(await counts(), before);
    const owed = await outstanding(supplier);
    assert.equal((await sendBack(bought.id, [{ sku_id: jars, quantity: 2 }], { reason: 'recorded by mistake' })).status, 201);
    assert.equal(await outstanding(supplier), owed - 140);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('concurrent returns of one purchase, racing sales of the same SKU, never send back more than was bought nor take stock below zero', async () => {
    const busy = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Busy dairy', code: 'S-BUSY' })).body.id;
    const shop = (await owner.post('/v1/stores', { code: 'R4', name: 'Race' })).body.id;
    // 60 jars on two lines at different costs, 1,500 g of cheese.
    const bought = await buy([{ sku_id: jars, quantity: 40, unit_cost: 33 }, { sku_id: cheese, quantity: 1500, unit_cost: 1999 }, { sku_id: jars, quantity: 20, unit_cost: 41 }], shop, busy);
    const returns = Array.from({ length: 24 }, (_, i) => (i % 3 === 2 ? [{ sku_id: cheese, quantity: 100 + i }] : [{ sku_id: jars, quantity: 1 + (i % 4) }, ...(i % 2 === 0 ? [{ sku_id: cheese, quantity: 37 }] : [])]));
    const sales = Array.from({ length: 16 }, (_, i) => [{ sku_id: jars, quantity: 1 + (i % 3), unit_price: 120 }]);
    const results = await Promise.all([
      ...returns.map((items) => sendBack(bought.id, items).then((response) => ({ kind: 'return' as const, response }))),
      ...sales.map((items) => owner.post('/v1/sales', { store_id: shop, payment_method: 'cash', items }, { idempotencyKey: randomUUID() }).then((response) => ({ kind: 'sale' as const, response }))),
    ]);
    for (const { kind, response } of results) {
      assert.ok(
        response.status === 201 || (response.status === 409 && ['insufficient_stock', 'return_exceeds_purchase'].includes(response.body.code)),
        `${kind}: ${response.status} ${JSON.stringify(response.body)}`,
      );
    }
    const accepted = results.filter((r) => r.kind === 'return' && r.response.status === 201).map((r) => r.response.body);
    assert.ok(accepted.length > 0, 'some returns went through');
    // 71 jars asked for (40 to send back, 31 to sell) of 60: some request was refused, whatever the order.
    assert.ok(results.some((r) => r.response.status === 409), 'the jars ran out');
    // Returned never exceeds bought, per line, by the rows.
    const perLine = await t.admin.query(
      `SELECT l.line_number, l.quantity::int AS bought, coalesce(sum(rl.quantity), 0)::int AS returned, coalesce(sum(rl.line_total), 0)::int AS credited
       FROM purchase_lines l LEFT JOIN purchase_return_lines rl ON rl.tenant_id = l.tenant_id AND rl.purchase_id = l.purchase_id AND rl.line_number = l.line_number
       WHERE l.tenant_id = $1 AND l.purchase_id = $2 GROUP BY l.line_number, l.quantity ORDER BY l.line_number`,
      [tenantId, bought.id],
    );
    for (const row of perLine.rows) assert.ok(row.returned <= row.bought, JSON.stringify(row));
    const credited = accepted.reduce((sum, body) => sum + body.credit_total, 0);
    assert.equal(perLine.rows.reduce((sum, row) => sum + row.credited, 0), credited);
    // The return numbers are 1..n, one each.
    assert.deepEqual(accepted.map((body) => body.return_number).sort((a, b) => a - b), accepted.map((_, i) => i + 1));
    // Stock: never negative, the ledger's sum is the balance, and it is what came in less what went out.
    const stock = await t.admin.query(
      `SELECT b.sku_id, b.quantity::int AS balance, (SELECT sum(quantity_change) FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id)::int AS ledger
       FROM stock_balances b WHERE b.tenant_id = $1 AND b.store_id = $2`,
      [tenantId, shop],
    );
    for (const row of stock.rows) {
      assert.ok(row.balance >= 0, JSON.stringify(row));
      assert.equal(row.balance, row.ledger);
    }
    const soldJars = results.filter((r) => r.kind === 'sale' && r.response.status === 201).reduce((sum, r) => sum + r.response.body.items[0].quantity, 0);
    const returnedJars = perLine.rows.filter((row) => row.line_number !== 2).reduce((sum, row) => sum + row.returned, 0);
    assert.equal(stock.rows.find((row) => row.sku_id === jars).balance, 60 - soldJars - returnedJars);
    assert.equal(stock.rows.find((row) => row.sku_id === cheese).balance, 1500 - perLine.rows.find((row) => row.line_number === 2).returned);
    // Money: the supplier's account equals its postings; it is owed the purchase less the credits; every entry balances.
    const account = (
      await t.admin.query(
        `SELECT a.balance::int, (SELECT coalesce(sum(p.amount), 0) FROM postings p WHERE p.tenant_id = a.tenant_id AND p.account_id = a.id)::int AS postings_sum
         FROM accounts a WHERE a.tenant_id = $1 AND a.party_id = $2`,
        [tenantId, busy],
      )
    ).rows[0];
    assert.deepEqual(account, { balance: -(bought.total - credited), postings_sum: -(bought.total - credited) });
    assert.equal(await outstanding(busy), bought.total - credited);
    const unbalanced = await t.admin.query(
      `SELECT e.id FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id WHERE e.tenant_id = $1 GROUP BY e.id HAVING sum(p.amount) <> 0`,
      [tenantId],
    );
    assert.deepEqual(unbalanced.rows, []);
    assert.equal(Number((await owner.get(`/v1/purchases/${bought.id}`)).body.returned_total), credited);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('concurrent returns that each fit but together exceed the purchase: exactly what was bought goes back, the rest is 409 return_exceeds_purchase', async () => {
    const shop = (await owner.post('/v1/stores', { code: 'R5', name: 'Cap race' })).body.id;
    // Plenty of stock besides the purchase: only the purchase's cap can stop a return.
    assert.equal((await owner.post(`/v1/stores/${shop}/stock/receipts`, { items: [{ sku_id: jars, quantity: 100 }] }, { idempotencyKey: randomUUID() })).status, 201);
    const bought = await buy([{ sku_id: jars, quantity: 30, unit_cost: 7 }, { sku_id: jars, quantity: 20, unit_cost: 9 }], shop);
    const owed = await outstanding(supplier);
    const results = await Promise.all(Array.from({ length: 12 }, () => sendBack(bought.id, [{ sku_id: jars, quantity: 10 }])));
    const accepted = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status !== 201);
    assert.equal(accepted.length, 5, JSON.stringify(results.map((r) => [r.status, r.body.code])));
    for (const r of refused) {
      assert.equal(r.status, 409);
      assert.equal(r.body.code, 'return_exceeds_purchase');
      assert.deepEqual(r.body.returnable, [{ sku_id: jars, requested: 10, returnable: 0 }]);
    }
    assert.deepEqual(accepted.map((r) => r.body.return_number).sort((a, b) => a - b), [1, 2, 3, 4, 5]);
    // Line 1 first (three returns at 7), then line 2 (two at 9): the purchase's total, exactly.
    assert.equal(accepted.reduce((sum, r) => sum + r.body.credit_total, 0), bought.total);
    assert.equal(await outstanding(supplier), owed - bought.total);
    assert.equal(await stockOf(shop, jars), 100);
    const rows = (await t.admin.query(`SELECT count(*)::int AS returns, coalesce(sum(credit_total), 0)::int AS credited FROM purchase_returns WHERE tenant_id = $1 AND purchase_id = $2`, [tenantId, bought.id])).rows[0];
    assert.deepEqual(rows, { returns: 5, credited: 30 * 7 + 20 * 9 });
    assert.equal((await owner.get(`/v1/purchases/${bought.id}`)).body.returned_total, bought.total);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the purchase row keeps what the receipt wrote: only returned_total moves, only up, never past the total, and a purchase is never deleted', async () => {
    const bought = await buy([{ sku_id: jars, quantity: 1, unit_cost: 10 }]);
    // Even the owner of the tables: the trigger holds the receipt's columns, and forbids deletes.
    for (const statement of [`UPDATE purchases SET total = total + 1 WHERE tenant_id = $1 AND id = $2`, `DELETE FROM purchases WHERE tenant_id = $1 AND id = $2`]) {
      await assert.rejects(t.admin.query(statement, [tenantId, bought.id]), /append-only/, statement);
    }
    // The app's login may update returned_total and returned_at only.
    await assert.rejects(asAppInTenant(t.appPool, tenantId, [[`UPDATE purchases SET reference = 'forged' WHERE id = $1`, [bought.id]]]), /permission denied/);
    // Past the total (the CHECK), or down (the trigger).
    await assert.rejects(t.admin.query(`UPDATE purchases SET returned_total = 11, returned_at = now() WHERE tenant_id = $1 AND id = $2`, [tenantId, bought.id]), /returned_total_within_total/);
    assert.equal((await sendBack(bought.id, [{ sku_id: jars, quantity: 1 }])).status, 201);
    await assert.rejects(t.admin.query(`UPDATE purchases SET returned_total = 0, returned_at = now() WHERE tenant_id = $1 AND id = $2`, [tenantId, bought.id]), /only adds to returned_total/);
    const row = (await t.admin.query(`SELECT total::int, returned_total::int, reference FROM purchases WHERE tenant_id = $1 AND id = $2`, [tenantId, bought.id])).rows[0];
    assert.deepEqual(row, { total: 10, returned_total: 10, reference: 'DN-7' });
  });
});

/**
 * purchase_return_matches_lines against corrupted rows. Each corruption
 * leaves every entry balanced and every account equal to its postings, and
 * the stock ledger equal to its balances where it can: the check must
 * report the return.
 */
describe('the integrity of returns to a supplier: purchase_return_matches_lines', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let supplier: string;
  let jars: string;
  let cheese: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'RI', name: 'Return integrity' })).body.id;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Dairy' })).body.id;
    jars = (await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    cheese = (await owner.post('/v1/skus', { code: 'CHEESE', name: 'Cheese', unit: 'kg', price: 2000 })).body.id;
  });
  after(() => t.close());

  const purchaseAndReturn = async (bought: number, unitCost: number, back: number) => {
    const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { supplier_id: supplier, items: [{ sku_id: jars, quantity: bought, unit_cost: unitCost }] }, { idempotencyKey: randomUUID() });
    assert.equal(receipt.status, 201, JSON.stringify(receipt.body));
    const response = await owner.post(`/v1/purchases/${receipt.body.purchase.id}/returns`, { items: [{ sku_id: jars, quantity: back }], reason: 'damaged' }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string; purchase_id: string; entry_id: string; credit_total: number };
  };
  const newFindings = (corrupt: () => Promise<void>) => findingsAfter(t.admin, tenantId, corrupt);
  const moveAccount = (key: string, amount: number) => accountMoved(tenantId, key, amount);

  it('clean returns are not reported', async () => {
    await purchaseAndReturn(5, 100, 2);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a return whose entry is missing (the supplier still owed the credit) is reported', async () => {
    const back = await purchaseAndReturn(4, 50, 1);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE purchase_returns SET entry_id = NULL, credit_total = 0 WHERE tenant_id = $1 AND id = $2`, [tenantId, back.id]],
        [`DELETE FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, back.entry_id]],
        [`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [tenantId, back.entry_id]],
        [`UPDATE accounts SET balance = balance - 50, debit_total = debit_total - 50 WHERE tenant_id = $1 AND key = $2`, [tenantId, `party/${supplier}`]],
        [`UPDATE accounts SET balance = balance + 50, credit_total = credit_total - 50 WHERE tenant_id = $1 AND key = $2`, [tenantId, `store/${store}/inventory`]],
      ]),
    );
    // Its lines still credit 50, and the purchase's returned_total still says so.
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['purchase_return_matches_lines', back.id]]);
  });

  it('an entry that credits the supplier another amount than the return is reported', async () => {
    const back = await purchaseAndReturn(3, 70, 2);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE postings SET amount = CASE WHEN amount > 0 THEN 100 ELSE -100 END WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, back.entry_id]],
        // The supplier's debit and the inventory's credit each 40 smaller (the postings changed, none added).
        [`UPDATE accounts SET balance = balance - 40, debit_total = debit_total - 40 WHERE tenant_id = $1 AND key = $2`, [tenantId, `party/${supplier}`]],
        [`UPDATE accounts SET balance = balance + 40, credit_total = credit_total - 40 WHERE tenant_id = $1 AND key = $2`, [tenantId, `store/${store}/inventory`]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['purchase_return_matches_lines', back.id]]);
    assert.equal((found[0]!.detail as { to_supplier: number }).to_supplier, 100);
  });

  it('a line credited at another cost, or sent back beyond what the purchase bought, is reported', async () => {
    const back = await purchaseAndReturn(2, 25, 1);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE purchase_return_lines SET unit_cost = 30 WHERE tenant_id = $1 AND return_id = $2`, [tenantId, back.id]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['purchase_return_matches_lines', back.id]]);

    const more = await purchaseAndReturn(2, 10, 2);
    const moreFound = await newFindings(() =>
      withTriggersOff(t.admin, [
        // 3 sent back of 2 bought, its credit and entry made to agree with the lie.
        [`UPDATE purchase_return_lines SET quantity = 3, line_total = 30 WHERE tenant_id = $1 AND return_id = $2`, [tenantId, more.id]],
        [`UPDATE purchase_returns SET credit_total = 30 WHERE tenant_id = $1 AND id = $2`, [tenantId, more.id]],
        [`UPDATE postings SET amount = CASE WHEN amount > 0 THEN 30 ELSE -30 END WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, more.entry_id]],
        moveAccount(`party/${supplier}`, 10),
        moveAccount(`store/${store}/inventory`, -10),
      ]),
    );
    assert.ok(moreFound.some((finding) => finding.check === 'purchase_return_matches_lines' && finding.subject === more.id), JSON.stringify(moreFound));
    const detail = moreFound.find((finding) => finding.check === 'purchase_return_matches_lines')!.detail as { lines_off: Array<{ line_returned: number; line_quantity: number }>; stock_off: unknown[] };
    assert.deepEqual([detail.lines_off[0]!.line_returned, detail.lines_off[0]!.line_quantity], [3, 2]);
    assert.equal(detail.stock_off.length, 1, 'the ledger took out 2, the lines say 3');
  });

  it('a return whose stock rows do not take out its lines\' quantities is reported (the balance kept equal to its ledger)', async () => {
    const back = await purchaseAndReturn(6, 5, 3);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE stock_ledger SET quantity_change = -2 WHERE tenant_id = $1 AND op_id = $2`, [tenantId, back.op_id]],
        [`UPDATE stock_ledger SET quantity_after = quantity_after + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND id >= (SELECT id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $4)`, [tenantId, store, jars, back.op_id]],
        [`UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, jars]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['purchase_return_matches_lines', back.id]]);
    assert.deepEqual((found[0]!.detail as { stock_off: unknown }).stock_off, [{ sku_id: jars, lines: 3, ledger: 2, elsewhere: 0 }]);
  });

  it('a purchase whose returned_total is not its returns\' credits, and a purchase_return entry naming no return, are reported', async () => {
    const back = await purchaseAndReturn(2, 40, 1);
    const found = await newFindings(() => withTriggersOff(t.admin, [[`UPDATE purchases SET returned_total = 0 WHERE tenant_id = $1 AND id = $2`, [tenantId, back.purchase_id]]]));
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['purchase_return_matches_lines', back.id]]);

    const gone = await purchaseAndReturn(3, 15, 3);
    const goneFound = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`DELETE FROM purchase_return_lines WHERE tenant_id = $1 AND return_id = $2`, [tenantId, gone.id]],
        [`UPDATE journal_entries SET subject_id = $3 WHERE tenant_id = $1 AND id = $2`, [tenantId, gone.entry_id, randomUUID()]],
      ]),
    );
    const named = goneFound.filter((finding) => finding.check === 'purchase_return_matches_lines').map((finding) => finding.subject).sort();
    // The return without its lines nor its entry, and the entry naming no return.
    assert.deepEqual(named, [gone.id, gone.entry_id].sort());
    assert.ok(goneFound.every((finding) => finding.check === 'purchase_return_matches_lines'), JSON.stringify(goneFound));
  });

  it('a return of kg goods sent back in parts, and the purchase\'s money_purchase_posted, stay clean', async () => {
    const receipt = await owner.post(`/v1/stores/${store}/stock/receipts`, { supplier_id: supplier, items: [{ sku_id: cheese, quantity: 3, unit_cost: 1500 }] }, { idempotencyKey: randomUUID() });
    assert.equal(receipt.status, 201);
    for (let i = 0; i < 3; i++) {
      assert.equal((await owner.post(`/v1/purchases/${receipt.body.purchase.id}/returns`, { items: [{ sku_id: cheese, quantity: 1 }], reason: 'r' }, { idempotencyKey: randomUUID() })).status, 201);
    }
    const found = (await integrityFindings(t.admin, tenantId)).filter((finding) => finding.subject === receipt.body.purchase.id || finding.check === 'money_purchase_posted');
    assert.deepEqual(found, []);
  });
});
