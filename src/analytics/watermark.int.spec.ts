/**
 * The daily sales rollup's watermark (migration 0900): the catch-up and the
 * integrity check daily_sales_rollup_stale read the changes the last
 * catch-up has not seen — exactly, whatever order they commit in — and not a
 * tenant's history.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { startSecondApi, startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { waitFor } from '../../test/support/wait.js';
import { inTenantTransaction, runCommand } from '../core/command.js';
import { one } from '../core/db.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { catchUpDailySales, type CatchUpResult } from './catchUpDailySales.js';
import { rollupDailySales } from './rollupDailySales.js';
import { analyticsChecks } from './integrity.js';

interface SalesRead {
  seq_scans: number;
  seq_rows: number;
  index_rows: number;
}

/**
 * What this backend has counted of `sales` and not yet reported: sequential
 * scans, rows they read, rows fetched through indexes. (Not only this
 * transaction's, whatever the view's name says: the counts are reported at
 * most once a second, between transactions. Within one transaction nothing
 * is reported, so the difference of two readings is what ran in between.)
 */
const SALES_COUNTED = sql<SalesRead>`
  SELECT seq_scan::int AS seq_scans, seq_tup_read::int AS seq_rows, coalesce(idx_tup_fetch, 0)::int AS index_rows
  FROM pg_stat_xact_user_tables WHERE relname = 'sales'`;

const readBetween = (before: SalesRead, after: SalesRead): SalesRead => ({
  seq_scans: after.seq_scans - before.seq_scans,
  seq_rows: after.seq_rows - before.seq_rows,
  index_rows: after.index_rows - before.index_rows,
});

