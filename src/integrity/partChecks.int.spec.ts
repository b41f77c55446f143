import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff, type Statements } from '../../test/support/database.js';

/**
 * Money, transfer and settlement checks, each against its own corruption (done as the
 * superuser, with triggers and foreign keys switched off where the database
 * would refuse it otherwise): that check, and only that check, reports it.
 */
describe('integrity checks of money and transfers', () => {
  let t: TestApp;

  interface World {
    tenantId: string;
    owner: ApiClient;
    source: string;
    destination: string;
    skuId: string;
    partyId: string;
    paymentId: string;
    transferId: string;
    settlementId: string;
  }

  /** A tenant with two stores, stock, a customer who paid, and an approved transfer: consistent by construction. */
  async function newWorld(): Promise<World> {
    const { tenantId, owner } = await t.newTenant();
    const ok = <T extends { status: number; body: any }>(response: T, status = 201): T => {
      assert.equal(response.status, status, JSON.stringify(response.body));
      return response;
    };
    const source = ok(await owner.post('/v1/stores', { code: 'SRC', name: 'Source' })).body.id;
    const destination = ok(await owner.post('/v1/stores', { code: 'DST', name: 'Destination' })).body.id;
    const skuId = ok(await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Oil', unit: 'piece', price: 500 })).body.id;
    ok(await owner.post(`/v1/stores/${source}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 50 }] }));
    const partyId = ok(await owner.post('/v1/parties', { kind: 'customer', name: 'Bea' })).body.id;
    const paymentId = ok(await owner.post('/v1/payments', { party_id: partyId, store_id: source, method: 'cash', amount: 700 })).body.id;
    const transferId = ok(await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: [{ sku_id: skuId, quantity: 5 }] })).body.id;
    ok(await owner.post(`/v1/transfers/${transferId}/approve`, {}), 200);
    const today = new Date().toISOString().slice(0, 10);
    const settlementId = ok(await owner.post('/v1/settlements', { store_id: destination, business_date: today, declared_cash: 0 })).body.id;
    return { tenantId, owner, source, destination, skuId, partyId, paymentId, transferId, settlementId };
  }

  async function reported(world: World): Promise<string[]> {
    const response = await world.owner.get('/v1/integrity');
    assert.equal(response.status, 200);
    return [...new Set<string>(response.body.findings.map((finding: { check: string }) => finding.check))].sort();
  }

  /** Runs `statements` as the superuser with triggers and foreign keys off. */
  const corrupt = (statements: Statements) => withTriggersOff(t.admin, statements);

  before(async () => {
    t = await startTestApp();
  });
  after(async () => {
    await t.close();
  });

  it('the world is consistent before anything is corrupted', async () => {
    assert.deepEqual(await reported(await newWorld()), []);
  });

  it('money_journal_entry_balanced: an entry whose postings do not sum to zero', async () => {
    const world = await newWorld();
    const account = (await t.admin.query(`SELECT id FROM accounts WHERE tenant_id = $1 AND store_id = $2 AND kind = 'cash_drawer'`, [world.tenantId, world.source])).rows[0];
    const op = (await t.admin.query(`SELECT op_id FROM payments WHERE id = $1`, [world.paymentId])).rows[0].op_id;
    const entryId = randomUUID();
    // A one-legged entry; the account's own totals are kept in step so only the entry is wrong.
    await corrupt([
      [`INSERT INTO journal_entries (tenant_id, id, kind, store_id, op_id) VALUES ($1, $2, 'manual', $3, $4)`, [world.tenantId, entryId, world.source, op]],
      [`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, 50, $4)`, [world.tenantId, entryId, account.id, op]],
      [`UPDATE accounts SET balance = balance + 50, debit_total = debit_total + 50 WHERE id = $1`, [account.id]],
    ]);
    assert.deepEqual(await reported(world), ['money_journal_entry_balanced']);
  });

  it('money_account_totals_match_postings: a balance changed without a posting', async () => {
    const world = await newWorld();
    await corrupt([[`UPDATE accounts SET balance = balance + 10, debit_total = debit_total + 10 WHERE tenant_id = $1 AND party_id = $2`, [world.tenantId, world.partyId]]]);
    assert.deepEqual(await reported(world), ['money_account_totals_match_postings']);
  });

  it('money_journal_entry_balanced: postings left without their entry (an orphan)', async () => {
    const world = await newWorld();
    const entryId = (await t.admin.query(`SELECT entry_id FROM payments WHERE id = $1`, [world.paymentId])).rows[0].entry_id;
    await corrupt([[`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [world.tenantId, entryId]]]);
    // The entry was the payment's: the payment is left without its entry too.
    assert.deepEqual(await reported(world), ['money_journal_entry_balanced', 'money_payment_has_entry']);
  });

  it('money_account_totals_match_postings: postings left without their account (an orphan)', async () => {
    const world = await newWorld();
    await corrupt([[`DELETE FROM accounts WHERE tenant_id = $1 AND store_id = $2 AND kind = 'cash_drawer'`, [world.tenantId, world.source]]]);
    // The drawer's only posting was the cash payment's: its entry no longer moves the money into the store's drawer either.
    assert.deepEqual(await reported(world), ['money_account_totals_match_postings', 'money_payment_has_entry']);
  });

  it('money_party_has_account: a party without its account', async () => {
    const world = await newWorld();
    const op = (await t.admin.query(`SELECT op_id FROM parties WHERE id = $1`, [world.partyId])).rows[0].op_id;
    await corrupt([[`INSERT INTO parties (tenant_id, id, kind, name, op_id) VALUES ($1, $2, 'supplier', 'Orphan', $3)`, [world.tenantId, randomUUID(), op]]]);
    assert.deepEqual(await reported(world), ['money_party_has_account']);
  });

  it('money_payment_has_entry: a payment whose entry moves another amount', async () => {
    const world = await newWorld();
    await corrupt([[`UPDATE payments SET amount = amount + 1 WHERE id = $1`, [world.paymentId]]]);
    assert.deepEqual(await reported(world), ['money_payment_has_entry']);
  });

  /** A sale of the source store through the API (2 × 500), voided when asked; returns its id. */
  async function sell(world: World, payment_method: 'cash' | 'credit', options: { void?: boolean } = {}): Promise<string> {
    const extra = payment_method === 'credit' ? { customer_id: world.partyId } : {};
    const sale = await world.owner.post('/v1/sales', { store_id: world.source, payment_method, items: [{ sku_id: world.skuId, quantity: 2, unit_price: 500 }], ...extra });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    if (options.void) assert.equal((await world.owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'till error' })).status, 200);
    return sale.body.id;
  }

  /** Removes a journal entry and its postings, keeping every account's totals equal to its remaining postings. */
  function unpost(tenantId: string, entryId: string): Array<[string, unknown[]]> {
    return [
      [
        `WITH gone AS (DELETE FROM postings WHERE tenant_id = $1 AND entry_id = $2 RETURNING account_id, amount)
         UPDATE accounts a SET balance = a.balance - g.amount, debit_total = a.debit_total - g.debits, credit_total = a.credit_total - g.credits
         FROM (SELECT account_id, sum(amount) AS amount, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS debits,
                      coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS credits FROM gone GROUP BY account_id) g
         WHERE a.tenant_id = $1 AND a.id = g.account_id`,
        [tenantId, entryId],
      ],
      [`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [tenantId, entryId]],
    ];
  }

  const paymentEntryOf = async (paymentId: string): Promise<string> => (await t.admin.query(`SELECT entry_id FROM payments WHERE id = $1`, [paymentId])).rows[0].entry_id;

  it('money_payment_has_entry: cash and bank payments in and out, posted as they should be, are not reported', async () => {
    const world = await newWorld();
    const supplier = (await world.owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body.id;
    for (const body of [
      { party_id: world.partyId, store_id: world.destination, method: 'bank', amount: 300 },
      { party_id: world.partyId, store_id: world.source, method: 'cash', amount: 50, direction: 'out' },
      { party_id: supplier, store_id: world.source, method: 'cash', amount: 200 },
      { party_id: supplier, store_id: world.destination, method: 'mobile', amount: 90, direction: 'in' },
    ]) {
      assert.equal((await world.owner.post('/v1/payments', body)).status, 201);
    }
    assert.deepEqual(await reported(world), []);
  });

  it('money_payment_has_entry: a customer\'s cash payment whose entry moves its amount the other way (drawer credited, customer debited; every account equal to its postings)', async () => {
    const world = await newWorld();
    const entryId = await paymentEntryOf(world.paymentId);
    // The payment says 700 came in; its entry (and the balances) say 700 went out to the customer.
    await corrupt([
      [
        `WITH flipped AS (UPDATE postings SET amount = -amount WHERE tenant_id = $1 AND entry_id = $2 RETURNING account_id, amount)
         UPDATE accounts a SET balance = a.balance + 2 * f.amount,
                               debit_total = a.debit_total + greatest(f.amount, 0) - greatest(-f.amount, 0),
                               credit_total = a.credit_total + greatest(-f.amount, 0) - greatest(f.amount, 0)
         FROM flipped f WHERE a.tenant_id = $1 AND a.id = f.account_id`,
        [world.tenantId, entryId],
      ],
    ]);
    assert.deepEqual(await reported(world), ['money_payment_has_entry']);
  });

  it('money_payment_has_entry: two payments of one amount recorded on one journal entry (the other entry gone; every account equal to its postings)', async () => {
    const world = await newWorld();
    const second = await world.owner.post('/v1/payments', { party_id: world.partyId, store_id: world.source, method: 'cash', amount: 700 });
    assert.equal(second.status, 201);
    const secondEntry = await paymentEntryOf(second.body.id);
    // Two payments of 700 recorded, 700 in the ledger: the customer's debt and the drawer are 700 short of what was paid.
    await corrupt([
      ...unpost(world.tenantId, secondEntry),
      [`UPDATE payments SET entry_id = $2 WHERE id = $1`, [second.body.id, await paymentEntryOf(world.paymentId)]],
    ]);
    assert.deepEqual(await reported(world), ['money_payment_has_entry']);
  });

  const entryOf = async (saleId: string, kind: 'sale' | 'sale_void'): Promise<string> =>
    (await t.admin.query(`SELECT id FROM journal_entries WHERE subject_id = $1 AND kind = $2`, [saleId, kind])).rows[0].id;

  it('money_sale_posted: cash, credit and voided sales posted as they should be are not reported', async () => {
    const world = await newWorld();
    await sell(world, 'cash');
    await sell(world, 'credit');
    await sell(world, 'cash', { void: true });
    await sell(world, 'credit', { void: true });
    assert.deepEqual(await reported(world), []);
  });

  it('money_sale_posted: a sale whose journal entry is gone (every account still equal to its postings)', async () => {
    const world = await newWorld();
    const saleId = await sell(world, 'cash');
    await corrupt(unpost(world.tenantId, await entryOf(saleId, 'sale')));
    assert.deepEqual(await reported(world), ['money_sale_posted']);
  });

  it('money_sale_posted: a voided sale whose reversing entry is gone', async () => {
    const world = await newWorld();
    const saleId = await sell(world, 'credit', { void: true });
    await corrupt(unpost(world.tenantId, await entryOf(saleId, 'sale_void')));
    assert.deepEqual(await reported(world), ['money_sale_posted']);
  });

  it('money_sale_posted: a cash sale debited to a customer instead of the drawer', async () => {
    const world = await newWorld();
    const saleId = await sell(world, 'cash');
    const entryId = await entryOf(saleId, 'sale');
    await corrupt([
      [
        `UPDATE accounts a SET balance = a.balance + CASE WHEN a.party_id IS NULL THEN -1000 ELSE 1000 END,
                               debit_total = a.debit_total + CASE WHEN a.party_id IS NULL THEN -1000 ELSE 1000 END
         WHERE a.tenant_id = $1 AND (a.party_id = $2 OR a.id = (SELECT account_id FROM postings WHERE entry_id = $3 AND amount > 0))`,
        [world.tenantId, world.partyId, entryId],
      ],
      [
        `UPDATE postings SET account_id = (SELECT id FROM accounts WHERE tenant_id = $1 AND party_id = $2) WHERE entry_id = $3 AND amount > 0`,
        [world.tenantId, world.partyId, entryId],
      ],
    ]);
    assert.deepEqual(await reported(world), ['money_sale_posted']);
  });

  it("money_sale_posted: a sale's entry, or its void's, booked for another store (its postings still the sale's store's accounts)", async () => {
    for (const kind of ['sale', 'sale_void'] as const) {
      const world = await newWorld();
      // A third store: moving the entry to the destination would also put its money in that store's settled day.
      const other = (await world.owner.post('/v1/stores', { code: 'OTH', name: 'Other' })).body.id;
      const saleId = await sell(world, 'cash', { void: kind === 'sale_void' });
      assert.deepEqual(await reported(world), []);
      await corrupt([[`UPDATE journal_entries SET store_id = $2 WHERE id = $1`, [await entryOf(saleId, kind), other]]]);
      assert.deepEqual(await reported(world), ['money_sale_posted'], `the ${kind} entry in another store`);
    }
  });

  it("money_sale_posted: a sale's entry booked on a day the sale was not made on, or its void's before the sale's", async () => {
    const shifts: Array<[kind: 'sale' | 'sale_void', days: number]> = [['sale', 3], ['sale', -3], ['sale_void', 3], ['sale_void', -3]];
    for (const [kind, days] of shifts) {
      const world = await newWorld();
      const saleId = await sell(world, 'cash', { void: kind === 'sale_void' });
      assert.deepEqual(await reported(world), []);
      // Its source store has no count on any day: nothing moved the money past today.
      await corrupt([[`UPDATE journal_entries SET business_date = business_date + $2::int WHERE id = $1`, [await entryOf(saleId, kind), days]]]);
      assert.deepEqual(await reported(world), ['money_sale_posted'], `the ${kind} entry ${days} days off`);
    }
  });

  it("money_sale_posted: an offline sale booked on the day it reached us instead of the till's day", async () => {
    const world = await newWorld();
    const tillTime = new Date(Date.now() - 5 * 86_400_000).toISOString();
    const synced = await world.owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: world.source, payment_method: 'cash', items: [{ sku_id: world.skuId, quantity: 1, unit_price: 500 }], client_created_at: tillTime }],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const saleId = (await t.admin.query(`SELECT id FROM sales WHERE tenant_id = $1 AND source = 'offline'`, [world.tenantId])).rows[0].id;
    assert.deepEqual(await reported(world), []);
    await corrupt([[`UPDATE journal_entries SET business_date = (created_at AT TIME ZONE 'UTC')::date WHERE id = $1`, [await entryOf(saleId, 'sale')]]]);
    assert.deepEqual(await reported(world), ['money_sale_posted']);
  });

  it("money_sale_posted: a sale's entry renamed to a sale that does not exist (found for the sale left without it and for the entry naming no sale)", async () => {
    const world = await newWorld();
    const saleId = await sell(world, 'cash');
    const nowhere = randomUUID();
    await corrupt([[`UPDATE journal_entries SET subject_id = $2 WHERE id = $1`, [await entryOf(saleId, 'sale'), nowhere]]]);
    const response = await world.owner.get('/v1/integrity');
    assert.equal(response.status, 200);
    const found = (response.body.findings as Array<{ check: string; subject: string; detail: Record<string, unknown> }>)
      .filter((finding) => finding.check === 'money_sale_posted')
      .sort((a, b) => (a.subject === saleId ? -1 : b.subject === saleId ? 1 : 0));
    assert.equal(found.length, 2, JSON.stringify(found));
    assert.equal(found[0]!.subject, saleId);
    assert.deepEqual(
      { sale_entries: found[0]!.detail.sale_entries, void_entries: found[0]!.detail.void_entries, debited: found[0]!.detail.debited, misbooked: found[0]!.detail.misbooked_entries },
      { sale_entries: 0, void_entries: 0, debited: 0, misbooked: [] },
    );
    assert.deepEqual(found[1], { ...found[1], subject: nowhere, detail: { sale_id: nowhere, sale_entries: 1, void_entries: 0, sale_exists: false } });
  });

  it('transfer_in_transit_consistent: an approved transfer with nothing in transit', async () => {
    const world = await newWorld();
    await corrupt([[`UPDATE stock_transfer_items SET quantity_in_transit = 0 WHERE transfer_id = $1`, [world.transferId]]]);
    assert.deepEqual(await reported(world), ['transfer_in_transit_consistent']);
  });

  it('transfer_stock_ledger_matches: more stock left the source than the transfer sent', async () => {
    const world = await newWorld();
    const approvedOp = (await t.admin.query(`SELECT approved_op FROM stock_transfers WHERE id = $1`, [world.transferId])).rows[0].approved_op;
    const balance = (await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId])).rows[0].quantity;
    // The stock ledger and balance agree with each other (no stock finding); the transfer does not.
    await corrupt([
      [
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, -1, $5, 'transfer_out', $6)`,
        [world.tenantId, world.source, world.skuId, approvedOp, balance - 1, `transfer ${world.transferId}`],
      ],
      [`UPDATE stock_balances SET quantity = quantity - 1 WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId]],
    ]);
    assert.deepEqual(await reported(world), ['transfer_stock_ledger_matches']);
  });

  it('transfer_stock_ledger_matches: a transfer that was only requested (or cancelled) yet moved stock — its id in the reason in any letter case', async () => {
    // (a row written before request ids were read lowercased names its transfer in capitals: f0e6f9f)
    for (const spelling of ['lowercase', 'capitals'] as const) {
      const world = await newWorld();
      const requested: string = (await world.owner.post('/v1/transfers', { source_store_id: world.source, destination_store_id: world.destination, items: [{ sku_id: world.skuId, quantity: 2 }] })).body.id;
      const op = (await t.admin.query(`SELECT op_id FROM payments WHERE id = $1`, [world.paymentId])).rows[0].op_id;
      const balance = (await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId])).rows[0].quantity;
      await corrupt([
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, -2, $5, 'transfer_out', $6)`,
          [world.tenantId, world.source, world.skuId, op, balance - 2, `transfer ${spelling === 'capitals' ? requested.toUpperCase() : requested}`],
        ],
        [`UPDATE stock_balances SET quantity = quantity - 2 WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId]],
      ]);
      assert.deepEqual(await reported(world), ['transfer_stock_ledger_matches'], `the transfer's id in ${spelling}`);
    }
  });

  it('transfer_stock_ledger_matches: its approval moved stock it did not send — another SKU, or out of another store', async () => {
    for (const wrong of ['sku', 'store'] as const) {
      const world = await newWorld();
      const approvedOp = (await t.admin.query(`SELECT approved_op FROM stock_transfers WHERE id = $1`, [world.transferId])).rows[0].approved_op;
      let store = world.source;
      let skuId = world.skuId;
      if (wrong === 'sku') {
        skuId = (await world.owner.post('/v1/skus', { code: `X${randomUUID().slice(0, 6)}`, name: 'Vinegar', unit: 'piece', price: 300 })).body.id;
        assert.equal((await world.owner.post(`/v1/stores/${world.source}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 10 }] })).status, 201);
      } else {
        store = world.destination;
        assert.equal((await world.owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 10 }] })).status, 201);
      }
      assert.deepEqual(await reported(world), []);
      const balance = (await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [store, skuId])).rows[0].quantity;
      // Booked as the transfer's own movement, by its approval; the stock ledger and balance agree with each other.
      await corrupt([
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, -3, $5, 'transfer_out', $6)`,
          [world.tenantId, store, skuId, approvedOp, balance - 3, `transfer ${world.transferId}`],
        ],
        [`UPDATE stock_balances SET quantity = quantity - 3 WHERE store_id = $1 AND sku_id = $2`, [store, skuId]],
      ]);
      assert.deepEqual(await reported(world), ['transfer_stock_ledger_matches'], `a transfer_out row of ${wrong === 'sku' ? 'a SKU it did not send' : 'its destination'} under its approval`);
    }
  });

  it('transfer_stock_ledger_names_transfer: transfer rows that name no transfer (one that does not exist, or none at all)', async () => {
    for (const reason of [`transfer ${randomUUID()}`, null, 'transfer of the old shelf']) {
      const world = await newWorld();
      const op = (await t.admin.query(`SELECT op_id FROM payments WHERE id = $1`, [world.paymentId])).rows[0].op_id;
      const balance = (await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId])).rows[0].quantity;
      // Stock out of the source and into the destination as a transfer, balances and running totals in step: no transfer behind it.
      await corrupt([
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, -2, $5, 'transfer_out', $6)`,
          [world.tenantId, world.source, world.skuId, op, balance - 2, reason],
        ],
        [`UPDATE stock_balances SET quantity = quantity - 2 WHERE store_id = $1 AND sku_id = $2`, [world.source, world.skuId]],
      ]);
      assert.deepEqual(await reported(world), ['transfer_stock_ledger_names_transfer'], `reason ${reason}`);
      const findings = (await world.owner.get('/v1/integrity')).body.findings;
      assert.equal(findings.length, 1);
      assert.equal(findings[0].detail.store_id, world.source);
      assert.equal(findings[0].detail.reason, reason);
    }
  });

  it('transfer_shortfall_matches_review_item: a transfer received short whose review item is gone or says other figures, and an item naming no short transfer', async () => {
    /** The world's transfer received with 3 of its 5: one transfer_shortfall item, consistent. */
    const receivedShort = async () => {
      const world = await newWorld();
      const received = await world.owner.post(`/v1/transfers/${world.transferId}/receive`, { items: [{ sku_id: world.skuId, quantity_received: 3 }] });
      assert.equal(received.status, 200, JSON.stringify(received.body));
      assert.deepEqual(await reported(world), []);
      const item = (await t.admin.query(`SELECT id FROM review_items WHERE tenant_id = $1 AND kind = 'transfer_shortfall'`, [world.tenantId])).rows;
      assert.equal(item.length, 1);
      return { world, itemId: item[0].id as string };
    };
    const corruptions: Array<[string, (world: World, itemId: string) => Array<[string, unknown[]]>]> = [
      ['its review item is gone: the missing goods were told to no one', (_world, itemId) => [[`DELETE FROM review_items WHERE id = $1`, [itemId]]]],
      [
        'its review item says another shortfall',
        (_world, itemId) => [[`UPDATE review_items SET detail = jsonb_set(detail, '{lines,0,shortfall}', '1') WHERE id = $1`, [itemId]]],
      ],
      ['its review item is filed under another store', (world, itemId) => [[`UPDATE review_items SET store_id = $2, other_store_id = NULL WHERE id = $1`, [itemId, world.source]]]],
      [
        'a second item for it',
        (_world, itemId) => [
          [
            `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, op_id)
             SELECT tenant_id, $2, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, op_id FROM review_items WHERE id = $1`,
            [itemId, randomUUID()],
          ],
        ],
      ],
    ];
    for (const [what, statements] of corruptions) {
      const { world, itemId } = await receivedShort();
      await corrupt(statements(world, itemId));
      assert.deepEqual(await reported(world), ['transfer_shortfall_matches_review_item'], what);
      const findings = (await world.owner.get('/v1/integrity')).body.findings;
      assert.equal(findings.length, 1, what);
      assert.equal(findings[0].subject, world.transferId, what);
    }
    // A transfer received in full, with a shortfall item naming it all the same.
    const world = await newWorld();
    assert.equal((await world.owner.post(`/v1/transfers/${world.transferId}/receive`)).status, 200);
    const op = (await t.admin.query(`SELECT received_op FROM stock_transfers WHERE id = $1`, [world.transferId])).rows[0].received_op;
    await corrupt([
      [
        `INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, op_id)
         VALUES ($1, $2, 'transfer_shortfall', 'warning', 'stock_transfer', $3, $4, $5, $6, $7)`,
        [
          world.tenantId,
          randomUUID(),
          world.transferId,
          world.destination,
          world.source,
          { transfer_id: world.transferId, source_store_id: world.source, lines: [{ sku_id: world.skuId, sent: 5, received: 3, shortfall: 2 }] },
          op,
        ],
      ],
    ]);
    assert.deepEqual(await reported(world), ['transfer_shortfall_matches_review_item'], 'an item for a transfer that arrived in full');
  });

  it('settlement_matches_ledger: a settlement whose figures no longer match its day in the ledger', async () => {
    const world = await newWorld();
    await corrupt([[`UPDATE settlements SET cash_sales = cash_sales + 100, expected_cash = expected_cash + 100, variance = variance - 100 WHERE id = $1`, [world.settlementId]]]);
    assert.deepEqual(await reported(world), ['settlement_matches_ledger']);
  });

  it('settlement_matches_ledger: figures moved between components (their sum unchanged) are found too', async () => {
    const world = await newWorld();
    await corrupt([[`UPDATE settlements SET cash_sales = cash_sales + 100, cash_voids = cash_voids + 100 WHERE id = $1`, [world.settlementId]]]);
    assert.deepEqual(await reported(world), ['settlement_matches_ledger']);
  });

  it("settlement_matches_ledger: a recount after a rejection that expects another float than the day's first count", async () => {
    const world = await newWorld();
    const rejected = await world.owner.post(`/v1/settlements/${world.settlementId}/reject`, {}, { headers: { 'if-match': '"1"' } });
    assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
    const first = (await t.admin.query(`SELECT business_date::text AS day, float_amount::int FROM settlements WHERE id = $1`, [world.settlementId])).rows[0];
    const recount = await world.owner.post('/v1/settlements', { store_id: world.destination, business_date: first.day, declared_cash: 0 });
    assert.equal(recount.status, 201, JSON.stringify(recount.body));
    assert.equal(recount.body.float_amount, first.float_amount);
    assert.deepEqual(await reported(world), []);
    // The drawer started the day with the first count's float; the recount expects 300 more (its figures otherwise the ledger's).
    await corrupt([[`UPDATE settlements SET float_amount = float_amount + 300, expected_cash = expected_cash + 300, variance = variance - 300 WHERE id = $1`, [recount.body.id]]]);
    assert.deepEqual(await reported(world), ['settlement_matches_ledger']);
  });
});
