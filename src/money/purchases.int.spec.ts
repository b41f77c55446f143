import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { rollupDailySales } from '../analytics/rollupDailySales.js';
import { runCommand } from '../core/command.js';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { accountMoved, findingsAfter, integrityFindings } from '../../test/support/integrity.js';

/**
 * Purchases: a stock receipt that names a supplier and a unit cost on every
 * line records what we owe the supplier, in the receipt's one transaction
 * (purchase rows + a `purchase` journal entry: debit the store's inventory,
 * credit the supplier's payable). Through HTTP, rows counted afterwards.
 */
describe('purchases: goods received from a supplier on its balance', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let otherStore: string;
  let supplier: string;
  let customer: string;
  let flour: string; // kg
  let jars: string; // piece
  let rope: string; // metre
  let pieceTracked: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'P1', name: 'Purchases one' })).body.id;
    otherStore = (await owner.post('/v1/stores', { code: 'P2', name: 'Purchases two' })).body.id;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill', code: 'S-1' })).body.id;
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Ada', code: 'C-1' })).body.id;
    flour = (await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 300 })).body.id;
    jars = (await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    rope = (await owner.post('/v1/skus', { code: 'ROPE', name: 'Rope', unit: 'metre', price: 90 })).body.id;
    pieceTracked = (await owner.post('/v1/skus', { code: 'ROLL', name: 'Roll', unit: 'metre', price: 90, tracks_pieces: true })).body.id;
  });
  after(() => t.close());

  const receive = (storeId: string, body: unknown, key: string = randomUUID(), client: ApiClient = owner) =>
    client.post(`/v1/stores/${storeId}/stock/receipts`, body, { idempotencyKey: key });

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS stock_ledger,
                (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1)::int AS stock,
                (SELECT count(*) FROM purchases WHERE tenant_id = $1)::int AS purchases,
                (SELECT count(*) FROM purchase_lines WHERE tenant_id = $1)::int AS purchase_lines,
                (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
                (SELECT count(*) FROM accounts WHERE tenant_id = $1)::int AS accounts,
                (SELECT coalesce(sum(debit_total), 0) FROM accounts WHERE tenant_id = $1)::int AS debits`,
        [tenantId],
      )
    ).rows[0];

  const outstanding = async (partyId: string): Promise<number> => {
    const list = await owner.get('/v1/ledger/suppliers?limit=500');
    assert.equal(list.status, 200);
    return list.body.items.find((item: { party_id: string }) => item.party_id === partyId).outstanding;
  };
  const storeAccount = async (storeId: string, kind: string) => {
    const list = await owner.get(`/v1/stores/${storeId}/accounts`);
    assert.equal(list.status, 200);
    return list.body.items.find((item: { kind: string }) => item.kind === kind);
  };

  it('a costed receipt puts its total on the supplier and on the store\'s inventory account, in one balanced purchase entry', async () => {
    const owedBefore = await outstanding(supplier);
    const lines = [
      { sku_id: flour, quantity: 1234, unit_cost: 299 }, // 368.966 → 369 (a sale line's rule)
      { sku_id: jars, quantity: 12, unit_cost: 45 }, // 540
      { sku_id: rope, quantity: 2500, unit_cost: 1201 }, // 3002.5 → 3003
      { sku_id: jars, quantity: 3, unit_cost: 50 }, // 150: a SKU on two lines keeps both costs
    ];
    const response = await receive(store, { supplier_id: supplier, reference: 'DN-1001', items: lines });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const purchase = response.body.purchase;
    assert.equal(purchase.total, 369 + 540 + 3003 + 150);
    assert.equal(purchase.supplier_id, supplier);
    assert.deepEqual(purchase.lines, [
      { sku_id: flour, quantity: 1234, unit_cost: 299, line_total: 369 },
      { sku_id: jars, quantity: 12, unit_cost: 45, line_total: 540 },
      { sku_id: rope, quantity: 2500, unit_cost: 1201, line_total: 3003 },
      { sku_id: jars, quantity: 3, unit_cost: 50, line_total: 150 },
    ]);
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    assert.equal(purchase.business_date, today);
    // Stock moved as for any receipt (lines of one SKU added up).
    assert.deepEqual(
      response.body.items.map((item: { sku_id: string; quantity_after: number }) => [item.sku_id, item.quantity_after]).sort(),
      [[flour, 1234], [jars, 15], [rope, 2500]].sort(),
    );

    // The entry: two postings summing to zero, the store's inventory and the supplier.
    const postings = await t.admin.query(
      `SELECT a.key, p.amount::int, e.kind, e.subject_id, e.store_id, e.op_id FROM postings p
       JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
       JOIN journal_entries e ON e.tenant_id = p.tenant_id AND e.id = p.entry_id
       WHERE p.tenant_id = $1 AND p.entry_id = $2 ORDER BY a.key`,
      [tenantId, purchase.entry_id],
    );
    assert.deepEqual(
      postings.rows.map((row) => [row.key, row.amount]),
      [[`party/${supplier}`, -purchase.total], [`store/${store}/inventory`, purchase.total]],
    );
    assert.ok(postings.rows.every((row) => row.kind === 'purchase' && row.subject_id === purchase.id && row.store_id === store && row.op_id === response.body.op_id));

    assert.equal(await outstanding(supplier), owedBefore + purchase.total);
    const inventory = await storeAccount(store, 'inventory');
    assert.deepEqual([inventory.balance, inventory.debit_total, inventory.credit_total], [purchase.total, purchase.total, 0]);
    // Cash, revenue: untouched.
    for (const kind of ['cash_drawer', 'sales_revenue']) assert.equal((await storeAccount(store, kind)).balance, 0, kind);

    // The ledger and the operation show it.
    const ledger = await owner.get(`/v1/ledger/operations/${response.body.op_id}`);
    assert.equal(ledger.status, 200);
    assert.deepEqual(
      ledger.body.items.map((entry: { id: string; kind: string; subject_type: string; subject_id: string; business_date: string }) => [entry.id, entry.kind, entry.subject_type, entry.subject_id, entry.business_date]),
      [[purchase.entry_id, 'purchase', 'purchase', purchase.id, today]],
    );
    assert.deepEqual(
      ledger.body.items[0].postings.map((posting: { account_key: string; amount: number }) => [posting.account_key, posting.amount]).sort(),
      [[`party/${supplier}`, -purchase.total], [`store/${store}/inventory`, purchase.total]].sort(),
    );
    const operation = await owner.get(`/v1/operations/${response.body.op_id}`);
    assert.equal(operation.status, 200);
    assert.equal(operation.body.type, 'stock.receive');
    const effects = operation.body.effects.map((effect: { table: string; id: string }) => `${effect.table}:${effect.id}`);
    for (const expected of [`purchases:${purchase.id}`, `purchase_lines:${purchase.id}/1`, `purchase_lines:${purchase.id}/4`, `journal_entries:${purchase.entry_id}`]) {
      assert.ok(effects.includes(expected), `${expected} in ${effects.join(', ')}`);
    }
    assert.equal(operation.body.effects.filter((effect: { table: string }) => effect.table === 'postings').length, 2);

    // The rows: the purchase and one line per request line, under the receipt's operation.
    const rows = await t.admin.query(
      `SELECT p.store_id, p.supplier_id, p.total::int, p.entry_id, p.reference, p.op_id, count(l.*)::int AS lines
       FROM purchases p JOIN purchase_lines l ON l.tenant_id = p.tenant_id AND l.purchase_id = p.id AND l.op_id = p.op_id
       WHERE p.tenant_id = $1 AND p.id = $2 GROUP BY p.tenant_id, p.id`,
      [tenantId, purchase.id],
    );
    assert.deepEqual(rows.rows, [{ store_id: store, supplier_id: supplier, total: purchase.total, entry_id: purchase.entry_id, reference: 'DN-1001', op_id: response.body.op_id, lines: 4 }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a payment out to the supplier brings its outstanding back down', async () => {
    const owed = await outstanding(supplier);
    assert.ok(owed > 1000);
    const paid = await owner.post('/v1/payments', { party_id: supplier, store_id: store, method: 'bank', amount: 1000 }, { idempotencyKey: randomUUID() });
    assert.equal(paid.status, 201);
    assert.equal(await outstanding(supplier), owed - 1000);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a purchase is not reverted (there is no revert of a receipt yet): 422, nothing written', async () => {
    const bought = await receive(store, { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }] });
    assert.equal(bought.status, 201);
    const before = await counts();
    const revert = await owner.post(`/v1/operations/${bought.body.op_id}/revert`, {}, { idempotencyKey: randomUUID() });
    assert.equal(revert.status, 422, JSON.stringify(revert.body));
    assert.equal(revert.body.code, 'unprocessable');
    assert.deepEqual(await counts(), before);
  });

  it('a store lists six accounts, inventory last', async () => {
    const list = await owner.get(`/v1/stores/${otherStore}/accounts`);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.items.map((item: { kind: string }) => item.kind), ['cash_drawer', 'bank', 'card_clearing', 'mobile_clearing', 'sales_revenue', 'inventory']);
    const postings = await owner.get(`/v1/stores/${store}/accounts/inventory/postings`);
    assert.equal(postings.status, 200);
    assert.ok(postings.body.items.length >= 1);
    assert.ok(postings.body.items.every((item: { entry_kind: string; amount: number }) => item.entry_kind === 'purchase' && item.amount > 0));
  });

  it('a receipt without supplier or costs is answered and recorded exactly as before: no purchase, no money', async () => {
    const before = await counts();
    const response = await receive(store, { items: [{ sku_id: jars, quantity: 5 }], reference: 'plain' });
    assert.equal(response.status, 201);
    assert.deepEqual(Object.keys(response.body).sort(), ['items', 'op_id']);
    const afterCounts = await counts();
    assert.deepEqual(
      { ...afterCounts, operations: afterCounts.operations - 1, events: afterCounts.events - 2, keys: afterCounts.keys - 1, stock_ledger: afterCounts.stock_ledger - 1, stock: afterCounts.stock - 5 },
      before,
    );
  });

  it('goods given free (every unit_cost 0) are a purchase of total 0: no entry, nothing owed', async () => {
    const before = await counts();
    const owed = await outstanding(supplier);
    const response = await receive(store, { supplier_id: supplier, items: [{ sku_id: jars, quantity: 2, unit_cost: 0 }] });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.deepEqual({ ...response.body.purchase, id: undefined }, { id: undefined, supplier_id: supplier, total: 0, entry_id: null, business_date: null, lines: [{ sku_id: jars, quantity: 2, unit_cost: 0, line_total: 0 }] });
    const afterCounts = await counts();
    assert.equal(afterCounts.purchases, before.purchases + 1);
    assert.equal(afterCounts.entries, before.entries);
    assert.equal(await outstanding(supplier), owed);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a replay of a costed receipt answers the first answer and writes nothing twice', async () => {
    const key = randomUUID();
    const body = { supplier_id: supplier, items: [{ sku_id: flour, quantity: 1000, unit_cost: 250 }] };
    const first = await receive(store, body, key);
    assert.equal(first.status, 201);
    const before = await counts();
    const owed = await outstanding(supplier);
    for (let i = 0; i < 3; i++) {
      const replay = await receive(store, body, key);
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(replay.body, first.body);
    }
    assert.deepEqual(await counts(), before);
    assert.equal(await outstanding(supplier), owed);
    // The same key with other costs is another request.
    const other = await receive(store, { ...body, items: [{ sku_id: flour, quantity: 1000, unit_cost: 251 }] }, key);
    assert.equal(other.status, 422);
    assert.equal(other.body.code, 'idempotency_key_reused');
    assert.deepEqual(await counts(), before);
  });

  it('bad inputs are 400 (or 422) at their field, and nothing is written', async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ['a customer as supplier', { supplier_id: customer, items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }] }, 400, '/body/supplier_id'],
      ['an unknown supplier', { supplier_id: randomUUID(), items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }] }, 400, '/body/supplier_id'],
      ['a supplier that is not a uuid', { supplier_id: 'mill', items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }] }, 400, '/body/supplier_id'],
      ['a negative cost', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: -1 }] }, 400, '/body/items/0/unit_cost'],
      ['a fractional cost', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 1.5 }] }, 400, '/body/items/0/unit_cost'],
      ['a cost as text', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: '10' }] }, 400, '/body/items/0/unit_cost'],
      ['a cost above the largest amount', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 9_000_000_000_001 }] }, 400, '/body/items/0/unit_cost'],
      ['costs without a supplier', { items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }] }, 400, '/body/supplier_id'],
      ['a supplier without costs', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1 }] }, 400, '/body/items/0/unit_cost'],
      ['a supplier with a line lacking its cost', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 10 }, { sku_id: flour, quantity: 5 }] }, 400, '/body/items/1/unit_cost'],
      ['a line total above the largest amount', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 2, unit_cost: 9_000_000_000_000 }] }, 400, '/body/items/0'],
      ['a purchase total above the largest amount', { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 9_000_000_000_000 }, { sku_id: jars, quantity: 1, unit_cost: 1 }] }, 400, '/body/items'],
      ['an unknown SKU in a purchase', { supplier_id: supplier, items: [{ sku_id: randomUUID(), quantity: 1, unit_cost: 10 }] }, 400, '/body/items/0/sku_id'],
      ['a piece-tracked SKU in a purchase', { supplier_id: supplier, items: [{ sku_id: pieceTracked, quantity: 1, unit_cost: 10 }] }, 422, '/body/items/0/sku_id'],
    ];
    const before = await counts();
    for (const [name, body, status, path] of cases) {
      const response = await receive(store, body);
      assert.equal(response.status, status, `${name}: ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/, name);
      assert.ok(
        (response.body.errors ?? []).some((error: { path: string }) => error.path === path),
        `${name}: ${path} in ${JSON.stringify(response.body.errors)}`,
      );
      assert.deepEqual(await counts(), before, name);
    }
  });

  it('a token limited to one store receives with costs there, and is 404 at another store; a cashier may not receive', async () => {
    const scoped = t.client((await owner.post('/v1/tokens', { name: 'p1-manager', role: 'manager', store_ids: [store] })).body.token);
    const cashier = t.client((await owner.post('/v1/tokens', { name: 'cashier', role: 'cashier' })).body.token);
    const body = { supplier_id: supplier, items: [{ sku_id: jars, quantity: 4, unit_cost: 30 }] };
    const owed = await outstanding(supplier);
    const own = await receive(store, body, randomUUID(), scoped);
    assert.equal(own.status, 201, JSON.stringify(own.body));
    assert.equal(own.body.purchase.total, 120);
    assert.equal(await outstanding(supplier), owed + 120);
    const before = await counts();
    const elsewhere = await receive(otherStore, body, randomUUID(), scoped);
    assert.equal(elsewhere.status, 404);
    const refused = await receive(store, body, randomUUID(), cashier);
    assert.equal(refused.status, 403);
    assert.deepEqual(await counts(), before);
    // Its view of what is owed is not its to read: a supplier's balance spans every store.
    assert.equal((await scoped.get('/v1/ledger/suppliers')).status, 403, 'a party balance spans every store');
  });

  it('money of a purchase is booked like every store entry: after today is counted, on the next day — and the count is not changed by it', async () => {
    const countedStore = (await owner.post('/v1/stores', { code: 'P3', name: 'Counted' })).body.id;
    const today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    const early = await receive(countedStore, { supplier_id: supplier, items: [{ sku_id: jars, quantity: 10, unit_cost: 100 }] });
    assert.equal(early.status, 201);
    assert.equal(early.body.purchase.business_date, today);
    const count = await owner.post('/v1/settlements', { store_id: countedStore, business_date: today, declared_cash: 0 }, { idempotencyKey: randomUUID() });
    assert.equal(count.status, 201, JSON.stringify(count.body));
    assert.deepEqual([count.body.expected_cash, count.body.variance, count.body.other_cash, count.body.payments_out], [0, 0, 0, 0]);
    const late = await receive(countedStore, { supplier_id: supplier, items: [{ sku_id: jars, quantity: 1, unit_cost: 100 }] });
    assert.equal(late.status, 201);
    const tomorrow = new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
    assert.equal(late.body.purchase.business_date, tomorrow);
    // Not a sale: the day's figures, rolled up now, count no sale and no revenue for the store.
    const rolled = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
      { type: 'analytics.rollup' },
      async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, today) }),
    );
    assert.equal(rolled.status, 200);
    const figures = await t.admin.query(`SELECT sales_count, revenue::int FROM daily_sales_rollups WHERE tenant_id = $1 AND store_id = $2`, [tenantId, countedStore]);
    assert.ok(figures.rows.every((row) => row.sales_count === 0 && row.revenue === 0), JSON.stringify(figures.rows));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('concurrent purchases and payments out to one supplier, from two stores: each account equals its postings, the outstanding is exact', async () => {
    const mill = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Busy mill', code: 'S-BUSY' })).body.id;
    const receipts = Array.from({ length: 30 }, (_, i) => ({
      storeId: i % 2 === 0 ? store : otherStore,
      body: { supplier_id: mill, items: [{ sku_id: flour, quantity: 500 + i, unit_cost: 199 + i }, { sku_id: jars, quantity: 1 + (i % 4), unit_cost: 75 }] },
    }));
    const payments = Array.from({ length: 20 }, (_, i) => ({ party_id: mill, store_id: i % 2 === 0 ? otherStore : store, method: i % 3 === 0 ? 'cash' : 'bank', amount: 100 + i }));
    const results = await Promise.all([
      ...receipts.map(({ storeId, body }) => receive(storeId, body).then((response) => ({ kind: 'receipt' as const, response }))),
      ...payments.map((payment) => owner.post('/v1/payments', payment, { idempotencyKey: randomUUID() }).then((response) => ({ kind: 'payment' as const, response }))),
    ]);
    for (const { response } of results) assert.equal(response.status, 201, JSON.stringify(response.body));
    const purchased = results.filter((r) => r.kind === 'receipt').reduce((sum, r) => sum + r.response.body.purchase.total, 0);
    const expected = receipts.reduce(
      (sum, r) => sum + Math.floor(((r.body.items[0]!.quantity * r.body.items[0]!.unit_cost) * 2 + 1000) / 2000) + r.body.items[1]!.quantity * 75,
      0,
    );
    assert.equal(purchased, expected);
    const paid = payments.reduce((sum, p) => sum + p.amount, 0);
    assert.equal(await outstanding(mill), purchased - paid);
    const account = (
      await t.admin.query(
        `SELECT a.balance::bigint, a.debit_total::bigint, a.credit_total::bigint,
                (SELECT coalesce(sum(p.amount), 0) FROM postings p WHERE p.tenant_id = a.tenant_id AND p.account_id = a.id)::bigint AS postings_sum,
                (SELECT count(*) FROM purchases pu WHERE pu.tenant_id = a.tenant_id AND pu.supplier_id = a.party_id)::int AS purchases
         FROM accounts a WHERE a.tenant_id = $1 AND a.party_id = $2`,
        [tenantId, mill],
      )
    ).rows[0];
    assert.deepEqual(account, { balance: paid - purchased, debit_total: paid, credit_total: purchased, postings_sum: paid - purchased, purchases: 30 });
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});