describe('daily sales rollup: the watermark', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const staleCheck = analyticsChecks.find((check) => check.name === 'daily_sales_rollup_stale')!;

  /** One scheduled catch-up of the tenant (what `analytics.rollup` without a date runs), and the `sales` rows it read. */
  async function catchUp(tenantId: string): Promise<CatchUpResult & { read: SalesRead }> {
    const input = { tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `catch-up-${randomUUID()}`, fingerprint: randomUUID() };
    const outcome = await runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => {
      const before = await one(cmd.tx, SALES_COUNTED);
      const result = await catchUpDailySales(cmd);
      return { status: 200, body: { ...result, read: readBetween(before, await one(cmd.tx, SALES_COUNTED)) } };
    });
    assert.equal(outcome.status, 200, JSON.stringify(outcome.body));
    return outcome.body as CatchUpResult & { read: SalesRead };
  }

  /** daily_sales_rollup_stale for one tenant, as the nightly checker runs it (owner, read only), and the `sales` rows it read. */
  async function staleFindings(tenantId: string): Promise<{ subjects: string[]; read: SalesRead }> {
    const client = await t.admin.connect();
    const counted = SALES_COUNTED.compile(t.db).sql;
    try {
      await client.query('BEGIN READ ONLY');
      const before = (await client.query<SalesRead>(counted)).rows[0]!;
      const { rows } = await client.query<{ subject: string }>(staleCheck.sql, [tenantId]);
      const read = readBetween(before, (await client.query<SalesRead>(counted)).rows[0]!);
      await client.query('COMMIT');
      return { subjects: rows.map((row) => row.subject).sort(), read };
    } finally {
      client.release();
    }
  }

  /** The same, as `GET /v1/integrity` runs it: the app role, under row-level security. */
  async function staleFindingsAsApp(tenantId: string): Promise<{ subjects: string[]; read: SalesRead }> {
    return inTenantTransaction(t.db, tenantId, async (tx) => {
      const before = await one(tx, SALES_COUNTED);
      const { rows } = await tx.executeQuery<{ subject: string }>(CompiledQuery.raw(staleCheck.sql, [tenantId]));
      const read = readBetween(before, await one(tx, SALES_COUNTED));
      return { subjects: rows.map((row) => row.subject).sort(), read };
    });
  }

  async function figures(tenantId: string) {
    const { rows } = await t.admin.query(
      `SELECT st.code, r.business_date::text AS d, r.sales_count::int, r.voided_count::int, r.revenue::int
       FROM daily_sales_rollups r JOIN stores st ON st.tenant_id = r.tenant_id AND st.id = r.store_id
       WHERE r.tenant_id = $1 AND r.sales_count > 0 ORDER BY 1, 2`,
      [tenantId],
    );
    return rows;
  }

  /**
   * Waits until every transaction that changed the tenant's sales is older
   * than every transaction still running on the server. Until then a
   * snapshot's xmin — the oldest running transaction, here maybe another test
   * file's — may be below some of those changes, and a run reads them again
   * (skipping them as seen): what it reads is then not a fixed count.
   */
  async function settled(tenantId: string): Promise<void> {
    await waitFor('the changes to be older than every running transaction', async () => {
      const { rows } = await t.admin.query(
        `SELECT pg_snapshot_xmin(pg_current_snapshot()) > max(greatest(created_xid, voided_xid)) AS settled FROM sales WHERE tenant_id = $1`,
        [tenantId],
      );
      return rows[0].settled === true;
    });
  }

  async function asSuperuser(statement: string, params: unknown[]): Promise<void> {
    await withTriggersOff(t.admin, [[statement, params]]);
  }

  async function sell(owner: ApiClient, storeId: string, skuId: string, quantity: number, unitPrice = 100) {
    const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: unitPrice }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    return sale.body as { id: string; total: number };
  }

  it('a sale synced onto yesterday whose transaction commits after a run read the changes — begun an hour before it, with a smaller transaction id than a sale that run counted — is counted by the next run, and reported stale until then', async () => {
    const { tenantId, token, owner } = await t.newTenant();
    const storeA = await givenStore(owner, 'WA');
    const storeB = await givenStore(owner, 'WB');
    const sku = await givenSku(owner, `W${randomUUID().slice(0, 6)}`, 'piece', 100);
    await givenStock(owner, storeA, [{ sku_id: sku, quantity: 100 }]);
    await givenStock(owner, storeB, [{ sku_id: sku, quantity: 100 }]);
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x - 1, 'YYYY-MM-DD') AS yesterday, to_char(x, 'YYYY-MM-DD') AS today FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    // Given a sale in A today, caught up
    await sell(owner, storeA, sku, 1);
    assert.deepEqual((await catchUp(tenantId)).days, [d.today]);

    // And a till syncing a sale of 7 it rang up in A yesterday, whose
    // transaction, once it has written the sale (and so holds its
    // transaction id), is held open until the test lets it go — stamped as
    // begun an hour ago, as a long transaction would be
    const lockKey = 900_101;
    await t.admin.query(`
      CREATE FUNCTION watermark_hold_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.tenant_id = '${tenantId}' AND NEW.total = 700 THEN
          NEW.created_at := now() - interval '1 hour';
          PERFORM pg_advisory_xact_lock_shared(${lockKey});
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER watermark_hold_for_test BEFORE INSERT ON sales FOR EACH ROW EXECUTE FUNCTION watermark_hold_for_test();`);
    const gate = new pg.Client(t.url);
    await gate.connect();
    const second = await startSecondApi(t);
    try {
      await gate.query('SELECT pg_advisory_lock($1)', [lockKey]);
      const held = owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: storeA, payment_method: 'cash', client_created_at: `${d.yesterday}T12:00:00Z`, items: [{ sku_id: sku, quantity: 7, unit_price: 100 }] }],
      });
      await waitFor('the held sale to wait with its row written', async () => {
        const { rows } = await t.admin.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, [lockKey]);
        return rows.length === 1;
      });
      // When a sale in B commits meanwhile (through a second API instance:
      // the first one's batch for this tenant is the held one)
      const inB = await second.client(token).post('/v1/sales', { store_id: storeB, payment_method: 'cash', items: [{ sku_id: sku, quantity: 3, unit_price: 100 }] });
      assert.equal(inB.status, 201, JSON.stringify(inB.body));
      // and a run reads the changes: it counts B's sale; the held one it cannot see
      assert.deepEqual((await catchUp(tenantId)).days, [d.today]);
      assert.deepEqual(await figures(tenantId), [
        { code: 'WA', d: d.today, sales_count: 1, voided_count: 0, revenue: 100 },
        { code: 'WB', d: d.today, sales_count: 1, voided_count: 0, revenue: 300 },
      ]);
      // Then the held sale commits
      await gate.query('SELECT pg_advisory_unlock($1)', [lockKey]);
      const synced = await held;
      assert.equal(synced.body.results?.[0]?.status, 201, JSON.stringify(synced.body));
      const late = synced.body.results[0].body as { id: string };

      // Its transaction id is below that of B's sale, which the run read (a
      // watermark "the highest id read" would pass over it), its stamp is an
      // hour before the run (so is any time watermark's), and the run did not see it
      const { rows: [order] } = await t.admin.query(
        `SELECT late.created_xid < b.created_xid AS smaller_id, late.created_at < p.changes_through - interval '55 minutes' AS stamped_before,
                pg_visible_in_snapshot(b.created_xid, p.changes_snapshot) AS b_seen, pg_visible_in_snapshot(late.created_xid, p.changes_snapshot) AS late_seen
         FROM sales late, sales b, daily_sales_rollup_progress p
         WHERE late.id = $1 AND b.id = $2 AND p.tenant_id = $3`,
        [late.id, inB.body.id, tenantId],
      );
      assert.deepEqual(order, { smaller_id: true, stamped_before: true, b_seen: true, late_seen: false });

      // And the stale check reports A's yesterday once that change is older than the grace (it is waiting for a run)
      await asSuperuser(`UPDATE sales SET created_at = now() - interval '27 hours' WHERE id = $1`, [late.id]);
      assert.deepEqual((await staleFindings(tenantId)).subjects, [`${storeA}/${d.yesterday}`]);
      // And the next run counts it: A's yesterday computed, nothing else
      assert.deepEqual((await catchUp(tenantId)).days, [d.yesterday]);
      assert.deepEqual(await figures(tenantId), [
        { code: 'WA', d: d.yesterday, sales_count: 1, voided_count: 0, revenue: 700 },
        { code: 'WA', d: d.today, sales_count: 1, voided_count: 0, revenue: 100 },
        { code: 'WB', d: d.today, sales_count: 1, voided_count: 0, revenue: 300 },
      ]);
      assert.deepEqual((await staleFindings(tenantId)).subjects, []);
      // And a run with nothing new recomputes nothing
      assert.deepEqual((await catchUp(tenantId)).days, []);
    } finally {
      await gate.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      await gate.end();
      await second.close();
      await t.admin.query('DROP TRIGGER watermark_hold_for_test ON sales; DROP FUNCTION watermark_hold_for_test()');
    }
  });

  it('sales committing while runs read the changes, round after round: every one is counted by the end, and a run after that recomputes nothing', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await givenStore(owner, 'RACE');
    const sku = await givenSku(owner, `R${randomUUID().slice(0, 6)}`, 'piece', 100);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 1000 }]);
    let sold = 0;
    let revenue = 0;
    for (let round = 0; round < 5; round += 1) {
      // Sales and a run at once: each sale commits before, during or after the run's read
      const sales = Array.from({ length: 6 }, (_, index) => sell(owner, store, sku, 1 + ((round + index) % 3)));
      const [run, ...done] = await Promise.all([catchUp(tenantId), ...sales]);
      assert.ok(run.days.length <= 1);
      sold += done.length;
      revenue += done.reduce((sum, sale) => sum + sale.total, 0);
    }
    await catchUp(tenantId);
    const day = (await t.admin.query(`SELECT (now() AT TIME ZONE 'UTC')::date::text AS d`)).rows[0].d as string;
    assert.deepEqual(await figures(tenantId), [{ code: 'RACE', d: day, sales_count: sold, voided_count: 0, revenue }]);
    assert.deepEqual((await catchUp(tenantId)).days, []);
  });

  it('a run and the stale check read the changes since the last run (a late sync onto an old day, a void of an old sale, a sale today), not the history', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await givenStore(owner, 'HIST');
    const sku = await givenSku(owner, `H${randomUUID().slice(0, 6)}`, 'piece', 100);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 100 }]);
    // Given 100 days of history before today, 100 sales a day (10,000 sales,
    // free samples: a total of 0), each recorded on its day
    const days = 100;
    const perDay = 100;
    await t.admin.query(
      `WITH op AS (
         INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, gen_random_uuid(), 'test.history', 'test', 'history') RETURNING id
       )
       , sale AS (
         INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, total, op_id, created_at)
         SELECT $1, gen_random_uuid(), $2, n, 'cash', 0, op.id,
                date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => $3::int - (n - 1) / $4::int) + make_interval(mins => 8 * 60 + ((n - 1) % $4::int) * 5)
         FROM op, generate_series(1, $3::int * $4::int) n
         RETURNING id, op_id
       )
       INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, op_id)
       SELECT $1, gen_random_uuid(), sale.id, 1, $5, 1, 0, 0, sale.op_id FROM sale`,
      [tenantId, store, days, perDay, sku],
    );
    await t.admin.query(
      `INSERT INTO store_receipt_counters (tenant_id, store_id, last_number) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, store_id) DO UPDATE SET last_number = EXCLUDED.last_number`,
      [tenantId, store, days * perDay],
    );
    await t.admin.query('ANALYZE sales');
    // and caught up (the tenant's first run reads every sale, once)
    await settled(tenantId);
    const first = await catchUp(tenantId);
    assert.equal(first.days.length, days);

    // When a till syncs a sale of 40 days ago, a sale of 30 days ago is voided, and a sale is made today
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x - 40, 'YYYY-MM-DD') AS "fortyDaysAgo", to_char(x - 30, 'YYYY-MM-DD') AS "thirtyDaysAgo", to_char(x, 'YYYY-MM-DD') AS today
       FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    const synced = await owner.post('/v1/sync/sales', {
      sales: [{ idempotency_key: randomUUID(), store_id: store, payment_method: 'cash', client_created_at: `${d.fortyDaysAgo}T12:00:00Z`, items: [{ sku_id: sku, quantity: 2, unit_price: 100 }] }],
    });
    assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    const old = (await t.admin.query(`SELECT id FROM sales WHERE tenant_id = $1 AND (created_at AT TIME ZONE 'UTC')::date = $2::date ORDER BY receipt_number LIMIT 1`, [tenantId, d.thirtyDaysAgo])).rows[0].id;
    const voided = await owner.post(`/v1/sales/${old}/void`, { reason: 'sample returned' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    await sell(owner, store, sku, 1);

    // Then the stale check reads those three changes' sales and no other
    const waiting = await staleFindings(tenantId);
    assert.deepEqual(waiting.subjects, [], 'changes younger than the grace are not findings');
    assert.deepEqual({ seq_scans: waiting.read.seq_scans, index_rows: waiting.read.index_rows }, { seq_scans: 0, index_rows: 3 });
    // (and when one of them waits longer than the grace, it is found the same way)
    await asSuperuser(`UPDATE sales SET created_at = now() - interval '27 hours' WHERE id = $1`, [synced.body.results[0].body.id]);
    for (const found of [await staleFindings(tenantId), await staleFindingsAsApp(tenantId)]) {
      assert.deepEqual(found.subjects, [`${store}/${d.fortyDaysAgo}`]);
      assert.deepEqual({ seq_scans: found.read.seq_scans, index_rows: found.read.index_rows }, { seq_scans: 0, index_rows: 3 });
    }

    // And the run recomputes exactly those three days, reading no more than
    // a few days' sales around each (the day's candidates), however long the history
    await settled(tenantId);
    const run = await catchUp(tenantId);
    assert.deepEqual(run.days, [d.fortyDaysAgo, d.thirtyDaysAgo, d.today]);
    assert.equal(run.read.seq_scans, 0);
    const bound = run.days.length * 4 * perDay + 10;
    assert.ok(run.read.index_rows <= bound, `read ${run.read.index_rows} sales rows, at most ${bound} expected (history: ${days * perDay})`);
    const rows = (await t.admin.query(
      `SELECT business_date::text AS d, sales_count::int, voided_count::int, revenue::int FROM daily_sales_rollups
       WHERE tenant_id = $1 AND business_date IN ($2::date, $3::date, $4::date) ORDER BY 1`,
      [tenantId, d.fortyDaysAgo, d.thirtyDaysAgo, d.today],
    )).rows;
    assert.deepEqual(rows, [
      { d: d.fortyDaysAgo, sales_count: perDay + 1, voided_count: 0, revenue: 200 },
      { d: d.thirtyDaysAgo, sales_count: perDay, voided_count: 1, revenue: 0 },
      { d: d.today, sales_count: 1, voided_count: 0, revenue: 100 },
    ]);
    // And after it, the stale check reads no sale at all, nor does a run with nothing new
    const after = await staleFindings(tenantId);
    assert.deepEqual(after.subjects, []);
    assert.deepEqual({ seq_scans: after.read.seq_scans, index_rows: after.read.index_rows }, { seq_scans: 0, index_rows: 0 });
    const idle = await catchUp(tenantId);
    assert.deepEqual(idle.days, []);
    assert.deepEqual({ seq_scans: idle.read.seq_scans, index_rows: idle.read.index_rows }, { seq_scans: 0, index_rows: 0 });
  });

  it("a store's zone change between two runs: a sale without money the last run had not seen counts on its day in the new zone, recomputed by the change, and the next run leaves it", async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await givenStore(owner, 'ZONE');
    const sku = await givenSku(owner, `Z${randomUUID().slice(0, 6)}`, 'piece', 0);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 10 }]);
    const { rows: [d] } = await t.admin.query(
      `SELECT to_char(x - 1, 'YYYY-MM-DD') AS yesterday, to_char(x, 'YYYY-MM-DD') AS today FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS x) y`,
    );
    await catchUp(tenantId);
    // Given a free sample a till gave yesterday at 20:00 UTC (no money: its day is the store's day it happened), synced, and caught up
    const sync = async (at: string) => {
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: store, payment_method: 'cash', client_created_at: at, items: [{ sku_id: sku, quantity: 1, unit_price: 0 }] }],
      });
      assert.equal(synced.body.results[0].status, 201, JSON.stringify(synced.body));
    };
    await sync(`${d.yesterday}T20:00:00Z`);
    assert.deepEqual((await catchUp(tenantId)).days, [d.yesterday]);
    // and another, at 21:00, that no run has seen yet
    await sync(`${d.yesterday}T21:00:00Z`);
    // When the store moves to UTC+14 (Kiritimati): 20:00 and 21:00 UTC are the next morning there
    const changed = await owner.patch(`/v1/stores/${store}`, { time_zone: 'Pacific/Kiritimati' });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    // Then the change recomputed both days (both samples today, yesterday none), and the next run finds nothing to redo
    const expected = [{ code: 'ZONE', d: d.today, sales_count: 2, voided_count: 0, revenue: 0 }];
    assert.deepEqual(await figures(tenantId), expected);
    assert.deepEqual((await catchUp(tenantId)).days, []);
    assert.deepEqual(await figures(tenantId), expected);
    assert.deepEqual((await staleFindings(tenantId)).subjects, []);
  });
  it('a database moved to another server (dumped and restored: the new server hands out transaction ids below the ones stored): the next run counts the sales made since, once, and the runs after it read nothing old again', async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await givenStore(owner, 'MOVE');
    const sku = await givenSku(owner, `M${randomUUID().slice(0, 6)}`, 'piece', 100);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 100 }]);
    const today = (await t.admin.query(`SELECT (now() AT TIME ZONE 'UTC')::date::text AS d`)).rows[0].d as string;
    // Given a sale today, caught up
    const first = await sell(owner, store, sku, 1);
    assert.deepEqual((await catchUp(tenantId)).days, [today]);
    // When the database is moved to a server whose transaction ids are far
    // behind the old one's (a pg_dump restored into a new cluster keeps the
    // stored ids and snapshots, but counts its own ids from the start): as
    // if every id the tenant's rows hold were 2^40 ahead of this server's
    const ahead = `1099511627776`;
    const shifted = (snapshot: string) =>
      `(pg_snapshot_xmin(${snapshot})::text::bigint + ${ahead})::text || ':' || (pg_snapshot_xmax(${snapshot})::text::bigint + ${ahead})::text || ':' ||
       coalesce((SELECT string_agg((x::text::bigint + ${ahead})::text, ',') FROM pg_snapshot_xip(${snapshot}) x), '')`;
    await withTriggersOff(t.admin, [
      [`UPDATE sales SET created_xid = (created_xid::text::bigint + ${ahead})::text::xid8 WHERE tenant_id = $1`, [tenantId]],
      [`UPDATE daily_sales_rollup_progress SET changes_snapshot = (${shifted('changes_snapshot')})::pg_snapshot WHERE tenant_id = $1`, [tenantId]],
      [`UPDATE daily_sales_rollups SET computed_snapshot = (${shifted('computed_snapshot')})::pg_snapshot WHERE tenant_id = $1`, [tenantId]],
    ]);
    // And the shop sells again and voids the first sale
    await sell(owner, store, sku, 2);
    const voided = await owner.post(`/v1/sales/${first.id}/void`, { reason: 'moved' });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    // Then, until a run, the figures' snapshot of the other server takes them for counted: reported as not matching the sales
    const matches = analyticsChecks.find((check) => check.name === 'daily_sales_rollup_matches_sales')!;
    assert.deepEqual((await t.admin.query(matches.sql, [tenantId])).rows.map((row) => row.subject), [`${store}/${today}`]);
    // And the next run counts both changes: today has both sales, the first voided
    assert.deepEqual((await catchUp(tenantId)).days, [today]);
    const expected = [{ code: 'MOVE', d: today, sales_count: 2, voided_count: 1, revenue: 200 }];
    assert.deepEqual(await figures(tenantId), expected);
    // And the runs after it find nothing to redo (no id from the old server is read as a change again)
    assert.deepEqual((await catchUp(tenantId)).days, []);
    // And a sale after that is counted as usual
    await sell(owner, store, sku, 3);
    assert.deepEqual((await catchUp(tenantId)).days, [today]);
    assert.deepEqual(await figures(tenantId), [{ code: 'MOVE', d: today, sales_count: 3, voided_count: 1, revenue: 500 }]);
    assert.deepEqual((await catchUp(tenantId)).days, []);
    assert.deepEqual((await staleFindings(tenantId)).subjects, []);
    assert.deepEqual((await t.admin.query(matches.sql, [tenantId])).rows, []);
  });
  it("a run for a date that waited for a store's zone change never writes figures older than the change's over them: a sale committed while it waited stays counted, whatever a catch-up read meanwhile", async () => {
    const { tenantId, owner } = await t.newTenant();
    const store = await givenStore(owner, 'HOLD');
    const sku = await givenSku(owner, `H${randomUUID().slice(0, 6)}`, 'piece', 100);
    await givenStock(owner, store, [{ sku_id: sku, quantity: 100 }]);
    const today = (await t.admin.query(`SELECT (now() AT TIME ZONE 'UTC')::date::text AS d`)).rows[0].d as string;
    // Given a sale today, caught up
    await sell(owner, store, sku, 1);
    assert.deepEqual((await catchUp(tenantId)).days, [today]);
    // And a zone change of the store (to Abidjan: UTC+0 all year, no summer
    // time, so its day is the UTC one on any date — London's is not from
    // March to October between 23:00 and midnight UTC) held once it has
    // locked the store row, until the test lets it go
    const lockKey = 900_102;
    await t.admin.query(`
      CREATE FUNCTION watermark_hold_zone_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.tenant_id = '${tenantId}' AND NEW.time_zone = 'Africa/Abidjan' THEN
          PERFORM pg_advisory_xact_lock_shared(${lockKey});
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER watermark_hold_zone_for_test BEFORE UPDATE ON stores FOR EACH ROW EXECUTE FUNCTION watermark_hold_zone_for_test();`);
    const gate = new pg.Client(t.url);
    await gate.connect();
    let letRunCommit = (): void => undefined;
    const runMayCommit = new Promise<void>((resolve) => {
      letRunCommit = resolve;
    });
    let runWrote = (): void => undefined;
    const written = new Promise<void>((resolve) => {
      runWrote = resolve;
    });
    try {
      await gate.query('SELECT pg_advisory_lock($1)', [lockKey]);
      const zone = owner.patch(`/v1/stores/${store}`, { time_zone: 'Africa/Abidjan' });
      await waitFor('the zone change to hold the store row', async () => {
        const { rows } = await t.admin.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted`, [lockKey]);
        return rows.length === 1;
      });
      // When a run for today (what `analytics.rollup` with a date runs) starts meanwhile: it waits for the store row
      const input = { tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `rollup-${randomUUID()}`, fingerprint: randomUUID() };
      const run = runCommand(t.db, input, { type: 'analytics.rollup' }, async (cmd) => {
        const rows = await rollupDailySales(cmd, today);
        runWrote();
        await runMayCommit;
        return { status: 200, body: rows };
      });
      await waitFor('the run to wait for the store row', async () => {
        const { rows } = await t.admin.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%stores%FOR SHARE%' AND query NOT LIKE '%pg_stat_activity%'`,
        );
        return rows.length >= 1;
      });
      // and a sale of 2 commits (sales do not wait for a zone change)
      await sell(owner, store, sku, 2);
      // and the zone change goes through: its figures count both sales
      await gate.query('SELECT pg_advisory_unlock($1)', [lockKey]);
      const changed = await zone;
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      await written;
      // and the scheduled catch-up reads the changes before the run commits
      await catchUp(tenantId);
      letRunCommit();
      assert.equal((await run).status, 200);
      // Then today's figures count both sales, and stay so
      const expected = [{ code: 'HOLD', d: today, sales_count: 2, voided_count: 0, revenue: 300 }];
      assert.deepEqual(await figures(tenantId), expected);
      await catchUp(tenantId);
      assert.deepEqual(await figures(tenantId), expected);
    } finally {
      letRunCommit();
      await gate.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      await gate.end();
      await t.admin.query('DROP TRIGGER watermark_hold_zone_for_test ON stores; DROP FUNCTION watermark_hold_zone_for_test()');
    }
  });
});
