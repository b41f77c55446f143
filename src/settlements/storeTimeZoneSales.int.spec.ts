import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { runCommand } from '../core/command.js';
import { catchUpDailySales } from '../analytics/catchUpDailySales.js';
import { rollupDailySales, SALE_DAY, SALE_FIGURES } from '../analytics/rollupDailySales.js';

/**
 * A change of a store's zone recomputes the store's daily figures (a GROUP BY
 * over every sale of the store) while it holds the store row. Sales of the
 * store — and, through the tenant's group-commit lane, of every store of the
 * tenant — must not wait for it; what must not run beside it (a count, the
 * rollup and its catch-up) takes turns with it.
 */
describe("a change of a store's zone and the sales around it", () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  /** A tenant (drawer float 1,000) with a store in `timeZone` and a second store (UTC), both holding stock. */
  async function shop(timeZone: string) {
    const { owner, tenantId } = await t.newTenant();
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 1_000 })).status, 200);
    const main = (await owner.post('/v1/stores', { code: 'MAIN', name: 'Moving shop', time_zone: timeZone })).body as { id: string };
    const other = (await owner.post('/v1/stores', { code: 'OTHER', name: 'Shop of the same chain' })).body as { id: string };
    const sku = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 100 })).body as { id: string };
    for (const store of [main, other]) {
      assert.equal((await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 100_000 }] })).status, 201);
    }
    return { owner, tenantId, main, other, sku };
  }

  /** A cash sale of `amount` (0: a give-away, no money, no entry): online, or synced from a till that made it at `at`. */
  async function sale(owner: ApiClient, storeId: string, skuId: string, amount: number, at?: string): Promise<ApiResponse> {
    const items = [{ sku_id: skuId, quantity: Math.max(1, amount / 100), unit_price: amount === 0 ? 0 : 100 }];
    if (at === undefined) return owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items }, { idempotencyKey: randomUUID() });
    const synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items, client_created_at: at }] });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    return { status: synced.body.results[0].status, headers: synced.headers, body: synced.body.results[0].body };
  }

  async function catchUp(tenantId: string) {
    const outcome = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
      { type: 'analytics.rollup' },
      async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) }),
    );
    assert.equal(outcome.status, 200);
  }

  /** A rollup of one day (the `analytics.rollup` job with a `date`). */
  async function rollup(tenantId: string, day: string) {
    const outcome = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: randomUUID(), fingerprint: randomUUID() },
      { type: 'analytics.rollup' },
      async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, day) }),
    );
    assert.equal(outcome.status, 200);
  }

  /** Until `n` sessions of this test database wait on a lock. */
  const waiting = async (n: number) => {
    for (let i = 0; i < 250; i++) {
      const { rows } = await t.admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      if (rows[0].n >= n) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`never ${n} sessions waiting on a lock`);
  };

  /** The statements of the sessions waiting on a lock. */
  const waitingStatements = async () =>
    (await t.admin.query<{ query: string }>(`SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows.map(
      (row) => row.query,
    );

  /** Another session holding every figures row of a store (FOR UPDATE) until `release`: a zone change of the store stops inside its recompute, at its upsert. */
  async function holdFigures(tenantId: string, storeId: string): Promise<{ release(): Promise<void> }> {
    const holder: pg.PoolClient = await t.admin.connect();
    await holder.query('BEGIN');
    const held = await holder.query(`SELECT 1 FROM daily_sales_rollups WHERE tenant_id = $1 AND store_id = $2 FOR UPDATE`, [tenantId, storeId]);
    if (!held.rowCount) {
      // (left open, it kept the test database from being dropped: the file never ended)
      await holder.query('ROLLBACK');
      holder.release();
      assert.fail('the store has figures to hold');
    }
    let released = false;
    return {
      async release() {
        if (released) return;
        released = true;
        await holder.query('COMMIT');
        holder.release();
      },
    };
  }

  /** Which of `promises` settle within `ms` (each true or false, in order). */
  async function settledWithin(ms: number, promises: Array<Promise<unknown>>): Promise<boolean[]> {
    const done = promises.map(() => false);
    promises.forEach((promise, index) => void promise.then(() => (done[index] = true), () => (done[index] = true)));
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && done.some((flag) => !flag)) await new Promise((resolve) => setTimeout(resolve, 20));
    return [...done];
  }

  /**
   * Two zones whose "today" differ now, at whatever hour the test runs: Kiritimati (UTC+14) and Pago Pago (UTC−11)
   * are 25 h apart, so Kiritimati's day is one or two days after Pago Pago's. Checked here, not assumed.
   */
  async function aheadAndBehind() {
    const ahead = 'Pacific/Kiritimati';
    const behind = 'Pacific/Pago_Pago';
    const days = (
      await t.admin.query<{ ahead: string; behind: string; utc: string }>(
        `SELECT to_char(store_day($1, now()), 'YYYY-MM-DD') AS ahead, to_char(store_day($2, now()), 'YYYY-MM-DD') AS behind, to_char(store_day('UTC', now()), 'YYYY-MM-DD') AS utc`,
        [ahead, behind],
      )
    ).rows[0]!;
    assert.ok(days.ahead > days.behind, JSON.stringify(days));
    return { ahead, behind, days };
  }

  /** The day each sale's money is booked on (its `sale` entry), by sale id. */
  const entryDays = async (tenantId: string) =>
    new Map(
      (
        await t.admin.query<{ id: string; d: string }>(
          `SELECT e.subject_id AS id, to_char(e.business_date, 'YYYY-MM-DD') AS d FROM journal_entries e WHERE e.tenant_id = $1 AND e.kind = 'sale'`,
          [tenantId],
        )
      ).rows.map((row) => [row.id, row.d]),
    );

  /** Non-zero figures of a store, oldest first: [day, sales, revenue]. */
  const figures = async (tenantId: string, storeId: string) =>
    (
      await t.admin.query<{ d: string; sales_count: number; revenue: string }>(
        `SELECT to_char(business_date, 'YYYY-MM-DD') AS d, sales_count, revenue::text FROM daily_sales_rollups
         WHERE tenant_id = $1 AND store_id = $2 AND (sales_count > 0 OR revenue <> 0) ORDER BY business_date`,
        [tenantId, storeId],
      )
    ).rows.map((row) => [row.d, row.sales_count, Number(row.revenue)]);

  /**
   * Every store-day whose figures differ from a fresh recompute from the sales (SALE_DAY, SALE_FIGURES, in each
   * store's zone now): a day with sales and no figures, figures that differ, or figures other than zeros on a day
   * without sales.
   */
  const figuresNotAsSales = async (tenantId: string) =>
    (
      await t.admin.query(
        `WITH fresh AS (
           SELECT s.store_id, ${SALE_DAY} AS business_date, ${SALE_FIGURES}
           FROM sales s JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
           WHERE s.tenant_id = $1
           GROUP BY 1, 2
         ), kept AS (SELECT * FROM daily_sales_rollups WHERE tenant_id = $1)
         SELECT coalesce(f.store_id, r.store_id) AS store_id, to_char(coalesce(f.business_date, r.business_date), 'YYYY-MM-DD') AS day,
                jsonb_build_array(f.sales_count, f.voided_count, f.revenue) AS sales, jsonb_build_array(r.sales_count, r.voided_count, r.revenue) AS figures
         FROM fresh f FULL JOIN kept r ON r.store_id = f.store_id AND r.business_date = f.business_date
         WHERE (coalesce(f.sales_count, 0), coalesce(f.voided_count, 0), coalesce(f.revenue, 0)) IS DISTINCT FROM (r.sales_count, r.voided_count, r.revenue)`,
        [tenantId],
      )
    ).rows;

  it('a sale of the store, and one of another store of its tenant, go through while a zone change recomputes its figures; a count of the store waits for it', async () => {
    const { ahead, behind, days } = await aheadAndBehind();
    // Given a Kiritimati store that sold for 100 and whose figures were rolled up, and a second store of the tenant
    const { owner, tenantId, main, other, sku } = await shop(ahead);
    const first = await sale(owner, main.id, sku.id, 100);
    assert.equal(first.status, 201);
    await catchUp(tenantId);
    // When its move to Pago Pago is held inside its recompute of the figures (another session holds the rows it rewrites)
    const holder = await holdFigures(tenantId, main.id);
    let moving: Promise<ApiResponse> | undefined;
    let counting: Promise<ApiResponse> | undefined;
    let selling: Array<Promise<ApiResponse>> = [];
    try {
      moving = owner.patch(`/v1/stores/${main.id}`, { time_zone: behind });
      await waiting(1);
      assert.match((await waitingStatements()).join('\n'), /INSERT INTO daily_sales_rollups/, 'the zone change waits in its recompute');
      // and a sale of the store and a sale of the other store are made meanwhile
      selling = [sale(owner, main.id, sku.id, 200), sale(owner, other.id, sku.id, 300)];
      // Then both are done while the change is still held (they waited for it: the store row was locked FOR UPDATE,
      // which the sale's foreign-key check (FOR KEY SHARE) waits for, and the other store's sale queued behind it in the tenant's lane)
      const done = await settledWithin(5_000, selling);
      const blockedBy = done.every(Boolean) ? '' : `; waiting on a lock: ${(await waitingStatements()).map((query) => query.replace(/\s+/g, ' ').slice(0, 90)).join(' | ')}`;
      assert.deepEqual(done, [true, true], `a sale of the store and a sale of another store of the tenant go through during the zone change${blockedBy}`);
      for (const sold of selling) assert.equal((await sold).status, 201);
      // and a count of the store meanwhile waits for the change (it reads the zone FOR SHARE)
      counting = owner.post('/v1/settlements', { store_id: main.id, business_date: days.ahead, declared_cash: 1_300 }, { idempotencyKey: randomUUID() });
      await Promise.race([waiting(2), counting.then((answer) => assert.fail(`the count did not wait for the zone change: ${answer.status} ${JSON.stringify(answer.body)}`))]);
    } finally {
      await holder.release();
    }
    const moved = await moving!;
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    assert.equal(moved.body.time_zone, behind);
    // and checks its day against the new zone: Kiritimati's today has not started in Pago Pago
    const counted = await counting!;
    assert.equal(counted.status, 400, JSON.stringify(counted.body));
    assert.equal(counted.body.errors[0].path, '/body/business_date');
    // and the sale made during the change is booked in the zone it read, the old one (as if it came just before the change);
    // a sale after the change, in the new one
    const [during, elsewhere] = await Promise.all(selling);
    const later = await sale(owner, main.id, sku.id, 400);
    assert.equal(later.status, 201);
    const booked = await entryDays(tenantId);
    assert.deepEqual([booked.get(first.body.id), booked.get(during!.body.id), booked.get(later.body.id)], [days.ahead, days.ahead, days.behind]);
    assert.equal(booked.get(elsewhere!.body.id), days.utc);
    // and the change's figures, which do not count the sale made during it, are not reported as wrong (their snapshot does not see it)
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales']), []);
    // and the next catch-up puts them right
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId, main.id), [[days.behind, 1, 400], [days.ahead, 2, 300]]);
    assert.deepEqual(await figuresNotAsSales(tenantId), []);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a sale without money made during a zone change, then a catch-up that reads the changes before the change commits: the figures count the sale on its day in the new zone", async () => {
    // Given a UTC store gave one away (a total of 0: no entry, it counts on the store's day it happened) at 03:30 UTC
    // on 15 January (22:30 on the 14th in New York), rolled up
    const { owner, tenantId, main, sku } = await shop('UTC');
    assert.equal((await sale(owner, main.id, sku.id, 0, '2026-01-15T03:30:00Z')).status, 201);
    await catchUp(tenantId);
    assert.deepEqual(await figures(tenantId, main.id), [['2026-01-15', 1, 0]]);
    // When its move to New York is held inside its recompute
    const holder = await holdFigures(tenantId, main.id);
    let moving: Promise<ApiResponse> | undefined;
    let catchingUp: Promise<void> | undefined;
    try {
      moving = owner.patch(`/v1/stores/${main.id}`, { time_zone: 'America/New_York' });
      await waiting(1);
      // and the till gives another away at 04:00 UTC (23:00 on the 14th in New York), which goes through meanwhile
      const during = sale(owner, main.id, sku.id, 0, '2026-01-15T04:00:00Z');
      assert.deepEqual(await settledWithin(5_000, [during]), [true], 'the sale goes through during the zone change');
      assert.equal((await during).status, 201);
      // and the scheduled catch-up starts meanwhile
      catchingUp = catchUp(tenantId);
      await waiting(2);
    } finally {
      await holder.release();
    }
    assert.equal((await moving!).status, 200);
    await catchingUp!;
    await catchUp(tenantId);
    // Then both give-aways are on the 14th, New York's day they happened (the catch-up waits for the change: reading
    // the changes before it committed, it named the second one's day in UTC, the 15th, recomputed the 15th — in New
    // York time, without it — and marked it seen, so the 14th never counted it, and no check said so)
    assert.deepEqual(await figures(tenantId, main.id), [['2026-01-14', 2, 0]]);
    assert.deepEqual(await figuresNotAsSales(tenantId), []);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('sales, voids, rollups and catch-ups racing zone changes, round after round, leave figures equal to the sales once caught up, entries on a day of either zone, stock = ledger and gapless receipts', async () => {
    const { owner, tenantId, main, other, sku } = await shop('UTC');
    // Given the moving store has figures (the rounds hold them)
    assert.equal((await sale(owner, main.id, sku.id, 100)).status, 201);
    await catchUp(tenantId);
    const zones = ['America/New_York', 'Pacific/Kiritimati', 'UTC', 'Pacific/Pago_Pago', 'Asia/Kolkata', 'America/Los_Angeles'];
    const tillTimes = ['2026-01-15T03:30:00Z', '2026-01-14T23:30:00Z', '2026-01-15T11:30:00Z', '2026-01-15T10:30:00Z'];
    // Each sale of the moving store with money, and the zones the store had before and after the round it was made in
    const made: Array<{ id: string; before: string; after: string }> = [];
    const voidable: string[] = [];
    let zone = 'UTC';
    for (let round = 0; round < 12; round++) {
      const next = zones[round % zones.length]!;
      // Every other round the change is held in its recompute for a moment, so the round's sales land inside it
      const holder = round % 2 === 1 ? await holdFigures(tenantId, main.id) : undefined;
      const releasing = holder ? new Promise<void>((resolve, reject) => setTimeout(() => holder.release().then(resolve, reject), 100 + 30 * round)) : Promise.resolve();
      const at = (index: number) => tillTimes[(round + index) % tillTimes.length]!;
      const sales = [
        sale(owner, main.id, sku.id, 100),
        sale(owner, main.id, sku.id, 200, at(0)),
        sale(owner, main.id, sku.id, 0, at(1)),
        sale(owner, main.id, sku.id, 300, at(2)),
        sale(owner, main.id, sku.id, 0, at(3)),
        sale(owner, main.id, sku.id, 500),
        sale(owner, other.id, sku.id, 100),
        sale(owner, other.id, sku.id, 0, at(0)),
      ];
      const voids = voidable.splice(0, 2).map((id) => owner.post(`/v1/sales/${id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() }));
      const [changed, ...rest] = await Promise.all([
        owner.patch(`/v1/stores/${main.id}`, { time_zone: next }),
        ...sales,
        ...voids,
        catchUp(tenantId).then(() => undefined),
        rollup(tenantId, '2026-01-14').then(() => undefined),
        rollup(tenantId, '2026-01-15').then(() => undefined),
        releasing.then(() => undefined),
      ]);
      assert.equal((changed as ApiResponse).status, 200, JSON.stringify((changed as ApiResponse).body));
      const answers = rest.filter((answer): answer is ApiResponse => answer !== undefined);
      for (const answer of answers) assert.ok(answer.status === 201 || answer.status === 200, JSON.stringify(answer.body));
      for (const [index, answer] of answers.slice(0, 6).entries()) {
        if (answer.body.total > 0) made.push({ id: answer.body.id, before: zone, after: next });
        if (index === 1 || index === 2) voidable.push(answer.body.id);
      }
      // and a sale after the change is booked in the new zone
      const after = await sale(owner, main.id, sku.id, 100);
      assert.equal(after.status, 201);
      made.push({ id: after.body.id, before: next, after: next });
      zone = next;
      // Then after every round no figures are reported as wrong: those that do not count a sale are known not to (their snapshot)
      assert.deepEqual(await integrityFindings(t.admin, tenantId, ['daily_sales_rollup_matches_sales']), [], `round ${round}`);
    }
    // and once caught up, the figures are the sales' in the store's zone now
    await catchUp(tenantId);
    assert.deepEqual(await figuresNotAsSales(tenantId), []);
    // and each sale's money is booked on its day in the zone before or after the change it raced (a till's day of its
    // till time; an online sale's today, between when it began and now)
    const misbooked = await t.admin.query(
      `SELECT s.id, to_char(e.business_date, 'YYYY-MM-DD') AS booked, m.before, m.after
       FROM unnest($2::uuid[], $3::text[], $4::text[]) AS m (id, before, after)
       JOIN sales s ON s.tenant_id = $1 AND s.id = m.id
       JOIN journal_entries e ON e.tenant_id = s.tenant_id AND e.subject_id = s.id AND e.kind = 'sale'
       CROSS JOIN LATERAL (SELECT CASE WHEN s.source = 'offline' THEN s.client_created_at END AS till_time) c
       WHERE e.business_date NOT IN (store_day(m.before, coalesce(c.till_time, s.created_at)), store_day(m.after, coalesce(c.till_time, s.created_at)),
                                     store_day(m.before, coalesce(c.till_time, now())), store_day(m.after, coalesce(c.till_time, now())))`,
      [tenantId, made.map((row) => row.id), made.map((row) => row.before), made.map((row) => row.after)],
    );
    assert.deepEqual(misbooked.rows, []);
    assert.equal(made.length >= 12 * 5, true);
    // and receipt numbers are 1..n in each store, stock equals its ledger, and the checks find nothing
    const receipts = await t.admin.query(
      `SELECT store_id, count(*)::int AS n, min(receipt_number)::int AS first, max(receipt_number)::int AS last FROM sales WHERE tenant_id = $1 GROUP BY 1`,
      [tenantId],
    );
    for (const row of receipts.rows) assert.deepEqual([row.first, row.last], [1, row.n]);
    const drift = await t.admin.query(
      `SELECT b.store_id, b.quantity, (SELECT coalesce(sum(l.quantity_change), 0) FROM stock_ledger l WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id) AS ledger
       FROM stock_balances b WHERE b.tenant_id = $1`,
      [tenantId],
    );
    for (const row of drift.rows) assert.equal(Number(row.quantity), Number(row.ledger));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
  it("zone changes of two stores at once, racing catch-ups (every store FOR SHARE), rollups by date and counts of both stores: none deadlocks or fails, and once caught up the figures are the sales'", async () => {
    const { owner, tenantId, main, other, sku } = await shop('UTC');
    assert.equal((await sale(owner, main.id, sku.id, 100)).status, 201);
    assert.equal((await sale(owner, other.id, sku.id, 100)).status, 201);
    await catchUp(tenantId);
    const zones = ['America/New_York', 'Pacific/Kiritimati', 'UTC', 'Pacific/Pago_Pago', 'Asia/Kolkata', 'America/Los_Angeles'];
    for (let round = 0; round < 8; round++) {
      // Every other round one store's change is held in its recompute, so the others pile up behind and beside it
      const holder = round % 2 === 1 ? await holdFigures(tenantId, round % 4 === 1 ? main.id : other.id) : undefined;
      const releasing = holder ? new Promise<void>((resolve, reject) => setTimeout(() => holder.release().then(resolve, reject), 150)) : Promise.resolve();
      const day = `2026-01-${String(round + 1).padStart(2, '0')}`;
      const count = (storeId: string) =>
        owner.post('/v1/settlements', { store_id: storeId, business_date: day, declared_cash: 1_000 }, { idempotencyKey: randomUUID() });
      // All at once: the API's requests and the jobs' commands
      const requests = Promise.all([
        owner.patch(`/v1/stores/${main.id}`, { time_zone: zones[round % zones.length] }),
        owner.patch(`/v1/stores/${other.id}`, { time_zone: zones[(round + 3) % zones.length] }),
        count(main.id),
        count(other.id),
        sale(owner, main.id, sku.id, 0, '2026-01-15T03:30:00Z'),
        sale(owner, other.id, sku.id, 200),
      ]);
      const jobs = Promise.allSettled([catchUp(tenantId), catchUp(tenantId), rollup(tenantId, '2026-01-15'), rollup(tenantId, '2026-01-14'), releasing]);
      const [answers, side] = await Promise.all([requests, jobs]);
      for (const answer of answers) assert.ok([200, 201].includes(answer.status), `round ${round}: ${JSON.stringify(answer.body)}`);
      for (const outcome of side) assert.equal(outcome.status, 'fulfilled', `round ${round}: ${outcome.status === 'rejected' ? String(outcome.reason) : ''}`);
    }
    await catchUp(tenantId);
    assert.deepEqual(await figuresNotAsSales(tenantId), []);
    const counts = await t.admin.query(`SELECT count(*)::int AS n FROM settlements WHERE tenant_id = $1`, [tenantId]);
    assert.equal(counts.rows[0].n, 16);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
