import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { shuffled } from '../../test/support/shuffled.js';
import { commandRetries } from '../core/metrics.js';

/**
 * A receipt creates or locks all its balance rows in one sku_id-ordered
 * statement and moves them with their ledger rows in one more (addStock),
 * not one round trip per line: what it writes and answers must be what the
 * line-by-line receipt wrote, computed here independently of the code, and
 * it must not deadlock beside the sales and counts locking the same rows.
 */
describe('a receipt writes its rows at once', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
  });
  after(() => t.close());

  const newSkus = async (n: number): Promise<string[]> => {
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, lane) => {
        for (let i = lane; i < n; i += 8) {
          const sku = await owner.post('/v1/skus', { code: `R-${randomUUID().slice(0, 8)}`, name: `item ${i}`, unit: 'piece', price: 100 });
          assert.equal(sku.status, 201, JSON.stringify(sku.body));
          ids[i] = sku.body.id;
        }
      }),
    );
    return ids;
  };
  const newStore = async (code: string) => (await owner.post('/v1/stores', { code, name: code })).body.id as string;
  const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

  it('a 1,000-line receipt over new and held rows, SKUs repeated, writes one ledger row per SKU in sku_id order and answers as before', async () => {
    const store = await newStore('BIG');
    const skus = await newSkus(600);
    // Half the SKUs are held already (with a quantity of their own), half are new to the store.
    const held = new Map(skus.slice(0, 300).map((sku, i) => [sku, 1_000 + i]));
    const first = await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [...held].map(([sku_id, quantity]) => ({ sku_id, quantity })) });
    assert.equal(first.status, 201, JSON.stringify(first.body));

    // 1,000 lines: line j names SKU 7j mod 600 (7 and 600 are coprime, so every SKU, 400 of them twice), in no sku_id order.
    const items = Array.from({ length: 1_000 }, (_, j) => ({ sku_id: skus[(j * 7) % 600]!, quantity: (j % 9) + 1 }));
    const received = new Map<string, number>();
    for (const item of items) received.set(item.sku_id, (received.get(item.sku_id) ?? 0) + item.quantity);
    const expected = [...received.keys()].sort(byId).map((sku_id) => ({ sku_id, quantity_change: received.get(sku_id)!, quantity_after: (held.get(sku_id) ?? 0) + received.get(sku_id)! }));
    assert.equal(expected.length, 600);

    const answer = await owner.post(`/v1/stores/${store}/stock/receipts`, { items, reference: 'delivery 1000' });
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.deepEqual(answer.body.items, expected.map(({ sku_id, quantity_after }) => ({ sku_id, quantity_after })), 'one line per SKU, summed, in sku_id order');
    const opId: string = answer.body.op_id;

    // The ledger: one receipt row per SKU, ids ascending in sku_id order.
    const ledger = (
      await t.admin.query(
        `SELECT id::text, store_id, sku_id, quantity_change::int, quantity_after::int, kind, reason FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY id`,
        [tenantId, opId],
      )
    ).rows;
    assert.deepEqual(
      ledger.map(({ id: _id, ...row }) => row),
      expected.map((line) => ({ store_id: store, ...line, kind: 'receipt', reason: 'delivery 1000' })),
    );
    // The balances: what was held plus what came, each its ledger's sum.
    const balances = (await t.admin.query(`SELECT sku_id, quantity::int FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 ORDER BY sku_id`, [tenantId, store])).rows;
    assert.deepEqual(balances, expected.map(({ sku_id, quantity_after }) => ({ sku_id, quantity: quantity_after })));

    // The audit event names every balance moved with its ledger row; the operation, each ledger row created and each balance updated (created, for a row the receipt made).
    const events = (await t.admin.query(`SELECT subject_type, subject_id, payload, after FROM events WHERE tenant_id = $1 AND op_id = $2 AND subject_type IS NOT NULL`, [tenantId, opId])).rows;
    assert.deepEqual(events, [
      {
        subject_type: 'store',
        subject_id: store,
        payload: { items, reference: 'delivery 1000' },
        after: expected.map(({ sku_id, quantity_after }, i) => ({ store_id: store, sku_id, quantity_after, ledger_id: Number(ledger[i]!.id) })),
      },
    ]);
    const operation = await owner.get(`/v1/operations/${opId}`);
    assert.equal(operation.status, 200);
    const effects = (operation.body.effects as Array<{ table: string; id: string; action: string }>).filter((e) => e.table === 'stock_ledger' || e.table === 'stock_balances');
    const sortEffects = (list: Array<{ table: string; id: string; action: string }>) => [...list].sort((a, b) => byId(`${a.table}:${a.id}`, `${b.table}:${b.id}`));
    assert.deepEqual(
      sortEffects(effects),
      sortEffects([
        ...ledger.map((row) => ({ table: 'stock_ledger', id: row.id as string, action: 'created' })),
        // The 300 SKUs new to the store: their balance rows were made by the receipt.
        ...expected.map(({ sku_id }) => ({ table: 'stock_balances', id: `${store}/${sku_id}`, action: held.has(sku_id) ? 'updated' : 'created' })),
      ]),
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('GET /v1/operations/{op_id} names a balance row a receipt, a purchase or a transfer\'s receipt made as created, one it moved as updated', async () => {
    const store = await newStore('NEW');
    const [fresh, held, bought, moved] = await newSkus(4);
    const balanceEffects = async (opId: string) => {
      const operation = await owner.get(`/v1/operations/${opId}`);
      assert.equal(operation.status, 200, JSON.stringify(operation.body));
      return (operation.body.effects as Array<{ table: string; id: string; action: string }>)
        .filter((effect) => effect.table === 'stock_balances')
        .map((effect) => `${effect.id} ${effect.action}`)
        .sort();
    };
    const receive = async (items: Array<{ sku_id: string; quantity: number; unit_cost?: number }>, extra: Record<string, unknown> = {}) => {
      const answer = await owner.post(`/v1/stores/${store}/stock/receipts`, { items, ...extra }, { idempotencyKey: randomUUID() });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      return answer.body.op_id as string;
    };
    // A SKU the store never held: its row is made by the receipt, once ("created", not "updated" as well).
    assert.deepEqual(await balanceEffects(await receive([{ sku_id: held!, quantity: 5 }])), [`${store}/${held} created`]);
    // A second receipt of it, with one of a SKU new to the store: the one row moved, the other made.
    assert.deepEqual(await balanceEffects(await receive([{ sku_id: held!, quantity: 2 }, { sku_id: fresh!, quantity: 3 }])), [`${store}/${fresh} created`, `${store}/${held} updated`].sort());
    // A purchase (a receipt naming its supplier and costs) of a held SKU and a new one.
    const supplier = await owner.post('/v1/parties', { kind: 'supplier', code: `SUP-${randomUUID().slice(0, 8)}`, name: 'Mill' });
    assert.equal(supplier.status, 201, JSON.stringify(supplier.body));
    const purchase = await receive([{ sku_id: held!, quantity: 1, unit_cost: 10 }, { sku_id: bought!, quantity: 1, unit_cost: 10 }], { supplier_id: supplier.body.id });
    assert.deepEqual(await balanceEffects(purchase), [`${store}/${bought} created`, `${store}/${held} updated`].sort());
    // A transfer received: the destination's row of a SKU it never held is made; the source's was moved at approval.
    const source = await newStore('SRC');
    assert.equal((await owner.post(`/v1/stores/${source}/stock/receipts`, { items: [{ sku_id: moved!, quantity: 10 }, { sku_id: held!, quantity: 10 }] })).status, 201);
    const transfer = await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: store, items: [{ sku_id: moved!, quantity: 4 }, { sku_id: held!, quantity: 4 }] });
    assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
    assert.equal((await owner.post(`/v1/transfers/${transfer.body.id}/approve`, {}, { idempotencyKey: randomUUID() })).status, 200);
    const received = await owner.post(`/v1/transfers/${transfer.body.id}/receive`, {}, { idempotencyKey: randomUUID() });
    assert.equal(received.status, 200, JSON.stringify(received.body));
    const receivedOp = (await t.admin.query(`SELECT received_op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, transfer.body.id])).rows[0].received_op as string;
    assert.deepEqual(await balanceEffects(receivedOp), [`${store}/${held} updated`, `${store}/${moved} created`].sort());
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('receipts, sales and counts of the same SKUs at once: all answered, none deadlocks, every balance is its ledger', async () => {
    const store = await newStore('TILL');
    const skus = await newSkus(40);
    // The tills sell the first half, held from the start; the receipts and counts cover all, the second half new to the store.
    const sold = skus.slice(0, 20);
    assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: sold.map((sku_id) => ({ sku_id, quantity: 500 })) })).status, 201);
    const retries = async () => (await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0);
    const retriesBefore = await retries();
    const wrote: Array<{ what: string; opId: string; ledgerRows: number }> = [];
    const reversed = [...skus].reverse();

    for (let round = 0; round < 4; round++) {
      const receipt = (what: string, items: Array<{ sku_id: string; quantity: number }>) => ({
        what,
        send: () => owner.post(`/v1/stores/${store}/stock/receipts`, { items }, { idempotencyKey: randomUUID() }),
        ledgerRows: () => new Set(items.map((item) => item.sku_id)).size,
      });
      const count = (what: string, list: string[]) => ({
        what,
        send: () => owner.post(`/v1/stores/${store}/stock/counts`, { items: list.map((sku_id) => ({ sku_id, counted_quantity: 300 })) }, { idempotencyKey: randomUUID() }),
        ledgerRows: (answer: any) => (answer.items as Array<{ variance: number }>).filter((item) => item.variance !== 0).length,
      });
      const sale = (i: number) => {
        const lines = shuffled(sold).slice(0, 1 + (i % 3));
        return {
          what: `sale ${i}`,
          send: () => owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: lines.map((sku_id) => ({ sku_id, quantity: 1, unit_price: 100 })) }, { idempotencyKey: randomUUID() }),
          ledgerRows: () => lines.length,
        };
      };
      const commands = [
        // Receipts: every SKU descending, each twice; a shuffled half; the held ones ascending.
        receipt('receipt all twice', [...reversed, ...reversed].map((sku_id, i) => ({ sku_id, quantity: 1 + (i % 5) }))),
        receipt('receipt shuffled half', shuffled(skus).slice(0, 20).map((sku_id) => ({ sku_id, quantity: 3 }))),
        receipt('receipt held', sold.map((sku_id) => ({ sku_id, quantity: 2 }))),
        // Counts: all ascending, a shuffled half.
        count('count all', skus),
        count('count half', shuffled(skus).slice(0, 20)),
        ...Array.from({ length: 16 }, (_, i) => sale(i)),
      ];
      const answers = await Promise.all(
        shuffled(commands).map(async (command) => {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 15));
          return { command, answer: await command.send() };
        }),
      );
      for (const { command, answer } of answers) {
        assert.equal(answer.status, 201, `${command.what}: ${JSON.stringify(answer.body)}`);
        wrote.push({ what: command.what, opId: answer.body.op_id, ledgerRows: command.ledgerRows(answer.body) });
      }
    }

    assert.equal(await retries(), retriesBefore, 'no transaction was run again: none deadlocked');
    const mismatched = (
      await t.admin.query(
        `SELECT b.sku_id, b.quantity::int, (SELECT coalesce(sum(l.quantity_change), 0)::int FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
         FROM stock_balances b WHERE b.tenant_id = $1 AND b.store_id = $2`,
        [tenantId, store],
      )
    ).rows.filter((row) => row.quantity !== row.ledger);
    assert.deepEqual(mismatched, []);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM stock_balances WHERE tenant_id = $1 AND store_id = $2`, [tenantId, store])).rows[0].n, skus.length, 'one balance row per SKU');
    const byOp = new Map(
      (await t.admin.query(`SELECT op_id, count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 GROUP BY op_id`, [tenantId, store])).rows.map((row) => [row.op_id as string, row.n as number]),
    );
    for (const command of wrote) assert.equal(byOp.get(command.opId) ?? 0, command.ledgerRows, `${command.what} (${command.opId}) wrote all its ledger rows`);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
