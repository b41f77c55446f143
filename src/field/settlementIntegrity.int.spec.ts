import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';

const SHOP = { latitude: 52.520008, longitude: 13.404954 };

/**
 * A consignment is settled whole: every unit left is accounted for once, as
 * sold or returned, at the price agreed when it was left. A settlement that
 * accounts for more or fewer units than were left, or sells at another price,
 * is a real loss (stock that appears or vanishes, money owed at the wrong
 * price) even when each ledger agrees with the settlement's own lines — and
 * the integrity checks must report it. Each case below corrupts one
 * settlement consistently (settlement lines, stock ledger, balances, postings
 * and account totals agree with each other), as a code bug would leave it.
 */
describe('integrity: a consignment settlement accounts for exactly what was left, at its price', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let agentId: string;
  let storeId: string;
  let pos: string;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** Each case in a tenant of its own: its corruption is the only one its checks see. */
  const setup = async () => {
    ({ owner, tenantId } = await t.newTenant());
    storeId = (await owner.post('/v1/stores', { code: 'DEPOT', name: 'Depot' })).body.id;
    agentId = (await owner.post('/v1/tokens', { name: 'agent', role: 'field_agent', store_ids: [storeId] })).body.id;
    pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: storeId, ...SHOP })).body.id;
  };

  const k = () => ({ idempotencyKey: randomUUID() });
  const sku = async (price: number) => {
    const created = await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'Item', unit: 'piece', price });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal((await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: created.body.id, quantity: 100 }] }, k())).status, 201);
    return created.body.id as string;
  };
  const complete = async (body: object) => {
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pos, agent_token_id: agentId, scheduled_for: new Date().toISOString() }, k());
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const done = await owner.post(`/v1/visits/${visit.body.id}/complete`, { ...SHOP, lines: [], ...body }, k());
    assert.equal(done.status, 200, JSON.stringify(done.body));
    return done.body;
  };
  /** Runs statements as the owner with triggers off (append-only rows changed, as a bug or a hand edit would). */
  const corrupt = (statements: Array<[string, unknown[]]>) => withTriggersOff(t.admin, statements);

  it('more returned than was left, a consignment line not settled, a line settled at another price: each reported, by that check only', async () => {
    await setup();
    const [soap, tea, jam] = [await sku(120), await sku(300), await sku(250)];
    const left = await complete({ lines: [{ sku_id: soap, quantity: 4 }, { sku_id: tea, quantity: 2 }, { sku_id: jam, quantity: 5 }] });
    const consignmentId = left.consignment.id as string;
    const settled = await complete({
      settlement: {
        consignment_id: consignmentId,
        lines: [
          { sku_id: soap, sold_quantity: 3, returned_quantity: 1 },
          { sku_id: tea, sold_quantity: 0, returned_quantity: 2 },
          { sku_id: jam, sold_quantity: 2, returned_quantity: 3 },
        ],
      },
    });
    const settlement = settled.settlement as { id: string; op_id: string; journal_entry_id: string; amount_owed: number };
    assert.equal(settlement.amount_owed, 3 * 120 + 2 * 250);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);

    const returnRow = async (skuId: string) =>
      (
        await t.admin.query<{ id: string }>(`SELECT id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 AND sku_id = $3 AND kind = 'consignment_return'`, [
          tenantId,
          settlement.op_id,
          skuId,
        ])
      ).rows[0]!.id;
    const [soapReturn, teaReturn] = [await returnRow(soap), await returnRow(tea)];
    const account = async (key: string) => (await t.admin.query<{ id: string }>('SELECT id FROM accounts WHERE tenant_id = $1 AND key = $2', [tenantId, key])).rows[0]!.id;
    const partyId = (await owner.get(`/v1/points-of-sale/${pos}`)).body.party_id as string;
    const [receivable, revenue] = [await account(`party/${partyId}`), await account(`store/${storeId}/sales_revenue`)];

    await corrupt([
      // soap: 4 left, settled as 3 sold + 2 returned — a unit came back to the store that was never left.
      ['UPDATE consignment_settlement_lines SET returned_quantity = 2 WHERE tenant_id = $1 AND settlement_id = $2 AND sku_id = $3', [tenantId, settlement.id, soap]],
      ['UPDATE stock_ledger SET quantity_change = 2, quantity_after = quantity_after + 1 WHERE tenant_id = $1 AND id = $2', [tenantId, soapReturn]],
      ['UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, soap]],
      // tea: 2 left, not in the settlement at all — neither sold nor returned, the goods are gone.
      ['DELETE FROM consignment_settlement_lines WHERE tenant_id = $1 AND settlement_id = $2 AND sku_id = $3', [tenantId, settlement.id, tea]],
      ['DELETE FROM stock_ledger WHERE tenant_id = $1 AND id = $2', [tenantId, teaReturn]],
      ['UPDATE stock_balances SET quantity = quantity - 2 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, tea]],
      // jam: left at 250, 2 sold at 200 — the point of sale owes 100 less than agreed (amount, postings and balances all say 200).
      ['UPDATE consignment_settlement_lines SET unit_price = 200 WHERE tenant_id = $1 AND settlement_id = $2 AND sku_id = $3', [tenantId, settlement.id, jam]],
      ['UPDATE consignment_settlements SET amount_owed = amount_owed - 100 WHERE tenant_id = $1 AND id = $2', [tenantId, settlement.id]],
      ['UPDATE postings SET amount = amount - 100 WHERE tenant_id = $1 AND entry_id = $2 AND account_id = $3', [tenantId, settlement.journal_entry_id, receivable]],
      ['UPDATE postings SET amount = amount + 100 WHERE tenant_id = $1 AND entry_id = $2 AND account_id = $3', [tenantId, settlement.journal_entry_id, revenue]],
      ['UPDATE accounts SET balance = balance - 100, debit_total = debit_total - 100 WHERE tenant_id = $1 AND id = $2', [tenantId, receivable]],
      ['UPDATE accounts SET balance = balance + 100, credit_total = credit_total - 100 WHERE tenant_id = $1 AND id = $2', [tenantId, revenue]],
    ]);

    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      findings.map(({ check, subject }) => ({ check, subject })).sort((a, b) => (a.subject < b.subject ? -1 : 1)),
      [soap, tea, jam]
        .map((skuId) => ({ check: 'consignment_settlement_accounts_for_consignment', subject: `consignment_settlement:${settlement.id}/sku:${skuId}` }))
        .sort((a, b) => (a.subject < b.subject ? -1 : 1)),
      JSON.stringify(findings),
    );
    const detail = (skuId: string) => findings.find((finding) => finding.subject.endsWith(skuId))!.detail;
    assert.deepEqual(detail(soap), { consignment_id: consignmentId, left: 4, sold: 3, returned: 2, left_at_price: 120, settled_at_price: 120 });
    assert.deepEqual(detail(tea), { consignment_id: consignmentId, left: 2, sold: null, returned: null, left_at_price: 300, settled_at_price: null });
    assert.deepEqual(detail(jam), { consignment_id: consignmentId, left: 5, sold: 2, returned: 3, left_at_price: 250, settled_at_price: 200 });
  });

  it("a settlement's money credited to the store's cash drawer instead of its sales revenue (every account equal to its postings) is reported", async () => {
    await setup();
    const soap = await sku(120);
    // The store's drawer has had cash (a customer paid): its account exists.
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Walk-in' })).body.id;
    assert.equal((await owner.post('/v1/payments', { party_id: customer, store_id: storeId, method: 'cash', amount: 1000 }, k())).status, 201);
    const left = await complete({ lines: [{ sku_id: soap, quantity: 5 }] });
    const settled = await complete({ settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: soap, sold_quantity: 5, returned_quantity: 0 }] } });
    const settlement = settled.settlement as { id: string; journal_entry_id: string; amount_owed: number };
    assert.equal(settlement.amount_owed, 600);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    const account = async (kind: string) =>
      (await t.admin.query<{ id: string }>('SELECT id FROM accounts WHERE tenant_id = $1 AND key = $2', [tenantId, `store/${storeId}/${kind}`])).rows[0]!.id;
    const [revenue, drawer] = [await account('sales_revenue'), await account('cash_drawer')];
    // The point of sale owes 600 (right), but the 600 left the drawer (cash the next count would expect gone) instead of being revenue.
    await corrupt([
      ['UPDATE postings SET account_id = $3 WHERE tenant_id = $1 AND entry_id = $2 AND account_id = $4', [tenantId, settlement.journal_entry_id, drawer, revenue]],
      ['UPDATE accounts SET balance = balance + 600, credit_total = credit_total - 600 WHERE tenant_id = $1 AND id = $2', [tenantId, revenue]],
      ['UPDATE accounts SET balance = balance - 600, credit_total = credit_total + 600 WHERE tenant_id = $1 AND id = $2', [tenantId, drawer]],
    ]);
    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      findings.map(({ check, subject }) => ({ check, subject })),
      [{ check: 'consignment_settlement_posted', subject: `consignment_settlement:${settlement.id}` }],
      JSON.stringify(findings),
    );
  });

  it('a settlement line for a SKU the consignment never held is reported too', async () => {
    await setup();
    const [soap, extra] = [await sku(120), await sku(80)];
    const left = await complete({ lines: [{ sku_id: soap, quantity: 3 }] });
    const settled = await complete({ settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: soap, sold_quantity: 0, returned_quantity: 3 }] } });
    const settlement = settled.settlement as { id: string; op_id: string };
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['consignment_settlement_accounts_for_consignment']), []);
    // A returned unit of a SKU that was never left, its stock ledger row and balance agreeing with it.
    await corrupt([
      [
        `INSERT INTO consignment_settlement_lines (tenant_id, id, settlement_id, sku_id, sold_quantity, returned_quantity, unit_price, op_id)
         VALUES ($1, $2, $3, $4, 0, 1, 80, $5)`,
        [tenantId, randomUUID(), settlement.id, extra, settlement.op_id],
      ],
      [
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
         SELECT tenant_id, store_id, sku_id, $4, 1, quantity + 1, 'consignment_return', 'consignment' FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`,
        [tenantId, storeId, extra, settlement.op_id],
      ],
      ['UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, storeId, extra]],
    ]);
    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      findings.map(({ check, subject }) => ({ check, subject })),
      [{ check: 'consignment_settlement_accounts_for_consignment', subject: `consignment_settlement:${settlement.id}/sku:${extra}` }],
      JSON.stringify(findings),
    );
    assert.deepEqual(findings[0]!.detail, { consignment_id: left.consignment.id, left: null, sold: 0, returned: 1, left_at_price: null, settled_at_price: 80 });
  });

  it("a consignment, or its settlement, on a visit to another point of sale is reported, each by consignment_visit_completed only (the points of sale's last visits, by point_of_sale_last_visit)", async () => {
    await setup();
    const soap = await sku(120);
    const left = await complete({ lines: [{ sku_id: soap, quantity: 3 }] });
    const settled = await complete({ settlement: { consignment_id: left.consignment.id, lines: [{ sku_id: soap, sold_quantity: 1, returned_quantity: 2 }] } });
    const settlement = settled.settlement as { id: string };
    const elsewhere = (await owner.post('/v1/points-of-sale', { name: 'Other kiosk', store_id: storeId, ...SHOP })).body.id as string;
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    const visitOf = async (table: string, id: string) => (await t.admin.query<{ visit_id: string }>(`SELECT visit_id FROM ${table} WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0]!.visit_id;
    const [leftOn, settledOn] = [await visitOf('consignments', left.consignment.id), await visitOf('consignment_settlements', settlement.id)];
    // The settling visit is moved to another shop: the goods are "settled" where they never were.
    await corrupt([['UPDATE visits SET point_of_sale_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, settledOn, elsewhere]]]);
    // A moved visit also leaves both points of sale naming the wrong last visit
    // (its own check's finding, in no particular order among its rows).
    const named = (findings: Array<{ check: string; subject: string }>) => findings.map(({ check, subject }) => `${check} ${subject}`).sort();
    let findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      named(findings),
      [`consignment_visit_completed consignment_settlement:${settlement.id}`, `point_of_sale_last_visit point_of_sale:${elsewhere}`, `point_of_sale_last_visit point_of_sale:${pos}`].sort(),
      JSON.stringify(findings),
    );
    const detail = findings.find((finding) => finding.check === 'consignment_visit_completed')!.detail as { point_of_sale_id: string; visit_point_of_sale_id: string };
    assert.deepEqual([detail.point_of_sale_id, detail.visit_point_of_sale_id], [pos, elsewhere]);
    // Put back; then the visit that left them is moved instead.
    await corrupt([
      ['UPDATE visits SET point_of_sale_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, settledOn, pos]],
      ['UPDATE visits SET point_of_sale_id = $3 WHERE tenant_id = $1 AND id = $2', [tenantId, leftOn, elsewhere]],
    ]);
    findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      named(findings),
      [`consignment_visit_completed consignment:${left.consignment.id}`, `point_of_sale_last_visit point_of_sale:${elsewhere}`].sort(),
      JSON.stringify(findings),
    );
  });
});