/**
 * money_purchase_posted against corrupted rows. Each corruption below leaves
 * every entry balanced and every account equal to its postings (the other
 * checks stay quiet): money_purchase_posted, and only it, must report it.
 */
describe('the integrity of purchases: money_purchase_posted', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let supplier: string;
  let jars: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'PI', name: 'Purchase integrity' })).body.id;
    supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body.id;
    jars = (await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
  });
  after(() => t.close());

  const purchase = async (quantity: number, unitCost: number) => {
    const response = await owner.post(`/v1/stores/${store}/stock/receipts`, { supplier_id: supplier, items: [{ sku_id: jars, quantity, unit_cost: unitCost }] }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return { op_id: response.body.op_id as string, ...(response.body.purchase as { id: string; entry_id: string; total: number }) };
  };
  const newFindings = (corrupt: () => Promise<void>) => findingsAfter(t.admin, tenantId, corrupt);
  const moveAccount = (key: string, amount: number) => accountMoved(tenantId, key, amount);

  it('a clean purchase is not reported', async () => {
    await purchase(3, 100);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a costed receipt whose purchase entry is missing (nothing owed for the goods) is reported', async () => {
    const bought = await purchase(2, 150);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`DELETE FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, bought.entry_id]],
        [`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [tenantId, bought.entry_id]],
        // The accounts as if the entry had never been posted (totals only grow: take the posting off them).
        [`UPDATE accounts SET balance = balance - 300, debit_total = debit_total - 300 WHERE tenant_id = $1 AND key = $2`, [tenantId, `store/${store}/inventory`]],
        [`UPDATE accounts SET balance = balance + 300, credit_total = credit_total - 300 WHERE tenant_id = $1 AND key = $2`, [tenantId, `party/${supplier}`]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['money_purchase_posted', bought.id]]);
  });

  it('an entry that owes the supplier another amount than the purchase total is reported', async () => {
    const bought = await purchase(1, 500);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE postings SET amount = CASE WHEN amount > 0 THEN 400 ELSE -400 END WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, bought.entry_id]],
        [`UPDATE accounts SET balance = balance - 100, debit_total = debit_total - 100 WHERE tenant_id = $1 AND key = $2`, [tenantId, `store/${store}/inventory`]],
        [`UPDATE accounts SET balance = balance + 100, credit_total = credit_total - 100 WHERE tenant_id = $1 AND key = $2`, [tenantId, `party/${supplier}`]],
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['money_purchase_posted', bought.id]]);
    assert.deepEqual((found[0]!.detail as { to_inventory: number; to_supplier: number }).to_inventory, 400);
  });

  it('a purchase posted twice (a second purchase entry naming it) is reported', async () => {
    const bought = await purchase(1, 70);
    const second = randomUUID();
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`INSERT INTO journal_entries (tenant_id, id, kind, store_id, subject_type, subject_id, op_id) VALUES ($1, $2, 'purchase', $3, 'purchase', $4, $5)`, [tenantId, second, store, bought.id, bought.op_id]],
        [
          `INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id)
           SELECT $1, $2, a.id, CASE WHEN a.party_id IS NULL THEN 70 ELSE -70 END, $3 FROM accounts a WHERE a.tenant_id = $1 AND a.key IN ($4, $5)`,
          [tenantId, second, bought.op_id, `store/${store}/inventory`, `party/${supplier}`],
        ],
        moveAccount(`store/${store}/inventory`, 70),
        moveAccount(`party/${supplier}`, -70),
      ]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['money_purchase_posted', bought.id]]);
    assert.deepEqual((found[0]!.detail as { purchase_entries: string[] }).purchase_entries, [bought.entry_id, second].sort());
  });

  it('a purchase entry with no purchase behind it (what we owe with no receipt) is reported, naming the purchase it names', async () => {
    const bought = await purchase(1, 90);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`DELETE FROM purchase_lines WHERE tenant_id = $1 AND purchase_id = $2`, [tenantId, bought.id]],
        [`DELETE FROM purchases WHERE tenant_id = $1 AND id = $2`, [tenantId, bought.id]],
      ]),
    );
    assert.deepEqual(
      found.map((finding) => [finding.check, finding.subject, finding.detail]),
      [['money_purchase_posted', bought.id, { purchase_id: bought.id, purchase_exists: false, purchase_entries: [bought.entry_id] }]],
    );
  });

  it('a line whose total is not its quantity at its cost, or whose goods the receipt did not take in, is reported', async () => {
    const bought = await purchase(4, 25);
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE purchase_lines SET unit_cost = 26 WHERE tenant_id = $1 AND purchase_id = $2`, [tenantId, bought.id]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['money_purchase_posted', bought.id]]);
    assert.deepEqual((found[0]!.detail as { lines_off: unknown }).lines_off, [{ line_number: 1, line_total: 100, at_cost: 104 }]);

    const other = await purchase(2, 10);
    const moreFound = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE purchase_lines SET quantity = 3, line_total = 30 WHERE tenant_id = $1 AND purchase_id = $2`, [tenantId, other.id]]]),
    );
    // Its total no longer adds up, and the receipt took in 2, not 3.
    assert.deepEqual(moreFound.map((finding) => [finding.check, finding.subject]), [['money_purchase_posted', other.id]]);
    assert.deepEqual((moreFound[0]!.detail as { stock_off: unknown }).stock_off, [{ store_id: store, sku_id: jars, lines: 3, receipt_rows: 2 }]);
  });
});
