import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

// README, Errors: unknown ids are `400 validation_failed` "refused at its field",
// as a sale does (`/body/items/<i>/sku_id`). A receipt, a transfer request and an
// order and a visit's goods named only the list (`/body/items`, `/body/lines`),
// so a till could not tell which of its lines to correct.
describe('an unknown SKU is refused at its line', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let other: { id: string };
  let soap: { id: string };
  let visitId: string;
  const SHOP = { latitude: -1.286389, longitude: 36.817223 };
  const unknown = '00000000-0000-4000-8000-0000000000ab';

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'MAIN', name: 'Main' })).body;
    other = (await owner.post('/v1/stores', { code: 'WEST', name: 'West' })).body;
    soap = (await owner.post('/v1/skus', { code: 'SOAP', name: 'Soap', unit: 'piece', price: 120 })).body;
    assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: 10 }] })).status, 201);
    const agent = (await owner.post('/v1/tokens', { name: 'amina', role: 'field_agent', store_ids: [store.id] })).body;
    const pos = (await owner.post('/v1/points-of-sale', { name: 'Kiosk', store_id: store.id, ...SHOP })).body;
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pos.id, agent_token_id: agent.id, scheduled_for: new Date().toISOString() });
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    visitId = visit.body.id;
  });
  after(() => t.close());

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger`,
        [tenantId],
      )
    ).rows[0];

  const cases: Array<[string, () => Promise<{ status: number; body: any }>, string[]]> = [
    [
      'a receipt of goods',
      () => owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: soap.id, quantity: 1 }, { sku_id: unknown, quantity: 2 }] }),
      ['/body/items/1/sku_id'],
    ],
    [
      'a transfer request',
      () =>
        owner.post('/v1/transfers', {
          source_store_id: store.id,
          destination_store_id: other.id,
          items: [{ sku_id: unknown, quantity: 1 }, { sku_id: soap.id, quantity: 1 }, { sku_id: unknown, quantity: 3 }],
        }),
      ['/body/items/0/sku_id', '/body/items/2/sku_id'],
    ],
    [
      'an order',
      () =>
        owner.post('/v1/orders', {
          store_id: store.id,
          lines: [{ sku_id: soap.id, quantity: 1 }, { sku_id: unknown, quantity: 1 }],
          shipping_address: { name: 'A', line1: 'B', city: 'C', postal_code: 'D', country: 'FR' },
          payment_reference: 'pay-1',
        }),
      ['/body/lines/1/sku_id'],
    ],
    [
      "a visit's goods",
      () => owner.post(`/v1/visits/${visitId}/complete`, { ...SHOP, lines: [{ sku_id: unknown, quantity: 1 }, { sku_id: soap.id, quantity: 2 }] }),
      ['/body/lines/0/sku_id'],
    ],
  ];

  for (const [name, send, paths] of cases) {
    it(`${name}: 400 validation_failed at each line naming it, nothing written`, async () => {
      const before = await counts();
      const response = await send();
      assert.equal(response.status, 400, JSON.stringify(response.body));
      assert.equal(response.body.code, 'validation_failed');
      assert.deepEqual(
        response.body.errors.map((e: { path: string }) => e.path),
        paths,
      );
      assert.deepEqual(await counts(), before);
    });
  }

  it('a stock adjustment names its one SKU at /body/sku_id, as before', async () => {
    const response = await owner.post(`/v1/stores/${store.id}/stock/adjustments`, { sku_id: unknown, quantity_change: 1, reason: 'found' });
    assert.equal(response.status, 400, JSON.stringify(response.body));
    assert.deepEqual(
      response.body.errors.map((e: { path: string }) => e.path),
      ['/body/sku_id'],
    );
  });
});
