import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStore } from '../sales/testkit.js';

/** GET /v1/operations/{op_id}: the rows an operation touched, named so they can be found. */
describe('GET /v1/operations/{op_id}: every stock move names its ledger rows by id', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let north: string;
  let south: string;
  let flour: string;
  let salt: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    north = await givenStore(owner, 'OP-N');
    south = await givenStore(owner, 'OP-S');
    flour = await givenSku(owner, 'OP-FLOUR', 'kg');
    salt = await givenSku(owner, 'OP-SALT', 'piece');
  });
  after(() => t.close());

  /** The operation's stock_ledger and stock_balances effects against the ledger rows it wrote. */
  async function assertStockEffects(opId: string) {
    const operation = await owner.get(`/v1/operations/${opId}`);
    assert.equal(operation.status, 200);
    const effects = operation.body.effects as Array<{ table: string; id: string; action: string }>;
    const rows = await t.admin.query(`SELECT id::text, store_id, sku_id FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, opId]);
    assert.ok(rows.rows.length > 0, 'the operation moved stock');
    assert.deepEqual(
      effects.filter((e) => e.table === 'stock_ledger').map((e) => e.id).sort(),
      rows.rows.map((r) => r.id).sort(),
      'each ledger row by its id',
    );
    assert.deepEqual(
      effects.filter((e) => e.table === 'stock_balances').map((e) => e.id).sort(),
      [...new Set(rows.rows.map((r) => `${r.store_id}/${r.sku_id}`))].sort(),
      'each balance it moved by store/sku',
    );
  }

  it('a receipt, an adjustment, a transfer approved and received, a sale and its void', async () => {
    const receipt = await owner.post(`/v1/stores/${north}/stock/receipts`, { items: [{ sku_id: flour, quantity: 5000 }, { sku_id: salt, quantity: 20 }] });
    assert.equal(receipt.status, 201, JSON.stringify(receipt.body));
    await assertStockEffects(receipt.body.op_id);

    const adjustment = await owner.post(`/v1/stores/${north}/stock/adjustments`, { sku_id: salt, quantity_change: -2, reason: 'damaged' });
    assert.equal(adjustment.status, 201, JSON.stringify(adjustment.body));
    await assertStockEffects(adjustment.body.op_id);

    const transfer = await owner.post('/v1/transfers', { source_store_id: north, destination_store_id: south, items: [{ sku_id: flour, quantity: 1000 }] });
    assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
    const approved = await owner.post(`/v1/transfers/${transfer.body.id}/approve`);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const received = await owner.post(`/v1/transfers/${transfer.body.id}/receive`, { items: [{ sku_id: flour, quantity_received: 1000 }] });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    const transferOps = await t.admin.query(
      `SELECT DISTINCT op_id FROM stock_ledger WHERE tenant_id = $1 AND kind IN ('transfer_out', 'transfer_in')`,
      [tenantId],
    );
    assert.equal(transferOps.rows.length, 2);
    for (const row of transferOps.rows) await assertStockEffects(row.op_id);

    const sale = await owner.post('/v1/sales', { store_id: north, payment_method: 'cash', items: [{ sku_id: salt, quantity: 3, unit_price: 50 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    await assertStockEffects(sale.body.op_id);
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'wrong item' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    await assertStockEffects(voided.body.voided_by_op);
  });

  /**
   * The money and order rows an operation wrote, from the rows themselves
   * (each carries its op_id): postings, the accounts they moved or the
   * operation created, order lines and order status history rows.
   */
  async function assertMoneyAndOrderEffects(opId: string, expect: { postings?: boolean; accounts?: boolean; orderRows?: boolean }) {
    const operation = await owner.get(`/v1/operations/${opId}`);
    assert.equal(operation.status, 200, JSON.stringify(operation.body));
    const effects = operation.body.effects as Array<{ table: string; id: string; action: string }>;
    const named = (table: string) => effects.filter((e) => e.table === table).map((e) => `${e.id}:${e.action}`).sort();
    const rows = async (query: string) => (await t.admin.query(query, [tenantId, opId])).rows.map((r) => `${r.id}:${r.action}`).sort();
    const postings = await rows(`SELECT id::text, 'created' AS action FROM postings WHERE tenant_id = $1 AND op_id = $2`);
    const accounts = await rows(
      `SELECT id::text, CASE WHEN op_id = $2 THEN 'created' ELSE 'updated' END AS action FROM accounts
       WHERE tenant_id = $1 AND (op_id = $2 OR id IN (SELECT account_id FROM postings WHERE tenant_id = $1 AND op_id = $2))`,
    );
    const orderLines = await rows(`SELECT id::text, 'created' AS action FROM order_lines WHERE tenant_id = $1 AND op_id = $2`);
    const history = await rows(`SELECT id::text, 'created' AS action FROM order_status_history WHERE tenant_id = $1 AND op_id = $2`);
    assert.equal(postings.length > 0, expect.postings ?? false, 'the operation posted money');
    assert.equal(accounts.length > 0, expect.accounts ?? false, 'the operation created or moved accounts');
    assert.equal(history.length > 0, expect.orderRows ?? false, 'the operation wrote order history');
    assert.deepEqual(named('postings'), postings, 'each posting by its number');
    assert.deepEqual(named('accounts'), accounts, 'each account it moved (created: the operation made it)');
    assert.deepEqual(named('order_lines'), orderLines, 'each order line it created');
    assert.deepEqual(named('order_status_history'), history, 'each order status history row it wrote');
  }

  it('money and order operations name their postings, the accounts they created or moved, and the order lines and history rows they wrote', async () => {
    await owner.post(`/v1/stores/${north}/stock/receipts`, { items: [{ sku_id: salt, quantity: 10 }] });
    const customer = await owner.post('/v1/parties', { kind: 'customer', name: 'Walk-in' });
    assert.equal(customer.status, 201, JSON.stringify(customer.body));
    const party = await t.admin.query(`SELECT op_id FROM parties WHERE tenant_id = $1 AND id = $2`, [tenantId, customer.body.id]);
    await assertMoneyAndOrderEffects(party.rows[0].op_id, { accounts: true });

    const payment = await owner.post('/v1/payments', { party_id: customer.body.id, store_id: north, method: 'cash', amount: 1000 });
    assert.equal(payment.status, 201, JSON.stringify(payment.body));
    const paymentOp = await t.admin.query(`SELECT op_id FROM payments WHERE tenant_id = $1 AND id = $2`, [tenantId, payment.body.id]);
    await assertMoneyAndOrderEffects(paymentOp.rows[0].op_id, { postings: true, accounts: true });

    const sale = await owner.post('/v1/sales', { store_id: north, payment_method: 'cash', items: [{ sku_id: salt, quantity: 2, unit_price: 50 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    await assertMoneyAndOrderEffects(sale.body.op_id, { postings: true, accounts: true });
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'wrong item' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    await assertMoneyAndOrderEffects(voided.body.voided_by_op, { postings: true, accounts: true });

    const order = await owner.post('/v1/orders', {
      store_id: north,
      lines: [{ sku_id: flour, quantity: 1500 }, { sku_id: salt, quantity: 2 }],
      shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' },
      payment_reference: 'pay_ops_1',
    });
    assert.equal(order.status, 201, JSON.stringify(order.body));
    const orderOp = await t.admin.query(`SELECT op_id FROM orders WHERE tenant_id = $1 AND id = $2`, [tenantId, order.body.id]);
    await assertMoneyAndOrderEffects(orderOp.rows[0].op_id, { orderRows: true });
    const cancelled = await owner.post(`/v1/orders/${order.body.id}/cancel`);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    const cancelOp = await t.admin.query(`SELECT op_id FROM order_status_history WHERE tenant_id = $1 AND order_id = $2 AND to_status = 'cancelled'`, [tenantId, order.body.id]);
    await assertMoneyAndOrderEffects(cancelOp.rows[0].op_id, { orderRows: true });
  });

  it('a revert names exactly what it changed: the pieces it deleted and restored, its stock ledger rows and balances, and the operation it marked', async () => {
    const cloth = (await owner.post('/v1/skus', { code: 'OP-CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id as string;
    const received = await owner.post('/v1/pieces', { store_id: north, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 3000 }] });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const roll = received.body.pieces[0].id as string;
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll, parts: [1000] });
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    const effectsOf = async (opId: string) => {
      const operation = await owner.get(`/v1/operations/${opId}`);
      assert.equal(operation.status, 200, JSON.stringify(operation.body));
      return (operation.body.effects as Array<{ table: string; id: string; action: string }>).map((e) => `${e.table}:${e.id}:${e.action}`).sort();
    };
    const rowsOf = async (opId: string, target: string) =>
      (
        await t.admin.query(
          `SELECT 'pieces:' || id || ':deleted' AS e FROM pieces WHERE tenant_id = $1 AND deleted_by_op = $2
           UNION ALL SELECT 'pieces:' || id || ':updated' FROM pieces WHERE tenant_id = $1 AND consumed_by_op IS NULL AND id = ANY(
             SELECT unnest(source_piece_ids) FROM pieces WHERE tenant_id = $1 AND created_by_op = $3)
           UNION ALL SELECT 'stock_ledger:' || id || ':created' FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2
           UNION ALL SELECT DISTINCT 'stock_balances:' || store_id || '/' || sku_id || ':updated' FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2
           UNION ALL SELECT 'operations:' || id || ':updated' FROM operations WHERE tenant_id = $1 AND reverted_by = $2`,
          [tenantId, opId, target],
        )
      ).rows.map((r) => r.e).sort();

    const revertCut = await owner.post(`/v1/operations/${cut.body.op_id}/revert`);
    assert.equal(revertCut.status, 200, JSON.stringify(revertCut.body));
    assert.deepEqual(await effectsOf(revertCut.body.op_id), await rowsOf(revertCut.body.op_id, cut.body.op_id));
    assert.equal((await rowsOf(revertCut.body.op_id, cut.body.op_id)).length, 4, 'the roll restored, the part and the remainder deleted, the cut marked');
    assert.equal((await effectsOf(revertCut.body.op_id)).filter((e) => e.startsWith('stock_ledger:')).length, 0, 'a cut and its revert net to zero: no ledger row');
    const revertReceive = await owner.post(`/v1/operations/${received.body.op_id}/revert`);
    assert.equal(revertReceive.status, 200, JSON.stringify(revertReceive.body));
    assert.deepEqual(await effectsOf(revertReceive.body.op_id), await rowsOf(revertReceive.body.op_id, received.body.op_id));
    assert.equal((await effectsOf(revertReceive.body.op_id)).filter((e) => e.startsWith('stock_ledger:')).length, 1);
    const target = await owner.get(`/v1/operations/${received.body.op_id}`);
    assert.equal(target.body.reverted_by, revertReceive.body.op_id);
  });

  it('each transfer operation names the transfer item rows it wrote: created by the request, updated by approve, receive and cancel', async () => {
    await owner.post(`/v1/stores/${north}/stock/receipts`, { items: [{ sku_id: flour, quantity: 3000 }, { sku_id: salt, quantity: 30 }] });
    const itemEffects = async (opId: string) => {
      const operation = await owner.get(`/v1/operations/${opId}`);
      assert.equal(operation.status, 200, JSON.stringify(operation.body));
      return (operation.body.effects as Array<{ table: string; id: string; action: string }>)
        .filter((e) => e.table === 'stock_transfer_items')
        .map((e) => `${e.id}:${e.action}`)
        .sort();
    };
    const itemsOf = async (transferId: string, action: string) =>
      (await t.admin.query(`SELECT id::text FROM stock_transfer_items WHERE tenant_id = $1 AND transfer_id = $2`, [tenantId, transferId])).rows
        .map((r) => `${r.id}:${action}`)
        .sort();
    const opsOf = async (transferId: string) =>
      (await t.admin.query(`SELECT op_id, approved_op, received_op, cancelled_op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, transferId])).rows[0];

    const moved = await owner.post('/v1/transfers', { source_store_id: north, destination_store_id: south, items: [{ sku_id: flour, quantity: 500 }, { sku_id: salt, quantity: 4 }] });
    assert.equal(moved.status, 201, JSON.stringify(moved.body));
    assert.equal((await owner.post(`/v1/transfers/${moved.body.id}/approve`)).status, 200);
    assert.equal((await owner.post(`/v1/transfers/${moved.body.id}/receive`, { items: [{ sku_id: flour, quantity_received: 500 }] })).status, 200);
    const ops = await opsOf(moved.body.id);
    assert.deepEqual(await itemEffects(ops.op_id), await itemsOf(moved.body.id, 'created'), 'the request names the lines it created');
    assert.deepEqual(await itemEffects(ops.approved_op), await itemsOf(moved.body.id, 'updated'), 'the approval names the lines it put in transit');
    assert.deepEqual(await itemEffects(ops.received_op), await itemsOf(moved.body.id, 'updated'), 'the receipt names the lines it recorded as received');

    const dropped = await owner.post('/v1/transfers', { source_store_id: north, destination_store_id: south, items: [{ sku_id: salt, quantity: 1 }] });
    assert.equal((await owner.post(`/v1/transfers/${dropped.body.id}/cancel`)).status, 200);
    assert.deepEqual(await itemEffects((await opsOf(dropped.body.id)).cancelled_op), [], 'a cancel changes no line');
  });
});
