import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';

/**
 * Account and party totals grow by addition up to 9 × 10^15 minor units
 * (CHECK accounts_totals_limit, migration 0804); one amount is at most
 * 9 × 10^12. The OpenAPI document must allow the totals the service answers.
 */
describe('money totals in the OpenAPI document', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** The value lies within the documented bounds of its schema. */
  const within = (schema: { minimum?: number; maximum?: number }, value: number, what: string) => {
    assert.ok(schema.maximum === undefined || value <= schema.maximum, `${what} = ${value} > documented maximum ${schema.maximum}`);
    assert.ok(schema.minimum === undefined || value >= schema.minimum, `${what} = ${value} < documented minimum ${schema.minimum}`);
  };

  it('two payments of the largest amount: the balances answered fit the documented schemas', async () => {
    const { owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'T1', name: 'Totals' })).body;
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body;
    for (let i = 0; i < 2; i++) {
      const paid = await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'bank', amount: 9_000_000_000_000 });
      assert.equal(paid.status, 201, JSON.stringify(paid.body));
    }
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
    const itemSchema = (path: string) => {
      const schema = doc.paths[path].get.responses['200'].content['application/json'].schema;
      return schema.properties.items.items;
    };
    const [balance] = (await owner.get('/v1/ledger/suppliers')).body.items;
    assert.equal(balance.debit_total, 18_000_000_000_000);
    const partySchema = itemSchema('/v1/ledger/suppliers');
    for (const field of ['debit_total', 'credit_total', 'outstanding']) within(partySchema.properties[field], balance[field], `party ${field}`);
    const bank = (await owner.get(`/v1/stores/${store.id}/accounts`)).body.items.find((a: { kind: string }) => a.kind === 'bank');
    assert.equal(bank.credit_total, 18_000_000_000_000);
    const accountSchema = itemSchema('/v1/stores/{store_id}/accounts');
    for (const field of ['balance', 'debit_total', 'credit_total']) within(accountSchema.properties[field], bank[field], `account ${field}`);
    // and the most a total can reach is allowed
    within(partySchema.properties.debit_total, 9_000_000_000_000_000, 'the largest total');
    within(partySchema.properties.outstanding, -9_000_000_000_000_000, 'the lowest outstanding');
  });

  it("a store-day's revenue (the sum of its sales, each up to 9 × 10^12) may reach the revenue account's 9 × 10^15 in the documented schema", async () => {
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
    const revenue = doc.paths['/v1/analytics/daily-sales'].get.responses['200'].content['application/json'].schema.properties.items.items.properties.revenue;
    within(revenue, 9_000_000_000_000_000, 'the largest revenue');
  });

  it("a day's drawer movements of two payments of the largest amount: the settlement answered fits the documented schema", async () => {
    const { owner } = await t.newTenant();
    const store = (await owner.post('/v1/stores', { code: 'T2', name: 'Drawer' })).body;
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Cora' })).body;
    for (let i = 0; i < 2; i++) {
      const paid = await owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount: 9_000_000_000_000 });
      assert.equal(paid.status, 201, JSON.stringify(paid.body));
    }
    const today = new Date().toISOString().slice(0, 10);
    const submitted = await owner.post('/v1/settlements', { store_id: store.id, business_date: today, declared_cash: 0 });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    assert.equal(submitted.body.payments_in, 18_000_000_000_000);
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
    const schema = doc.paths['/v1/settlements/{id}'].get.responses['200'].content['application/json'].schema;
    const read = (await owner.get(`/v1/settlements/${submitted.body.id}`)).body;
    for (const field of ['float_amount', 'cash_sales', 'cash_voids', 'payments_in', 'payments_out', 'other_cash', 'expected_cash', 'declared_cash', 'variance']) {
      within(schema.properties[field], read[field], field);
    }
    // the most a settlement records (beyond it: 422 limit_exceeded) is allowed
    for (const field of ['expected_cash', 'variance']) {
      within(schema.properties[field], Number.MAX_SAFE_INTEGER, `the largest ${field}`);
      within(schema.properties[field], -Number.MAX_SAFE_INTEGER, `the lowest ${field}`);
    }
  });
});
