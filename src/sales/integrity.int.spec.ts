import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { allChecks } from '../integrity/registry.js';
import { runChecksAsOwner } from '../integrity/runChecks.js';
import { givenSku, givenStock, givenStore } from './testkit.js';
import { integrityFindings, testCheckLog } from '../../test/support/integrity.js';

const settings = { ordersStuckSeconds: 600 };

describe('sales integrity checks: each finds its own corruption and nothing else', () => {
  let t: TestApp;

  interface Shop {
    tenantId: string;
    owner: ApiClient;
    storeId: string;
    skuId: string;
    sale: { id: string; op_id: string; receipt_number: number };
    /** A partial return (100 g of the 333 g sale, refunding 100): consistent too. */
    saleReturn: { id: string; op_id: string; sale_id: string };
  }

  /** A shop with stock, three sales and one void: consistent by construction. */
  async function newShop(): Promise<Shop> {
    const { tenantId, owner } = await t.newTenant();
    const storeId = await givenStore(owner, `S${randomUUID().slice(0, 6)}`);
    const skuId = await givenSku(owner, `K${randomUUID().slice(0, 6)}`, 'kg', 1000);
    await givenStock(owner, storeId, [{ sku_id: skuId, quantity: 10_000 }]);
    const sales = [];
    for (const quantity of [100, 250, 333]) {
      const response = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 1000 }] });
      assert.equal(response.status, 201);
      sales.push(response.body);
    }
    assert.equal((await owner.post(`/v1/sales/${sales[1].id}/void`, { reason: 'test' })).status, 200);
    // an offline sale with a shortfall is consistent too
    await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: skuId, quantity_change: -(10_000 - 100 - 333 - 5), reason: 'count' });
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity: 9, unit_price: 1000 }] }],
    });
    assert.equal(synced.body.results[0].status, 201);
    assert.equal(synced.body.results[0].body.items[0].shortfall_quantity, 4);
    const returned = await owner.post(`/v1/sales/${sales[2].id}/returns`, { items: [{ sku_id: skuId, quantity: 100 }], reason: 'test' });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    return { tenantId, owner, storeId, skuId, sale: sales[0], saleReturn: returned.body };
  }

  async function reported(shop: Shop): Promise<string[]> {
    const run = await runChecksAsOwner(t.admin, allChecks, settings, testCheckLog);
    return [...new Set(run.findings.filter((finding) => finding.tenant_id === shop.tenantId).map((finding) => finding.check))].sort();
  }

  /** Corrupts as a superuser with triggers off (what a bad manual fix or a bug could do). */
  async function corrupt(statements: string[], params: unknown[][]): Promise<void> {
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL session_replication_role = replica`);
      for (const [index, statement] of statements.entries()) await client.query(statement, params[index]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }

  /**
   * Moves a sale's journal entry (and its accounts' totals) by `delta`, so that
   * a corruption of the sale's total leaves the money ledger agreeing with it
   * and only the sales check under test reports it (money_sale_posted would
   * otherwise rightly report the entry no longer moving the sale's total).
   */
  const entryFollowsTotal = (tenantId: string, saleId: string, delta: number): [string, unknown[]] => [
    `WITH changed AS (
       UPDATE postings p SET amount = p.amount + CASE WHEN p.amount > 0 THEN $3::bigint ELSE -$3::bigint END
       FROM journal_entries e
       WHERE e.tenant_id = $1 AND e.subject_id = $2 AND e.kind = 'sale' AND p.tenant_id = e.tenant_id AND p.entry_id = e.id
       RETURNING p.account_id, CASE WHEN p.amount > 0 THEN $3::bigint ELSE -$3::bigint END AS delta
     )
     UPDATE accounts a SET balance = a.balance + c.delta, debit_total = a.debit_total + greatest(c.delta, 0), credit_total = a.credit_total + greatest(-c.delta, 0)
     FROM changed c WHERE a.tenant_id = $1 AND a.id = c.account_id`,
    [tenantId, saleId, delta],
  ];

  /** Removes a sale's journal entry, keeping every account's totals equal to its remaining postings. */
  const entryRemoved = (tenantId: string, saleId: string): Array<[string, unknown[]]> => [
    [
      `WITH gone AS (
         DELETE FROM postings p USING journal_entries e
         WHERE e.tenant_id = $1 AND e.subject_id = $2 AND e.kind = 'sale' AND p.tenant_id = e.tenant_id AND p.entry_id = e.id
         RETURNING p.account_id, p.amount
       )
       UPDATE accounts a SET balance = a.balance - g.amount, debit_total = a.debit_total - greatest(g.amount, 0), credit_total = a.credit_total - greatest(-g.amount, 0)
       FROM gone g WHERE a.tenant_id = $1 AND a.id = g.account_id`,
      [tenantId, saleId],
    ],
    [`DELETE FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2 AND kind = 'sale'`, [tenantId, saleId]],
  ];

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('a consistent shop has no findings', async () => {
    assert.deepEqual(await reported(await newShop()), []);
  });

  it('sales_receipt_numbers_gapless: a counter advanced without a sale (a hole)', async () => {
    const shop = await newShop();
    await corrupt([`UPDATE store_receipt_counters SET last_number = last_number + 1 WHERE tenant_id = $1`], [[shop.tenantId]]);
    assert.deepEqual(await reported(shop), ['sales_receipt_numbers_gapless']);
  });

  it('sales_receipt_numbers_gapless: a sale renumbered past the counter', async () => {
    const shop = await newShop();
    await corrupt([`UPDATE sales SET receipt_number = 99 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, shop.sale.id]]);
    assert.deepEqual(await reported(shop), ['sales_receipt_numbers_gapless']);
  });

  it('sale_has_items: a sale whose lines are gone', async () => {
    const shop = await newShop();
    // its stock came back too (the later ledger rows' running totals with it), so only the missing lines are wrong
    await corrupt(
      [
        `DELETE FROM sale_items WHERE tenant_id = $1 AND sale_id = $2`,
        `UPDATE stock_ledger SET quantity_after = quantity_after + 100
         WHERE tenant_id = $1 AND id > (SELECT id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2)`,
        `DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`,
        `UPDATE stock_balances SET quantity = quantity + 100 WHERE tenant_id = $1`,
        `UPDATE sales SET total = 0 WHERE tenant_id = $1 AND id = $2`,
        ...entryRemoved(shop.tenantId, shop.sale.id).map(([statement]) => statement),
      ],
      [[shop.tenantId, shop.sale.id], [shop.tenantId, shop.sale.op_id], [shop.tenantId, shop.sale.op_id], [shop.tenantId], [shop.tenantId, shop.sale.id], ...entryRemoved(shop.tenantId, shop.sale.id).map(([, params]) => params)],
    );
    assert.deepEqual(await reported(shop), ['sale_has_items']);
  });

  it('sale_total_matches_items: a total changed after the fact', async () => {
    const shop = await newShop();
    const [entryStatement, entryParams] = entryFollowsTotal(shop.tenantId, shop.sale.id, 1);
    await corrupt([`UPDATE sales SET total = total + 1 WHERE tenant_id = $1 AND id = $2`, entryStatement], [[shop.tenantId, shop.sale.id], entryParams]);
    assert.deepEqual(await reported(shop), ['sale_total_matches_items']);
  });

  it('sale_stock_matches_items: a line changed after its stock was taken', async () => {
    const shop = await newShop();
    await corrupt(
      [
        `UPDATE sale_items SET quantity = quantity + 1, line_total = line_total + 1 WHERE tenant_id = $1 AND sale_id = $2`,
        `UPDATE sales SET total = total + 1 WHERE tenant_id = $1 AND id = $2`,
        entryFollowsTotal(shop.tenantId, shop.sale.id, 1)[0],
      ],
      [[shop.tenantId, shop.sale.id], [shop.tenantId, shop.sale.id], entryFollowsTotal(shop.tenantId, shop.sale.id, 1)[1]],
    );
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  it('sale_total_matches_items: a line whose total is not its quantity at its price (the total and the money following it)', async () => {
    const shop = await newShop();
    // 100 g at 1000 per kg is 100; the line (and with it the sale and its entry) now says 101
    const [entryStatement, entryParams] = entryFollowsTotal(shop.tenantId, shop.sale.id, 1);
    await corrupt(
      [`UPDATE sale_items SET line_total = line_total + 1 WHERE tenant_id = $1 AND sale_id = $2`, `UPDATE sales SET total = total + 1 WHERE tenant_id = $1 AND id = $2`, entryStatement],
      [[shop.tenantId, shop.sale.id], [shop.tenantId, shop.sale.id], entryParams],
    );
    assert.deepEqual(await reported(shop), ['sale_total_matches_items']);
  });

  /** Appends a ledger row of `kind` under `opId` taking `quantity` from a store's SKU, its balance following (balance = ledger and the running totals still hold). */
  const strayTake = (tenantId: string, storeId: string, skuId: string, opId: string, kind: string, quantity: number): [string[], unknown[][]] => [
    [
      `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
       SELECT tenant_id, store_id, sku_id, $4, -$5::bigint, quantity - $5::bigint, $6, 'stray' FROM stock_balances
       WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`,
      `UPDATE stock_balances SET quantity = quantity - $4::bigint WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`,
    ],
    [
      [tenantId, storeId, skuId, opId, quantity, kind],
      [tenantId, storeId, skuId, quantity],
    ],
  ];

  it('sale_stock_matches_items: stock that left another store as the sale (a ledger row of kind sale in a store the sale is not of)', async () => {
    const shop = await newShop();
    const otherStore = await givenStore(shop.owner, `O${randomUUID().slice(0, 6)}`);
    await givenStock(shop.owner, otherStore, [{ sku_id: shop.skuId, quantity: 50 }]);
    const [statements, params] = strayTake(shop.tenantId, otherStore, shop.skuId, shop.sale.op_id, 'sale', 5);
    await corrupt(statements, params);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  it('sale_stock_matches_items: stock that left as a sale under an operation that is no sale', async () => {
    const shop = await newShop();
    await givenStock(shop.owner, shop.storeId, [{ sku_id: shop.skuId, quantity: 50 }]);
    const receiptOp = (await t.admin.query(`SELECT op_id FROM stock_ledger WHERE tenant_id = $1 AND kind = 'receipt' LIMIT 1`, [shop.tenantId])).rows[0].op_id;
    const [statements, params] = strayTake(shop.tenantId, shop.storeId, shop.skuId, receiptOp, 'sale', 5);
    await corrupt(statements, params);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  it('sale_stock_matches_items: stock that came back as a void of no voided sale', async () => {
    const shop = await newShop();
    await givenStock(shop.owner, shop.storeId, [{ sku_id: shop.skuId, quantity: 50 }]);
    // a void row under the completed sale's own operation: stock returned that no void returned
    const [statements, params] = strayTake(shop.tenantId, shop.storeId, shop.skuId, shop.sale.op_id, 'void', -5);
    await corrupt(statements, params);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  it('sale_stock_matches_items: an online sale recording a shortfall (sold more than it took from stock, which only a synced offline sale may)', async () => {
    const shop = await newShop();
    // the online sale of 100 g took 99 g: its line says 1 g was short, its ledger row, the balance and the later running totals follow
    await corrupt(
      [
        `UPDATE sale_items SET shortfall_quantity = 1 WHERE tenant_id = $1 AND sale_id = $2`,
        `UPDATE stock_ledger SET quantity_after = quantity_after + 1
         WHERE tenant_id = $1 AND id >= (SELECT id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2)`,
        `UPDATE stock_ledger SET quantity_change = quantity_change + 1 WHERE tenant_id = $1 AND op_id = $2`,
        `UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1`,
      ],
      [[shop.tenantId, shop.sale.id], [shop.tenantId, shop.sale.op_id], [shop.tenantId, shop.sale.op_id], [shop.tenantId]],
    );
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  it('sale_stock_matches_items: a voided sale whose stock did not come back as a void', async () => {
    const shop = await newShop();
    const voided = (await t.admin.query(`SELECT voided_by_op FROM sales WHERE tenant_id = $1 AND status = 'voided'`, [shop.tenantId])).rows[0].voided_by_op;
    // the stock moved back, but not as the void's ledger rows (balance = ledger still holds)
    await corrupt([`UPDATE stock_ledger SET kind = 'adjustment' WHERE tenant_id = $1 AND op_id = $2`], [[shop.tenantId, voided]]);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });
  it('sale_stock_matches_items: a voided sale none of whose stock moved as its sale or its void (its line alone, the sale looked up)', async () => {
    const shop = await newShop();
    const voided = (await t.admin.query(`SELECT id, op_id, voided_by_op FROM sales WHERE tenant_id = $1 AND status = 'voided'`, [shop.tenantId])).rows[0];
    // the 250 g left and came back, but as adjustments (balance = ledger still holds): no ledger row carries the sale's
    // status, so the check looks the sale up for its line
    await corrupt([`UPDATE stock_ledger SET kind = 'adjustment' WHERE tenant_id = $1 AND op_id IN ($2, $3)`], [[shop.tenantId, voided.op_id, voided.voided_by_op]]);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
    const found = await integrityFindings(t.admin, shop.tenantId, ['sale_stock_matches_items']);
    assert.deepEqual(found, [
      {
        check: 'sale_stock_matches_items',
        subject: `${voided.id}/${shop.skuId}`,
        detail: {
          sale_id: voided.id,
          sku_id: shop.skuId,
          sold: 250,
          ledger_taken: 0,
          returned_by_returns: 0,
          ledger_returned_by_returns: 0,
          ledger_returned: 0,
          shortfall: 0,
          source: 'online',
        },
      },
    ]);
  });

  it('sale_return_matches_lines and sale_stock_matches_items: a return\'s ledger row brings back more than its line took back', async () => {
    const shop = await newShop();
    // the balance and the later running totals follow, so only the return's rows are wrong
    await corrupt(
      [
        `UPDATE stock_ledger SET quantity_after = quantity_after + 1
         WHERE tenant_id = $1 AND id >= (SELECT id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2)`,
        `UPDATE stock_ledger SET quantity_change = quantity_change + 1 WHERE tenant_id = $1 AND op_id = $2`,
        `UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1`,
      ],
      [[shop.tenantId, shop.saleReturn.op_id], [shop.tenantId, shop.saleReturn.op_id], [shop.tenantId]],
    );
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines', 'sale_stock_matches_items']);
  });

  it('sale_return_matches_lines: a return line whose refund is not its part of the line\'s money (the return, the sale and the entry following it)', async () => {
    const shop = await newShop();
    const money = (table: string) =>
      `WITH changed AS (
         UPDATE postings p SET amount = p.amount + CASE WHEN p.amount > 0 THEN 1 ELSE -1 END
         FROM journal_entries e
         WHERE e.tenant_id = $1 AND e.op_id = $2 AND e.kind = 'sale_return' AND p.tenant_id = e.tenant_id AND p.entry_id = e.id
         RETURNING p.account_id, CASE WHEN p.amount > 0 THEN 1 ELSE -1 END AS delta
       )
       UPDATE ${table} a SET balance = a.balance + c.delta, debit_total = a.debit_total + greatest(c.delta, 0), credit_total = a.credit_total + greatest(-c.delta, 0)
       FROM changed c WHERE a.tenant_id = $1 AND a.id = c.account_id`;
    await corrupt(
      [
        `UPDATE sale_return_items SET refund = refund + 1 WHERE tenant_id = $1 AND op_id = $2`,
        `UPDATE sale_returns SET refund_total = refund_total + 1 WHERE tenant_id = $1 AND op_id = $2`,
        `UPDATE sales SET returned_total = returned_total + 1 WHERE tenant_id = $1 AND id = (SELECT sale_id FROM sale_returns WHERE tenant_id = $1 AND op_id = $2)`,
        money('accounts'),
      ],
      [[shop.tenantId, shop.saleReturn.op_id], [shop.tenantId, shop.saleReturn.op_id], [shop.tenantId, shop.saleReturn.op_id], [shop.tenantId, shop.saleReturn.op_id]],
    );
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
  });

  it('sale_return_matches_lines: a return whose refund left another account than the sale\'s money went to (the card clearing, not the drawer)', async () => {
    const shop = await newShop();
    const drawer = (await t.admin.query(`SELECT id FROM accounts WHERE tenant_id = $1 AND kind = 'cash_drawer'`, [shop.tenantId])).rows[0].id;
    const clearing = randomUUID();
    await corrupt(
      [
        `INSERT INTO accounts (tenant_id, id, key, kind, store_id, balance, debit_total, credit_total, op_id)
         SELECT tenant_id, $3, 'store/' || store_id || '/card_clearing', 'card_clearing', store_id, 0, 0, 0, op_id FROM accounts WHERE tenant_id = $1 AND id = $2`,
        `WITH moved AS (
           UPDATE postings p SET account_id = $3 FROM journal_entries e
           WHERE e.tenant_id = $1 AND e.kind = 'sale_return' AND p.tenant_id = e.tenant_id AND p.entry_id = e.id AND p.account_id = $2
           RETURNING p.amount
         ), drawer AS (
           UPDATE accounts SET balance = balance - (SELECT amount FROM moved), credit_total = credit_total + (SELECT amount FROM moved)
           WHERE tenant_id = $1 AND id = $2
         )
         UPDATE accounts SET balance = balance + (SELECT amount FROM moved), credit_total = credit_total - (SELECT amount FROM moved)
         WHERE tenant_id = $1 AND id = $3`,
      ],
      [[shop.tenantId, drawer, clearing], [shop.tenantId, drawer, clearing]],
    );
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
  });

  it('sale_return_matches_lines: a return\'s entry booked before its sale\'s day', async () => {
    const shop = await newShop();
    await corrupt(
      [`UPDATE journal_entries SET business_date = business_date - 1 WHERE tenant_id = $1 AND op_id = $2 AND kind = 'sale_return'`],
      [[shop.tenantId, shop.saleReturn.op_id]],
    );
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
  });

  it("sale_return_matches_lines: a return's entry booked later than a void's would be (400 days ahead of today, nothing counted)", async () => {
    // A return recorded live today: its void's rule allows today's neighbour at most (past it only after a counted day).
    const live = await newShop();
    await corrupt(
      [`UPDATE journal_entries SET business_date = business_date + 400 WHERE tenant_id = $1 AND op_id = $2 AND kind = 'sale_return'`],
      [[live.tenantId, live.saleReturn.op_id]],
    );
    assert.deepEqual(await reported(live), ['sale_return_matches_lines'], 'a live return\'s entry 400 days ahead');
  });

  it("sale_return_matches_lines: a return's entry 400 days ahead, its sale's entry gone too (the return's own bounds still hold)", async () => {
    const shop = await newShop();
    await corrupt(
      [...entryRemoved(shop.tenantId, shop.saleReturn.sale_id).map(([statement]) => statement),
       `UPDATE journal_entries SET business_date = business_date + 400 WHERE tenant_id = $1 AND op_id = $2 AND kind = 'sale_return'`],
      [...entryRemoved(shop.tenantId, shop.saleReturn.sale_id).map(([, params]) => params), [shop.tenantId, shop.saleReturn.op_id]],
    );
    assert.deepEqual(await reported(shop), ['money_sale_posted', 'sale_return_matches_lines']);
  });

  it("sale_return_matches_lines: a queued return's entry booked on the day it reached us instead of the till's day", async () => {
    // A return queued by a till 9 days ago, of a sale synced from 10 days ago: booked on the till's day; moved to
    // the day it reached us (today, nothing counted), it is a week past what the rule allows.
    const queued = await newShop();
    const day = 24 * 3600 * 1000;
    const synced = await queued.owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: queued.storeId, payment_method: 'cash', client_created_at: new Date(Date.now() - 10 * day).toISOString(),
                items: [{ sku_id: queued.skuId, quantity: 5, unit_price: 1000 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const returned = await queued.owner.post(`/v1/sales/${synced.body.results[0].body.id}/returns`, {
      items: [{ sku_id: queued.skuId, quantity: 2 }], reason: 'test', client_created_at: new Date(Date.now() - 9 * day).toISOString(),
    });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    assert.deepEqual(await reported(queued), [], 'the queued return as booked');
    await corrupt(
      [`UPDATE journal_entries SET business_date = (now() AT TIME ZONE 'UTC')::date WHERE tenant_id = $1 AND op_id = $2 AND kind = 'sale_return'`],
      [[queued.tenantId, returned.body.op_id]],
    );
    assert.deepEqual(await reported(queued), ['sale_return_matches_lines'], 'a queued return\'s entry on the day it reached us');
  });

  it("sale_return_matches_lines: a return's entry booked earlier than a void's would be, though not before the sale's day", async () => {
    // A sale synced from 10 days ago, returned twice: live today (the rule allows yesterday at the earliest) and
    // queued by a till 3 days ago (4 days ago at the earliest). Each entry moved to a day between the sale's day
    // and its earliest — 5 and 8 days ago — is earlier than the rule allows; nothing else looks at that day.
    const day = 24 * 3600 * 1000;
    for (const [label, till, movedBack] of [['a live return', undefined, 5], ['a queued return', 3, 8]] as const) {
      const shop = await newShop();
      const synced = await shop.owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: shop.storeId, payment_method: 'cash', client_created_at: new Date(Date.now() - 10 * day).toISOString(),
                  items: [{ sku_id: shop.skuId, quantity: 5, unit_price: 1000 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
      const returned = await shop.owner.post(`/v1/sales/${synced.body.results[0].body.id}/returns`, {
        items: [{ sku_id: shop.skuId, quantity: 2 }], reason: 'test',
        ...(till === undefined ? {} : { client_created_at: new Date(Date.now() - till * day).toISOString() }),
      });
      assert.equal(returned.status, 201, JSON.stringify(returned.body));
      assert.deepEqual(await reported(shop), [], `${label} as booked`);
      await corrupt(
        [`UPDATE journal_entries SET business_date = (now() AT TIME ZONE 'UTC')::date - $3::int WHERE tenant_id = $1 AND op_id = $2 AND kind = 'sale_return'`],
        [[shop.tenantId, returned.body.op_id, movedBack]],
      );
      assert.deepEqual(await reported(shop), ['sale_return_matches_lines'], `${label}'s entry ${movedBack} days back`);
    }
  });

  it('sale_return_matches_lines: a sale whose returned_total is not what its returns refunded', async () => {
    const shop = await newShop();
    await corrupt([`UPDATE sales SET returned_total = returned_total + 5 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, shop.saleReturn.sale_id]]);
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
  });

  it('sale_stock_matches_items: stock that came back as a return under an operation that is no return', async () => {
    const shop = await newShop();
    await givenStock(shop.owner, shop.storeId, [{ sku_id: shop.skuId, quantity: 50 }]);
    const [statements, params] = strayTake(shop.tenantId, shop.storeId, shop.skuId, shop.sale.op_id, 'return', -5);
    await corrupt(statements, params);
    assert.deepEqual(await reported(shop), ['sale_stock_matches_items']);
  });

  /** The shop's offline sale that synced short (9 g sold, 5 g taken, 4 g short) and its review item. */
  async function shortSale(shop: Shop): Promise<{ saleId: string; itemId: string }> {
    const { rows } = await t.admin.query<{ sale_id: string; item_id: string }>(
      `SELECT s.id AS sale_id, r.id AS item_id FROM sales s JOIN review_items r ON r.tenant_id = s.tenant_id AND r.subject_id = s.id::text
       WHERE s.tenant_id = $1 AND s.source = 'offline' AND r.kind = 'offline_sale_shortage'`,
      [shop.tenantId],
    );
    assert.equal(rows.length, 1);
    return { saleId: rows[0]!.sale_id, itemId: rows[0]!.item_id };
  }

  it('sale_shortfall_matches_review_item: a short offline sale whose review item is gone', async () => {
    const shop = await newShop();
    const { saleId, itemId } = await shortSale(shop);
    await corrupt([`DELETE FROM review_items WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId]]);
    assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item']);
    const findings = (await integrityFindings(t.admin, shop.tenantId, ['sale_shortfall_matches_review_item'])).map(({ subject, detail }) => ({ subject, detail }));
    assert.equal(findings.length, 1);
    assert.equal(findings[0]!.subject, saleId);
    assert.deepEqual((findings[0]!.detail as { shortages: unknown }).shortages, [{ sku_id: shop.skuId, requested: 9, available: 5, shortfall: 4 }]);
    assert.deepEqual((findings[0]!.detail as { review_items: unknown }).review_items, []);
  });

  it('sale_shortfall_matches_review_item: a review item whose figures are not the lines\' (a smaller shortfall, another SKU, a missing SKU)', async () => {
    const shop = await newShop();
    const { itemId } = await shortSale(shop);
    const otherSku = await givenSku(shop.owner, `K${randomUUID().slice(0, 6)}`, 'kg', 1000);
    for (const detail of [
      `jsonb_set(detail, '{shortages,0,shortfall}', '3')`,
      `jsonb_set(detail, '{shortages,0,available}', '6')`,
      `jsonb_set(detail, '{shortages,0,sku_id}', to_jsonb($3::text))`,
      `jsonb_set(detail, '{shortages}', detail -> 'shortages' || jsonb_build_array(jsonb_build_object('sku_id', $3::text, 'requested', 1, 'available', 0, 'shortfall', 1)))`,
      `jsonb_set(detail, '{shortages}', '[]')`,
    ]) {
      const original = (await t.admin.query(`SELECT detail FROM review_items WHERE tenant_id = $1 AND id = $2`, [shop.tenantId, itemId])).rows[0].detail;
      await corrupt([`UPDATE review_items SET detail = ${detail} WHERE tenant_id = $1 AND id = $2 AND $3::text IS NOT NULL`], [[shop.tenantId, itemId, otherSku]]);
      assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item'], detail);
      await corrupt([`UPDATE review_items SET detail = $3 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId, original]]);
      assert.deepEqual(await reported(shop), [], `${detail} put back`);
    }
  });

  it('sale_shortfall_matches_review_item: a review item moved to another store (its staff never see it) or to another sale', async () => {
    const shop = await newShop();
    const { itemId } = await shortSale(shop);
    const otherStore = await givenStore(shop.owner, `O${randomUUID().slice(0, 6)}`);
    await corrupt([`UPDATE review_items SET store_id = $3 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId, otherStore]]);
    assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item']);
    await corrupt([`UPDATE review_items SET store_id = $3 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId, shop.storeId]]);
    assert.deepEqual(await reported(shop), []);
    // naming a sale with no shortfall: that sale has an item it should not, the short one none
    await corrupt([`UPDATE review_items SET subject_id = $3 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId, shop.sale.id]]);
    assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item']);
    const subjects = (await integrityFindings(t.admin, shop.tenantId, ['sale_shortfall_matches_review_item'])).map(({ subject }) => subject).sort();
    assert.deepEqual(subjects, [shop.sale.id, (await t.admin.query(`SELECT id FROM sales WHERE tenant_id = $1 AND source = 'offline'`, [shop.tenantId])).rows[0].id].sort());
  });

  it('sale_shortfall_matches_review_item: a second item for the same sale, or an item for a sale that is not there', async () => {
    const shop = await newShop();
    const { itemId } = await shortSale(shop);
    // a copy of the item (its dedupe key left out: one open item per key)
    const copy = (subject: string, status: string) =>
      `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, detail, status, resolved_at, op_id)
       SELECT tenant_id, $3, kind, severity, subject_type, ${subject}, store_id, detail, '${status}', ${status === 'resolved' ? 'now()' : 'NULL'}, op_id
       FROM review_items WHERE tenant_id = $1 AND id = $2`;
    await corrupt([copy('subject_id', 'open')], [[shop.tenantId, itemId, randomUUID()]]);
    assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item']);
    await corrupt([`DELETE FROM review_items WHERE tenant_id = $1 AND kind = 'offline_sale_shortage' AND id <> $2`], [[shop.tenantId, itemId]]);
    assert.deepEqual(await reported(shop), []);
    const ghost = randomUUID();
    await corrupt([copy('$4', 'resolved')], [[shop.tenantId, itemId, randomUUID(), ghost]]);
    const findings = await integrityFindings(t.admin, shop.tenantId, ['sale_shortfall_matches_review_item']);
    assert.deepEqual(findings.map(({ subject }) => subject), [ghost]);
    assert.equal((findings[0]!.detail as { sale_id: unknown }).sale_id, null);
  });

  it('sale_shortfall_matches_review_item: a resolved item still counts (a resolution changes its status, not what it names)', async () => {
    const shop = await newShop();
    const { itemId } = await shortSale(shop);
    const resolved = await shop.owner.post(`/v1/review-items/${itemId}/resolve`, { note: 'counted: 4 g were never there' });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.deepEqual(await reported(shop), []);
    await corrupt([`UPDATE review_items SET detail = jsonb_set(detail, '{shortages,0,requested}', '10') WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId]]);
    assert.deepEqual(await reported(shop), ['sale_shortfall_matches_review_item']);
  });
  /** A return the till made before a sale's void and sent after it (after_void), on a new sale of the shop: 50 g sold, 20 g taken back. */
  async function afterVoidReturn(shop: Shop): Promise<{ saleId: string; saleReturn: { id: string; op_id: string }; itemId: string }> {
    const sale = await shop.owner.post('/v1/sales', { store_id: shop.storeId, payment_method: 'cash', items: [{ sku_id: shop.skuId, quantity: 50, unit_price: 1000 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    assert.equal((await shop.owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'test' })).status, 200);
    const returned = await shop.owner.post(`/v1/sales/${sale.body.id}/returns`, {
      items: [{ sku_id: shop.skuId, quantity: 20 }],
      reason: 'queued before the void',
      client_created_at: new Date(Date.now() - 60_000).toISOString(),
    });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    assert.equal(returned.body.after_void, true);
    const { rows } = await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'sale_return_after_void' AND subject_id = $2`, [shop.tenantId, returned.body.id]);
    assert.equal(rows.length, 1);
    return { saleId: sale.body.id, saleReturn: returned.body, itemId: rows[0].id };
  }

  it('a shop with a return recorded after its sale\'s void, its review item resolved or not, has no findings', async () => {
    const shop = await newShop();
    const { itemId } = await afterVoidReturn(shop);
    await afterVoidReturn(shop);
    assert.deepEqual(await reported(shop), []);
    await corrupt([`UPDATE review_items SET status = 'resolved', resolved_at = now(), resolution_note = 'till counted' WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId]]);
    assert.deepEqual(await reported(shop), []);
  });

  it('sale_return_after_void_matches_review_item: an after-void return whose review item is gone', async () => {
    const shop = await newShop();
    const { saleReturn, itemId } = await afterVoidReturn(shop);
    await corrupt([`DELETE FROM review_items WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, itemId]]);
    assert.deepEqual(await reported(shop), ['sale_return_after_void_matches_review_item']);
    const findings = await integrityFindings(t.admin, shop.tenantId, ['sale_return_after_void_matches_review_item']);
    assert.deepEqual(findings.map((finding) => [finding.subject, (finding.detail as { refund_total: number }).refund_total]), [[saleReturn.id, 20]]);
  });

  it('sale_return_after_void_matches_review_item: an item with another refund, in another store, a second item, or an item naming no after-void return', async () => {
    for (const change of [
      `UPDATE review_items SET detail = jsonb_set(detail, '{refund_total}', '19') WHERE tenant_id = $1 AND id = $2`,
      `UPDATE review_items SET store_id = NULL WHERE tenant_id = $1 AND id = $2`,
      `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, detail, op_id)
       SELECT tenant_id, gen_random_uuid(), kind, severity, subject_type, subject_id, store_id, detail, op_id FROM review_items WHERE tenant_id = $1 AND id = $2`,
      `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, detail, op_id)
       SELECT tenant_id, gen_random_uuid(), kind, severity, subject_type, gen_random_uuid()::text, store_id, detail, op_id FROM review_items WHERE tenant_id = $1 AND id = $2`,
    ]) {
      const shop = await newShop();
      const { itemId } = await afterVoidReturn(shop);
      await corrupt([change], [[shop.tenantId, itemId]]);
      assert.deepEqual(await reported(shop), ['sale_return_after_void_matches_review_item'], change);
    }
  });

  it('sale_return_matches_lines and sale_stock_matches_items: an after-void return bringing stock back a second time (a return ledger row)', async () => {
    const shop = await newShop();
    const { saleReturn } = await afterVoidReturn(shop);
    const [statements, params] = strayTake(shop.tenantId, shop.storeId, shop.skuId, saleReturn.op_id, 'return', -20);
    await corrupt(statements, params);
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines', 'sale_stock_matches_items']);
  });

  it('sale_return_matches_lines: an after-void return whose till time is not before the void', async () => {
    const shop = await newShop();
    const { saleReturn } = await afterVoidReturn(shop);
    await corrupt([`UPDATE sale_returns SET client_created_at = now() + interval '1 minute' WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, saleReturn.id]]);
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
    const [finding] = await integrityFindings(t.admin, shop.tenantId, ['sale_return_matches_lines']);
    assert.deepEqual([(finding!.detail as { after_void: boolean }).after_void, (finding!.detail as { sale_status: string }).sale_status], [true, 'voided']);
  });

  it('sale_return_matches_lines: an after-void return\'s refund counted in the sale\'s returned_total', async () => {
    const shop = await newShop();
    const { saleId } = await afterVoidReturn(shop);
    await corrupt([`UPDATE sales SET returned_total = returned_total + 20 WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, saleId]]);
    assert.deepEqual(await reported(shop), ['sale_return_matches_lines']);
  });

  it('sale_return_matches_lines, sale_stock_matches_items and sale_return_after_void_matches_review_item: a return of a sale never voided marked after_void', async () => {
    const shop = await newShop();
    await corrupt([`UPDATE sale_returns SET after_void = true, client_created_at = created_at - interval '1 minute' WHERE tenant_id = $1 AND id = $2`], [[shop.tenantId, shop.saleReturn.id]]);
    assert.deepEqual(await reported(shop), ['sale_return_after_void_matches_review_item', 'sale_return_matches_lines', 'sale_stock_matches_items']);
  });
});
