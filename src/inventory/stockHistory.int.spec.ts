import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStore } from '../sales/testkit.js';

/** A small deterministic PRNG so a failure can be reproduced from the seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('stock history: ledger pages and stock as of a date (snapshot + delta)', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  const stores: string[] = [];
  const skus: string[] = [];
  const seed = Date.now() % 100_000;
  const random = prng(seed);
  const DAY = 86_400_000;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    stores.push(await givenStore(owner, 'H1'), await givenStore(owner, 'H2'));
    skus.push(await givenSku(owner, 'H-A', 'kg'), await givenSku(owner, 'H-B', 'piece'), await givenSku(owner, 'H-C', 'metre'));
    // Given: 60 days of history written as the ledger would have (as a superuser, with past timestamps)
    const opId = (await t.admin.query(`SELECT op_id FROM skus WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0].op_id;
    const now = Date.now();
    for (const store of stores) {
      for (const sku of skus) {
        await t.admin.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, 0)`, [tenantId, store, sku]);
        const times = Array.from({ length: 400 }, () => now - Math.floor(random() * 60 * DAY)).sort((a, b) => a - b);
        // a few exactly at UTC midnight, the snapshot boundary
        times.push(Math.floor((now - 3 * DAY) / DAY) * DAY, Math.floor((now - 10 * DAY) / DAY) * DAY);
        times.sort((a, b) => a - b);
        let quantity = 0;
        const rows: Array<[number, number, Date]> = [];
        for (const time of times) {
          let change = Math.floor(random() * 200) - Math.min(quantity, 100);
          if (change === 0) change = 1;
          quantity += change;
          rows.push([change, quantity, new Date(time)]);
        }
        await t.admin.query(
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
           SELECT $1, $2, $3, $4, r.change, r.after, 'adjustment', r.at
           FROM unnest($5::bigint[], $6::bigint[], $7::timestamptz[]) AS r(change, after, at)`,
          [tenantId, store, sku, opId, rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
        );
        await t.admin.query(`UPDATE stock_balances SET quantity = $4 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku, quantity]);
      }
    }
  });
  after(() => t.close());

  const fullLedgerSum = async (store: string, at: Date) =>
    (
      await t.admin.query(
        `SELECT sku_id, coalesce(sum(quantity_change) FILTER (WHERE l.created_at <= $3), 0)::int AS quantity FROM stock_balances b
         LEFT JOIN stock_ledger l USING (tenant_id, store_id, sku_id)
         WHERE b.tenant_id = $1 AND b.store_id = $2
         GROUP BY sku_id ORDER BY sku_id`,
        [tenantId, store, at],
      )
    ).rows as Array<{ sku_id: string; quantity: number }>;

  const asOf = async (store: string, at: Date) => {
    const response = await owner.get(`/v1/stores/${store}/stock?as_of=${encodeURIComponent(at.toISOString())}`);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return (response.body.items as Array<{ sku_id: string; quantity: number }>).map(({ sku_id, quantity }) => ({ sku_id, quantity }));
  };

  it(`snapshot + delta equals the full ledger sum at random moments (seed ${seed})`, async () => {
    // When: the snapshots are taken
    const taken = await owner.post('/v1/stock/snapshots', {});
    assert.equal(taken.status, 200, JSON.stringify(taken.body));
    assert.ok(taken.body.snapshots_written > 0);
    const snapshots = (await t.admin.query(`SELECT count(*)::int AS n, max(snapshot_date)::text AS last FROM stock_snapshots WHERE tenant_id = $1`, [tenantId])).rows[0];
    assert.equal(snapshots.n, taken.body.snapshots_written);

    // Then: at random moments (and on day boundaries), as-of = full sum
    const now = Date.now();
    const moments = Array.from({ length: 40 }, () => new Date(now - Math.floor(random() * 62 * DAY)));
    moments.push(new Date(Math.floor((now - 3 * DAY) / DAY) * DAY), new Date(Math.floor((now - 3 * DAY) / DAY) * DAY - 1), new Date(now), new Date(now - 5 * 60_000));
    for (const moment of moments) {
      for (const store of stores) {
        assert.deepEqual(await asOf(store, moment), await fullLedgerSum(store, moment), `as of ${moment.toISOString()} in ${store}`);
      }
    }
    // now = the live balance
    const live = (await owner.get(`/v1/stores/${stores[0]}/stock`)).body.items.map(({ sku_id, quantity }: { sku_id: string; quantity: number }) => ({ sku_id, quantity }));
    assert.deepEqual(await asOf(stores[0]!, new Date(Date.now() + 1000)), live);

    // a second run has nothing left to do
    const again = await owner.post('/v1/stock/snapshots', {});
    assert.equal(again.status, 200);
    assert.equal(again.body.snapshots_written, 0);
  });

  it('the ledger delta after a snapshot has its own index (store, SKU, time) covering the change', async () => {
    const index = await t.admin.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'stock_ledger_history_idx'`);
    assert.match(index.rows[0].indexdef, /\(tenant_id, store_id, sku_id, created_at\) INCLUDE \(quantity_change\)/);
  });

  it('pages through the ledger newest first with a cursor, every row exactly once', async () => {
    const expected = (
      await t.admin.query(`SELECT id FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 ORDER BY id DESC`, [tenantId, stores[1], skus[2]])
    ).rows.map((row) => Number(row.id));
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Array<{ id: number; quantity_change: number; quantity_after: number; kind: string; op_id: string; created_at: string; reason: string | null }>; next_cursor: string | null } } =
        await owner.get(`/v1/stores/${stores[1]}/stock/${skus[2]}/ledger?limit=37${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(page.status, 200);
      assert.ok(page.body.items.length <= 37);
      for (const item of page.body.items) {
        assert.equal(typeof item.quantity_change, 'number');
        assert.equal(item.kind, 'adjustment');
      }
      seen.push(...page.body.items.map((item) => item.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, expected);
  });

  it('another tenant sees 404 for the store\'s history', async () => {
    const { owner: stranger } = await t.newTenant();
    assert.equal((await stranger.get(`/v1/stores/${stores[0]}/stock/${skus[0]}/ledger`)).status, 404);
    assert.equal((await stranger.get(`/v1/stores/${stores[0]}/stock?as_of=2026-01-01T00:00:00Z`)).status, 404);
  });
});
