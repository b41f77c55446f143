import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

interface LedgerItem {
  id: number;
  quantity_change: number;
  quantity_after: number;
  created_at: string;
  created_at_exact: string;
}

describe('stock as of a moment: as_of read by PostgreSQL, to the microsecond', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let sku: string; // history written with chosen microseconds
  let live: string; // history written by the API (now(), whatever its microseconds)
  const DAY = 86_400_000;
  const today = Math.floor(Date.now() / DAY) * DAY; // UTC midnight
  const day = (offset: number) => new Date(today + offset * DAY).toISOString().slice(0, 10);
  // Given: +5 and +7 in the last millisecond of D-3, one microsecond apart; +11 at midnight sharp
  const rows = () => [
    { change: 5, after: 5, at: `${day(-3)}T23:59:59.999998Z` },
    { change: 7, after: 12, at: `${day(-3)}T23:59:59.999999Z` },
    { change: 11, after: 23, at: `${day(-2)}T00:00:00.000000Z` },
  ];

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = await givenStore(owner, 'AO');
    sku = await givenSku(owner, 'AO-A', 'piece');
    live = await givenSku(owner, 'AO-B', 'piece');
    const opId = (await t.admin.query(`SELECT op_id FROM skus WHERE tenant_id = $1 LIMIT 1`, [tenantId])).rows[0].op_id;
    await t.admin.query(`INSERT INTO stock_balances (tenant_id, store_id, sku_id, quantity) VALUES ($1, $2, $3, 23)`, [tenantId, store, sku]);
    for (const row of rows()) {
      await t.admin.query(
        `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'adjustment', $7::timestamptz)`,
        [tenantId, store, sku, opId, row.change, row.after, row.at],
      );
    }
    await givenStock(owner, store, [{ sku_id: live, quantity: 5 }]);
    await givenStock(owner, store, [{ sku_id: live, quantity: 7 }]);
    // the days before today are snapshotted, so answers come from a snapshot + the ledger after it
    assert.equal((await owner.post('/v1/stock/snapshots', {})).status, 200);
  });
  after(() => t.close());

  /** The stock of the history SKU as of `asOf` (sent as is), with the `as_of` the API answered. */
  const stockAsOf = async (asOf: string) => {
    const response = await owner.get(`/v1/stores/${store}/stock?as_of=${encodeURIComponent(asOf)}`);
    assert.equal(response.status, 200, `${asOf}: ${JSON.stringify(response.body)}`);
    const items = response.body.items as Array<{ sku_id: string; quantity: number }>;
    return { asOf: response.body.as_of as string, quantity: items.find((item) => item.sku_id === sku)!.quantity, of: (id: string) => items.find((item) => item.sku_id === id)!.quantity };
  };

  /** Σ of every ledger row of the history SKU at or before `asOf`, as PostgreSQL reads `asOf`. */
  const fullLedgerSum = async (asOf: string) =>
    (
      await t.admin.query(
        `SELECT coalesce(sum(quantity_change), 0)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND sku_id = $2 AND created_at <= $3::timestamptz`,
        [tenantId, sku, asOf],
      )
    ).rows[0].n as number;

  it('tells apart two ledger rows one microsecond apart, within a millisecond and across midnight', async () => {
    const cases: Array<[string, number]> = [
      [`${day(-3)}T23:59:59.999Z`, 0], // the millisecond before both rows' microseconds
      [`${day(-3)}T23:59:59.999997Z`, 0],
      [`${day(-3)}T23:59:59.999998Z`, 5],
      [`${day(-3)}T23:59:59.999999Z`, 12],
      [`${day(-2)}T00:59:59.999999+01:00`, 12], // the same moment with an offset
      [`${day(-2)}T00:00:00Z`, 23], // midnight: the end of D-3's snapshot, and the row at that instant
      [`${day(-2)}T00:00:00.000001Z`, 23],
    ];
    for (const [asOf, expected] of cases) {
      assert.equal((await stockAsOf(asOf)).quantity, expected, asOf);
      assert.equal(await fullLedgerSum(asOf), expected, `the ledger itself at ${asOf}`);
    }
  });

  it('a ledger row shows created_at to the millisecond (as before) and created_at_exact to the microsecond, which as as_of includes the row', async () => {
    const ledger = (await owner.get(`/v1/stores/${store}/stock/${sku}/ledger`)).body.items as LedgerItem[];
    assert.deepEqual(
      ledger.map(({ quantity_after, created_at, created_at_exact }) => ({ quantity_after, created_at, created_at_exact })),
      rows()
        .reverse()
        .map((row) => ({ quantity_after: row.after, created_at: new Date(row.at).toISOString(), created_at_exact: row.at })),
    );
    for (const row of ledger) assert.equal((await stockAsOf(row.created_at_exact)).quantity, row.quantity_after, row.created_at_exact);
  });

  it('rows written by the API (now(), any microseconds): as of a row\'s created_at_exact is its quantity_after; a microsecond before, the one before', async () => {
    const ledger = (await owner.get(`/v1/stores/${store}/stock/${live}/ledger`)).body.items as LedgerItem[];
    const exact = (await t.admin.query(`SELECT id::int, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM stock_ledger WHERE tenant_id = $1 AND sku_id = $2`, [tenantId, live])).rows;
    assert.equal(ledger.length, 2);
    for (const row of ledger) {
      assert.equal(row.created_at_exact, exact.find((r) => r.id === row.id)!.at, 'as the database keeps it');
      assert.equal(new Date(row.created_at_exact).toISOString(), row.created_at, 'created_at is the same moment to the millisecond');
      assert.equal((await stockAsOf(row.created_at_exact)).of(live), row.quantity_after);
      const justBefore = (await t.admin.query(`SELECT to_char(($1::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`, [row.created_at_exact])).rows[0].at;
      assert.equal((await stockAsOf(justBefore)).of(live), row.quantity_after - row.quantity_change);
    }
  });

  it('answers as_of as PostgreSQL read it: UTC, to the millisecond like every timestamp of the API', async () => {
    const cases: Array<[string, string]> = [
      ['2016-12-31T23:59:60Z', '2017-01-01T00:00:00.000Z'], // a leap second is the next minute, as for a sale's client_created_at
      ['2026-06-01T10:00:00+05', '2026-06-01T05:00:00.000Z'], // an hour-only offset
      [`${day(-3)}T23:59:59.999998Z`, `${day(-3)}T23:59:59.999Z`],
      ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'], // the first moment of the years 0001–9999 in UTC
      ['9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59.999Z'], // and the last
    ];
    for (const [sent, answered] of cases) {
      const { asOf, quantity } = await stockAsOf(sent);
      assert.equal(asOf, answered, sent);
      assert.equal(quantity, await fullLedgerSum(sent), sent);
    }
  });

  it('a sale whose batch began before a receipt of its SKU committed, but took the stock after it: history never goes negative and as of each row is its quantity_after', async () => {
    // Given: a store of its own with 1 of the first SKU and none of the second (sold); another transaction holds the first SKU's balance row
    const shop = await givenStore(owner, 'AO-RACE');
    const [first, second] = [await givenSku(owner, 'AO-R1', 'piece'), await givenSku(owner, 'AO-R2', 'piece')].sort();
    await givenStock(owner, shop, [{ sku_id: first!, quantity: 1 }, { sku_id: second!, quantity: 1 }]);
    const emptied = await owner.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: second!, quantity: 1, unit_price: 100 }] });
    assert.equal(emptied.status, 201, JSON.stringify(emptied.body));
    const holder = await t.admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 FOR UPDATE`, [tenantId, shop, first]);
      // When: a sale of both SKUs starts (its transaction begins, then waits for the first SKU's row)…
      const sale = owner.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: first!, quantity: 1, unit_price: 100 }, { sku_id: second!, quantity: 5, unit_price: 100 }] });
      await waitFor('the sale to wait for the held balance row', async () =>
        (await t.admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM stock_balances%FOR UPDATE%'`)).rows[0].n > 0,
      );
      // …meanwhile 5 of the second SKU arrive and commit, then the sale goes on and takes them
      await givenStock(owner, shop, [{ sku_id: second!, quantity: 5 }]);
      await holder.query('COMMIT');
      const sold = await sale;
      assert.equal(sold.status, 201, JSON.stringify(sold.body));
    } finally {
      holder.release();
    }

    // Then: as of each row's moment the stock is that row's quantity_after (never the -5 of a sale stamped before the goods it took), and the moments follow the ledger's order
    const ledger = ((await owner.get(`/v1/stores/${shop}/stock/${second}/ledger`)).body.items as LedgerItem[]).reverse();
    assert.deepEqual(ledger.map((row) => [row.quantity_change, row.quantity_after]), [[1, 1], [-1, 0], [5, 5], [-5, 0]]);
    const asOfEachRow = [];
    for (const row of ledger) {
      const response = await owner.get(`/v1/stores/${shop}/stock?as_of=${encodeURIComponent(row.created_at_exact)}`);
      asOfEachRow.push((response.body.items as Array<{ sku_id: string; quantity: number }>).find((item) => item.sku_id === second)!.quantity);
    }
    assert.deepEqual(asOfEachRow, [1, 0, 5, 0], `as of ${ledger.map((row) => row.created_at_exact).join(', ')}`);
    for (let index = 1; index < ledger.length; index++) {
      assert.ok(ledger[index]!.created_at_exact >= ledger[index - 1]!.created_at_exact, `row ${ledger[index]!.id} is stamped after the row before it: ${JSON.stringify(ledger)}`);
    }
  });

  describe('an as_of outside the years 0001–9999 in UTC, or one PostgreSQL cannot read: 400 problem+json', () => {
    const cases: Array<[string, string]> = [
      ['year 0', '0000-06-01T10:00:00Z'],
      ['1 BC in UTC', '0001-01-01T00:00:00+01:00'],
      ['year 10000 in UTC', '9999-12-31T23:00:00-05:00'],
      ['a leap second with a fraction', '2016-12-31T23:59:60.5Z'],
      ['an offset beyond ±15:59', '2026-01-01T10:00:00+16:00'],
    ];
    for (const [name, asOf] of cases) {
      it(`${name} (${asOf}) → 400 validation_failed at /querystring/as_of`, async () => {
        const response = await owner.get(`/v1/stores/${store}/stock?as_of=${encodeURIComponent(asOf)}`);
        assert.equal(response.status, 400, JSON.stringify(response.body));
        assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(response.body.code, 'validation_failed');
        assert.deepEqual(response.body.errors.map((error: { path: string }) => error.path), ['/querystring/as_of']);
      });
    }
  });
  it("a sale a till rang up yesterday and synced today: stock as of yesterday stays what the ledger held then (the goods leave when the sale is recorded), while the daily figures count it yesterday", async () => {
    // Given: a store of its own that received 10 two days ago (its ledger row and balance as then)
    const shop = await givenStore(owner, 'AO-LATE');
    const salt = await givenSku(owner, 'AO-LATE-SALT', 'piece');
    await givenStock(owner, shop, [{ sku_id: salt, quantity: 10 }]);
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query(`UPDATE stock_ledger SET created_at = $4 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, shop, salt, `${day(-2)}T12:00:00Z`]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const endOfYesterday = `${day(-1)}T23:59:59.999999Z`;
    const asOf = async (at: string) => {
      const read = await owner.get(`/v1/stores/${shop}/stock?as_of=${encodeURIComponent(at)}`);
      assert.equal(read.status, 200, JSON.stringify(read.body));
      return read.body.items.find((item: { sku_id: string }) => item.sku_id === salt)?.quantity;
    };
    assert.equal(await asOf(endOfYesterday), 10);
    // When: yesterday's snapshot is taken, then a till syncs 3 it sold yesterday at 18:00
    assert.equal((await owner.post('/v1/stock/snapshots', { through: day(-1) })).status, 200);
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: 'ao-late-1', store_id: shop, payment_method: 'cash', client_created_at: `${day(-1)}T18:00:00Z`, items: [{ sku_id: salt, quantity: 3, unit_price: 100 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    // Then: as of yesterday is still 10 (the ledger's history: the sale's row is stamped when it was written, today), as of now 7
    assert.equal(await asOf(endOfYesterday), 10);
    assert.equal(await asOf(new Date().toISOString()), 7);
    const rows = (await t.admin.query(`SELECT (created_at AT TIME ZONE 'UTC')::date::text AS d, quantity_change FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND kind = 'sale'`, [tenantId, shop, salt])).rows;
    assert.deepEqual(rows, [{ d: day(0), quantity_change: -3 }]);
    // and its money is yesterday's (the store was never counted): the daily figures count it yesterday
    const entry = (await t.admin.query(`SELECT business_date::text AS d FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2 AND kind = 'sale'`, [tenantId, synced.body.results[0].body.id])).rows;
    assert.deepEqual(entry, [{ d: day(-1) }]);
  });
});
