import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, returnRowCounts, saleMoney as saleMoneyOf } from './testkit.js';

/**
 * A return a till made offline (sent with `client_created_at`) before the
 * sale was voided, arriving after the void: the till took the goods back and
 * handed out the refund, so it is recorded — with no stock or money effect
 * (the void already gave back all the sale held and reversed its money),
 * `after_void: true`, and a `sale_return_after_void` review item so someone
 * checks the till's cash. Real HTTP, then the rows left behind.
 */
describe('a return queued offline before a void, arriving after it', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let milk: string;
  let cloth: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'AV1');
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    cloth = ok(await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 333, tracks_pieces: true })).body.id;
    await givenStock(owner, storeId, [{ sku_id: milk, quantity: 10_000 }]);
  });
  after(() => t.close());

  function ok<T extends ApiResponse>(response: T, status = 201): T {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response;
  }

  const sell = async (quantity: number, extra: Record<string, unknown> = {}) =>
    ok(await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity, unit_price: 120 }], ...extra }, { idempotencyKey: randomUUID() }))
      .body as { id: string; op_id: string; receipt_number: number; total: number };
  const voidSale = (saleId: string, body: Record<string, unknown> = {}) => owner.post(`/v1/sales/${saleId}/void`, { reason: 'wrong sale', ...body }, { idempotencyKey: randomUUID() });
  const giveBack = (saleId: string, items: Array<Record<string, unknown>>, clientCreatedAt?: string, key = randomUUID()) =>
    owner.post(`/v1/sales/${saleId}/returns`, { items, reason: 'customer brought it back', ...(clientCreatedAt === undefined ? {} : { client_created_at: clientCreatedAt }) }, { idempotencyKey: key });

  const ago = (seconds: number) => new Date(Date.now() - seconds * 1000).toISOString();
  const rowCounts = () => returnRowCounts(t, tenantId);
  const saleMoney = (saleId: string) => saleMoneyOf(t, tenantId, storeId, saleId);
  const noFindings = async () => assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  const rowsOfOp = async (opId: string) => {
    const { rows } = await t.admin.query(
      `SELECT (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2)::int AS ledger,
              (SELECT count(*) FROM journal_entries WHERE tenant_id = $1 AND op_id = $2)::int AS entries`,
      [tenantId, opId],
    );
    return rows[0] as { ledger: number; entries: number };
  };
  const reviewItemsOf = async (returnId: string) =>
    (
      await t.admin.query(
        `SELECT kind, severity, subject_type, subject_id, store_id, status, op_id, detail FROM review_items WHERE tenant_id = $1 AND subject_id = $2 ORDER BY created_at`,
        [tenantId, returnId],
      )
    ).rows;

  it('is recorded as a fact: its lines and refund, no stock or money moved a second time, after_void true, a review item for the till\'s cash; the same key replays it', async () => {
    // Given a sale of 3 milk the till took 2 back from at 10:00 while offline, and the sale voided online at 10:05
    const sale = await sell(3);
    const tillTime = ago(120);
    const voided = ok(await voidSale(sale.id), 200);
    const milkAfterVoid = await balanceAndLedger(t, tenantId, storeId, milk);
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    const before = await rowCounts();
    // When the till comes back online and sends its queued return
    const key = randomUUID();
    const response = ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 2 }], tillTime, key));
    // Then it is recorded, marked, with what the till refunded
    const returned = response.body;
    assert.equal(returned.after_void, true);
    assert.equal(returned.return_number, 1);
    assert.equal(returned.refund_total, 240);
    assert.equal(returned.client_created_at, tillTime);
    assert.deepEqual(returned.lines.map((line: { sku_id: string; quantity: number; refund: number }) => [line.sku_id, line.quantity, line.refund]), [[milk, 2, 240]]);
    assert.equal(returned.sale_returned_total, 0, 'the void reversed the sale: the after-void return takes nothing more back');
    assert.deepEqual(returned.remaining, [{ sku_id: milk, sold: 3, returned: 2, returnable: 1, returnable_piece_ids: [] }]);
    // no stock, no journal entry: the void gave all of it back once
    assert.deepEqual(await rowsOfOp(returned.op_id), { ledger: 0, entries: 0 });
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), milkAfterVoid);
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    const after = await rowCounts();
    assert.deepEqual(
      { returns: after.returns, return_items: after.return_items, review_items: after.review_items, entries: after.entries, ledger: after.ledger, returned_total: after.returned_total },
      { returns: Number(before.returns) + 1, return_items: Number(before.return_items) + 1, review_items: Number(before.review_items) + 1, entries: before.entries, ledger: before.ledger, returned_total: before.returned_total },
    );
    // and someone is asked to check the till's cash
    const items = await reviewItemsOf(returned.id);
    assert.equal(items.length, 1);
    assert.deepEqual(
      { ...items[0], detail: undefined },
      { kind: 'sale_return_after_void', severity: 'warning', subject_type: 'sale_return', subject_id: returned.id, store_id: storeId, status: 'open', op_id: returned.op_id, detail: undefined },
    );
    assert.deepEqual(
      { ...items[0].detail, message: undefined },
      {
        sale_id: sale.id,
        receipt_number: sale.receipt_number,
        return_id: returned.id,
        return_number: 1,
        payment_method: 'cash',
        refund_total: 240,
        client_created_at: tillTime,
        voided_at: voided.body.voided_at,
        void_client_created_at: null,
        voided_by_op: voided.body.voided_by_op,
        message: undefined,
      },
    );
    assert.match(items[0].detail.message, /refunded 240 .*after the sale was voided/);
    // the sale shows it
    const shown = ok(await owner.get(`/v1/sales/${sale.id}`), 200).body;
    assert.equal(shown.status, 'voided');
    assert.equal(shown.returned_total, 0);
    assert.deepEqual(shown.returns.map((r: { id: string; after_void: boolean }) => [r.id, r.after_void]), [[returned.id, true]]);
    // the same key replays it, nothing new written
    const again = ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 2 }], tillTime, key));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, returned);
    assert.deepEqual(await rowCounts(), after);
    await noFindings();
  });

  it('a return before the void is after_void false; one without client_created_at, or whose till time is not before the void, stays 409 invalid_transition, nothing written', async () => {
    const sale = await sell(4);
    const first = ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], ago(600)));
    assert.equal(first.body.after_void, false);
    const voided = ok(await voidSale(sale.id), 200);
    const before = await rowCounts();
    for (const clientCreatedAt of [undefined, new Date(Date.parse(voided.body.voided_at) + 1).toISOString(), new Date(Date.now() + 60_000).toISOString()]) {
      const late = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], clientCreatedAt);
      assert.deepEqual([late.status, late.body.code], [409, 'invalid_transition'], String(clientCreatedAt));
    }
    assert.deepEqual(await rowCounts(), before);
    await noFindings();
  });

  it('a void the till queued: the return counts as before it only when its till time is before the void\'s till time (void_client_created_at)', async () => {
    const sale = await sell(3);
    const voidTillTime = ago(300);
    ok(await voidSale(sale.id, { client_created_at: voidTillTime }), 200);
    const before = await rowCounts();
    // made on a till after the void was made on another (though before the void reached us): refused
    const afterTheVoid = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], ago(200));
    assert.deepEqual([afterTheVoid.status, afterTheVoid.body.code], [409, 'invalid_transition']);
    assert.match(afterTheVoid.body.detail, /voided/);
    assert.deepEqual(await rowCounts(), before);
    // made before it: recorded
    const beforeTheVoid = ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], ago(400)));
    assert.equal(beforeTheVoid.body.after_void, true);
    assert.equal((await reviewItemsOf(beforeTheVoid.body.id)).length, 1);
    await noFindings();
  });

  it('quantities are still held to what the sale sold minus every return, before or after the void; a SKU it did not sell is 400', async () => {
    const sale = await sell(3);
    ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }]));
    ok(await voidSale(sale.id), 200);
    const tillTime = ago(60);
    const before = await rowCounts();
    const tooMany = await giveBack(sale.id, [{ sku_id: milk, quantity: 3 }], tillTime);
    assert.deepEqual([tooMany.status, tooMany.body.code, tooMany.body.returnable], [409, 'return_exceeds_sale', [{ sku_id: milk, requested: 3, returnable: 2 }]]);
    const notSold = await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [randomUUID()] }], tillTime);
    assert.equal(notSold.status, 400, JSON.stringify(notSold.body));
    assert.deepEqual(await rowCounts(), before);
    const two = ok(await giveBack(sale.id, [{ sku_id: milk, quantity: 2 }], tillTime));
    assert.equal(two.body.after_void, true);
    assert.equal(two.body.sale_returned_total, 120);
    assert.deepEqual(two.body.remaining, [{ sku_id: milk, sold: 3, returned: 3, returnable: 0, returnable_piece_ids: [] }]);
    const nothingLeft = await giveBack(sale.id, [{ sku_id: milk, quantity: 1 }], tillTime);
    assert.deepEqual([nothingLeft.status, nothingLeft.body.code], [409, 'return_exceeds_sale']);
    await noFindings();
  });

  it('workshop pieces: a piece the sale sold and no return took back is recorded, the piece left as the void left it; named again, 409 piece_not_returnable', async () => {
    const pieces = ok(await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 1500 }, { kind: 'roll', quantity: 2500 }] }, { idempotencyKey: randomUUID() })).body.pieces.map(
      (piece: { id: string }) => piece.id,
    ) as string[];
    const sale = ok(await owner.post('/v1/sales', { store_id: storeId, payment_method: 'card', items: [{ sku_id: cloth, unit_price: 333, piece_ids: pieces }] }, { idempotencyKey: randomUUID() })).body;
    ok(await voidSale(sale.id), 200);
    const piecesAfterVoid = (await t.admin.query(`SELECT id, status, sold_by_op FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`, [tenantId, pieces])).rows;
    assert.ok(piecesAfterVoid.every((piece) => piece.status === 'in_stock' && piece.sold_by_op === null));
    const clothAfterVoid = await balanceAndLedger(t, tenantId, storeId, cloth);
    const tillTime = ago(30);
    const returned = ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [pieces[1]] }], tillTime));
    assert.equal(returned.body.after_void, true);
    assert.deepEqual(returned.body.lines.map((line: { quantity: number; piece_ids: string[] }) => [line.quantity, line.piece_ids]), [[2500, [pieces[1]]]]);
    assert.equal(returned.body.refund_total, 833); // 2.5 m at 333 = 832.5 → 833
    assert.deepEqual((await t.admin.query(`SELECT id, status, sold_by_op FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`, [tenantId, pieces])).rows, piecesAfterVoid);
    assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, cloth), clothAfterVoid);
    const before = await rowCounts();
    const again = await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [pieces[1]] }], tillTime);
    assert.deepEqual([again.status, again.body.code, again.body.pieces], [409, 'piece_not_returnable', [{ id: pieces[1], sku_id: cloth, reason: 'already_returned' }]]);
    assert.deepEqual(await rowCounts(), before);
    await noFindings();
  });

  it('a void and a queued return of one sale racing: either the return then the void, or the void then the after-void return — stock and money once, a review item only for the latter', async () => {
    const orders = new Set<string>();
    for (let round = 0; round < 12; round++) {
      const sale = await sell(5);
      const tillTime = ago(90);
      const milkBefore = await balanceAndLedger(t, tenantId, storeId, milk);
      const [voided, returned] = await Promise.all([voidSale(sale.id), giveBack(sale.id, [{ sku_id: milk, quantity: 2 }], tillTime)]);
      ok(voided, 200);
      ok(returned);
      const afterVoid = returned.body.after_void as boolean;
      orders.add(afterVoid ? 'void, then return' : 'return, then void');
      const returnRows = await rowsOfOp(returned.body.op_id);
      const voidLedger = (await t.admin.query(`SELECT coalesce(sum(quantity_change), 0)::int AS q FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voided.body.voided_by_op])).rows[0].q;
      const saleRow = (await t.admin.query(`SELECT status, returned_total::int FROM sales WHERE tenant_id = $1 AND id = $2`, [tenantId, sale.id])).rows[0];
      const stored = (await t.admin.query(`SELECT after_void FROM sale_returns WHERE tenant_id = $1 AND id = $2`, [tenantId, returned.body.id])).rows[0];
      assert.equal(stored.after_void, afterVoid);
      if (afterVoid) {
        assert.deepEqual({ ...returnRows, voidLedger, saleRow }, { ledger: 0, entries: 0, voidLedger: 5, saleRow: { status: 'voided', returned_total: 0 } });
        assert.equal((await reviewItemsOf(returned.body.id)).length, 1);
      } else {
        assert.deepEqual({ ...returnRows, voidLedger, saleRow }, { ledger: 1, entries: 1, voidLedger: 3, saleRow: { status: 'voided', returned_total: 240 } });
        assert.equal((await reviewItemsOf(returned.body.id)).length, 0);
      }
      // all 5 back exactly once, the sale's money netted to zero
      assert.deepEqual(await balanceAndLedger(t, tenantId, storeId, milk), { balance: milkBefore.balance + 5, ledger: milkBefore.ledger + 5 });
      assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    }
    await noFindings();
    console.log(`racing void and queued return, orders seen: ${[...orders].join('; ')}`);
  });
});
