import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { shuffled } from '../../test/support/shuffled.js';
import { commandRetries } from '../core/metrics.js';

/**
 * Counts, receipts, adjustments and transfer receipts posted at once through
 * HTTP over many SKUs the store never held, in opposite and overlapping
 * orders: each creates the balance rows it is first to need, so rows one
 * command creates are rows another locks. Every command must be answered
 * (201, or 200 for a transfer receipt) without PostgreSQL ending any of them
 * as deadlocked (runCommand would run it again: the retries counter, in this
 * process, counts each), and the rows left behind must add up: every balance
 * is the sum of its ledger, and each command wrote all its rows.
 */
describe('stock counts beside receipts, adjustments and transfers creating the same balance rows', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let source: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'NEW', name: 'Never held these' })).body.id;
    source = (await owner.post('/v1/stores', { code: 'SRC', name: 'Sends transfers' })).body.id;
  });
  after(() => t.close());

  const retries = async () => (await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0);
  const newSkus = async (n: number): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const sku = await owner.post('/v1/skus', { code: `N-${randomUUID().slice(0, 8)}`, name: 'never held', unit: 'piece', price: 100 });
      assert.equal(sku.status, 201, JSON.stringify(sku.body));
      ids.push(sku.body.id);
    }
    return ids;
  };
  /** The SKUs at the positions `pick` keeps, in their order. */
  const some = (skus: string[], pick: (index: number) => boolean) => skus.filter((_, index) => pick(index));
  const jitter = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 15));

  it('every command is answered, none deadlocks, every balance is its ledger and each command wrote all its rows', async () => {
    const rounds = 6;
    const perRound = 40;
    const retriesBefore = await retries();
    /** What each answered command must have written at `store`: ledger rows by op_id. */
    const expected: Array<{ what: string; opId: string; ledgerRows: number; countId?: string; countLines?: number }> = [];

    for (let round = 0; round < rounds; round++) {
      const skus = await newSkus(perRound);
      // The transfer's goods come from a store that holds them; it is approved
      // before the race (taking them out of the source), received during it.
      const transferred = some(skus, (i) => i % 3 === 0);
      assert.equal((await owner.post(`/v1/stores/${source}/stock/receipts`, { items: transferred.map((sku) => ({ sku_id: sku, quantity: 50 })) })).status, 201);
      const transfer = await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: store, items: shuffled(transferred).map((sku) => ({ sku_id: sku, quantity: 7 })) });
      assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
      assert.equal((await owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, { idempotencyKey: randomUUID() })).status, 200);

      const reversed = [...skus].reverse();
      const commands: Array<{ what: string; send: () => Promise<{ status: number; body: any }>; lines: number; kind: 'count' | 'stock' | 'transfer' }> = [
        // Counts: all SKUs ascending, the odd ones descending, a shuffled half.
        { what: 'count all', kind: 'count', lines: skus.length, send: () => owner.post(`/v1/stores/${store}/stock/counts`, { items: skus.map((sku, i) => ({ sku_id: sku, counted_quantity: i % 4 })) }, { idempotencyKey: randomUUID() }) },
        { what: 'count odd', kind: 'count', lines: perRound / 2, send: () => owner.post(`/v1/stores/${store}/stock/counts`, { items: some(reversed, (i) => i % 2 === 1).map((sku) => ({ sku_id: sku, counted_quantity: 5 })) }, { idempotencyKey: randomUUID() }) },
        { what: 'count half', kind: 'count', lines: perRound / 2, send: () => owner.post(`/v1/stores/${store}/stock/counts`, { items: shuffled(skus).slice(0, perRound / 2).map((sku) => ({ sku_id: sku, counted_quantity: 3 })) }, { idempotencyKey: randomUUID() }) },
        // Receipts: all SKUs descending, every third ascending, the second half shuffled.
        { what: 'receipt all', kind: 'stock', lines: skus.length, send: () => owner.post(`/v1/stores/${store}/stock/receipts`, { items: reversed.map((sku) => ({ sku_id: sku, quantity: 10 })) }, { idempotencyKey: randomUUID() }) },
        { what: 'receipt thirds', kind: 'stock', lines: Math.ceil(perRound / 3), send: () => owner.post(`/v1/stores/${store}/stock/receipts`, { items: some(skus, (i) => i % 3 === 0).map((sku) => ({ sku_id: sku, quantity: 2 })) }, { idempotencyKey: randomUUID() }) },
        { what: 'receipt upper half', kind: 'stock', lines: perRound / 2, send: () => owner.post(`/v1/stores/${store}/stock/receipts`, { items: shuffled(skus.slice(perRound / 2)).map((sku) => ({ sku_id: sku, quantity: 4 })) }, { idempotencyKey: randomUUID() }) },
        // Adjustments (found stock): one SKU each, spread over the round.
        ...[0, 7, 13, 21, 34, perRound - 1].map((index) => ({
          what: `adjustment ${index}`,
          kind: 'stock' as const,
          lines: 1,
          send: () => owner.post(`/v1/stores/${store}/stock/adjustments`, { sku_id: skus[index], quantity_change: 1, reason: 'found behind the shelf' }, { idempotencyKey: randomUUID() }),
        })),
        // The transfer received: a third of the SKUs, into the store.
        { what: 'transfer receipt', kind: 'transfer', lines: transferred.length, send: () => owner.post(`/v1/transfers/${transfer.body.id}/receive`, null, { idempotencyKey: randomUUID() }) },
      ];
      const answers = await Promise.all(
        shuffled(commands).map(async (command) => {
          await jitter();
          return { command, answer: await command.send() };
        }),
      );
      for (const { command, answer } of answers) {
        assert.equal(answer.status, command.kind === 'transfer' ? 200 : 201, `${command.what}: ${JSON.stringify(answer.body)}`);
        if (command.kind === 'count') {
          const items = answer.body.items as Array<{ variance: number; ledger_id: number | null }>;
          assert.equal(items.length, command.lines);
          expected.push({ what: command.what, opId: answer.body.op_id, ledgerRows: items.filter((item) => item.variance !== 0).length, countId: answer.body.id, countLines: command.lines });
        } else if (command.kind === 'transfer') {
          expected.push({ what: command.what, opId: (await t.admin.query(`SELECT received_op FROM stock_transfers WHERE tenant_id = $1 AND id = $2`, [tenantId, transfer.body.id])).rows[0].received_op, ledgerRows: command.lines });
        } else {
          expected.push({ what: command.what, opId: answer.body.op_id, ledgerRows: command.lines });
        }
      }
    }

    assert.equal(await retries(), retriesBefore, 'no transaction was run again: none deadlocked');

    // Every balance is the sum of its ledger rows, and every row of the ledger at the store is one an answered command wrote.
    const mismatched = (
      await t.admin.query(
        `SELECT b.sku_id, b.quantity::int, (SELECT coalesce(sum(l.quantity_change), 0)::int FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
         FROM stock_balances b WHERE b.tenant_id = $1`,
        [tenantId],
      )
    ).rows.filter((row) => row.quantity !== row.ledger);
    assert.deepEqual(mismatched, []);
    const balances = (await t.admin.query(`SELECT count(*)::int AS n FROM stock_balances WHERE tenant_id = $1 AND store_id = $2`, [tenantId, store])).rows[0].n;
    assert.equal(balances, rounds * perRound, 'one balance row per SKU: each created once');
    const byOp = new Map(
      (await t.admin.query(`SELECT op_id, count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 GROUP BY op_id`, [tenantId, store])).rows.map((row) => [row.op_id as string, row.n as number]),
    );
    for (const command of expected) assert.equal(byOp.get(command.opId) ?? 0, command.ledgerRows, `${command.what} (${command.opId}) wrote all its ledger rows`);
    assert.equal(byOp.size, expected.filter((command) => command.ledgerRows > 0).length, 'no ledger rows of any other operation');
    const countLines = new Map(
      (await t.admin.query(`SELECT count_id, count(*)::int AS n FROM stock_count_lines WHERE tenant_id = $1 GROUP BY count_id`, [tenantId])).rows.map((row) => [row.count_id as string, row.n as number]),
    );
    for (const command of expected.filter((c) => c.countId)) assert.equal(countLines.get(command.countId!), command.countLines, `${command.what} kept all its lines`);
    assert.equal(countLines.size, rounds * 3);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
