import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenStock, givenStore, givenToken } from '../sales/testkit.js';

/**
 * Transfers under a crowd of concurrent actions, as real HTTP requests: two
 * managers of the source approving with require_second_approver on (one of
 * them the requester), a receipt with a shortfall, a cancel, stale and fresh
 * If-Match, and sales at the source eating the same stock. Then the rows:
 * each store's ledger sum = its balance, the stock that left the source =
 * the approved transfers' quantities, the stock that arrived = what was
 * received, and every integrity check clean.
 */
describe('stock transfers: approvals, receipts, cancels and sales of the same stock at once', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: string;
  let south: string;
  let flour: string;
  let mira: ApiClient;
  let omar: ApiClient;
  let southStaff: ApiClient;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = await givenStore(owner, 'N');
    south = await givenStore(owner, 'S');
    flour = (await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'piece', price: 100 })).body.id;
    await givenStock(owner, north, [{ sku_id: flour, quantity: 300 }]);
    mira = await givenToken(t, owner, 'manager', [north]);
    omar = await givenToken(t, owner, 'manager', [north]);
    southStaff = await givenToken(t, owner, 'manager', [south]);
    assert.equal((await owner.patch('/v1/tenant/settings', { require_second_approver: true })).status, 200);
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const stock = async (storeId: string) => {
    const { rows } = await t.admin.query(
      `SELECT (SELECT coalesce(sum(quantity), 0) FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::bigint AS balance,
              (SELECT coalesce(sum(quantity_change), 0) FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3)::bigint AS ledger`,
      [tenantId, storeId, flour],
    );
    assert.equal(Number(rows[0].ledger), Number(rows[0].balance), 'ledger = balance');
    return Number(rows[0].balance);
  };

  it('rounds of transfers each raced by both managers approving, a receipt, a cancel and a sale at the source: the stock says exactly what happened', async () => {
    let left = 0;
    let arrived = 0;
    let sold = 0;
    for (let round = 0; round < 12; round++) {
      const quantity = 10 + round;
      const requested = await mira.post('/v1/transfers', { source_store_id: north, destination_store_id: south, items: [{ sku_id: flour, quantity }] }, k());
      assert.equal(requested.status, 201, JSON.stringify(requested.body));
      const id = requested.body.id as string;
      const etag = requested.headers.get('etag') as string;
      const received = round % 3 === 0 ? undefined : { items: [{ sku_id: flour, quantity_received: quantity - (round % 3) }] };
      const [byRequester, byOther, byOtherAgain, receipt, cancel, sale] = await Promise.all([
        mira.post(`/v1/transfers/${id}/approve`, undefined, k()),
        omar.post(`/v1/transfers/${id}/approve`, undefined, { ...k(), headers: { 'if-match': etag } }),
        omar.post(`/v1/transfers/${id}/approve`, undefined, k()),
        southStaff.post(`/v1/transfers/${id}/receive`, received ?? null, k()),
        (round % 2 === 0 ? mira : southStaff).post(`/v1/transfers/${id}/cancel`, undefined, k()),
        owner.post('/v1/sales', { store_id: north, payment_method: 'cash', items: [{ sku_id: flour, quantity: 7, unit_price: 100 }] }, k()),
      ]);
      const body = JSON.stringify([byRequester.body, byOther.body, byOtherAgain.body, receipt.body, cancel.body, sale.body]);
      assert.equal(byRequester.status, 403, body);
      assert.equal(byRequester.body.reason, 'second_approver_required', body);
      for (const response of [byOther, byOtherAgain, receipt, cancel]) assert.ok([200, 409, 412].includes(response.status), body);
      for (const response of [byRequester, byOther, byOtherAgain, receipt, cancel]) {
        if (response.status >= 400) assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
      }
      assert.ok([201, 409].includes(sale.status), body);
      if (sale.status === 201) sold += 7;
      const row = (await t.admin.query(`SELECT status FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
      const approved = byOther.status === 200 || byOtherAgain.status === 200;
      assert.equal(approved && cancel.status === 200, false, `approved and cancelled: ${body}`);
      if (approved) {
        // both approvals are the same one (one answered as already done), or one of them was refused
        left += quantity;
        if (receipt.status === 200) {
          arrived += received?.items[0]!.quantity_received ?? quantity;
          assert.equal(row.status, 'received');
        } else assert.equal(row.status, 'approved', body);
      } else {
        assert.equal(receipt.status, 409, body);
        assert.equal(row.status, cancel.status === 200 ? 'cancelled' : 'requested', body);
      }
      const ops = (await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'transfer.approve'`, [tenantId])).rows[0].n;
      assert.ok(ops <= round + 1, 'at most one approval operation per transfer');
    }
    assert.equal(await stock(north), 300 - left - sold);
    assert.equal(await stock(south), arrived);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
