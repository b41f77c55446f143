import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { waitFor } from '../../test/support/wait.js';

describe('daily cash settlements', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let otherStore: { id: string };
  let managerA: ApiClient;
  let managerB: ApiClient;
  let today: string;

  const pastDate = (daysAgo: number) => new Date(Date.parse(`${today}T00:00:00Z`) - daysAgo * 86_400_000).toISOString().slice(0, 10);

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    store = (await owner.post('/v1/stores', { code: 'D1', name: 'Drawer one' })).body;
    otherStore = (await owner.post('/v1/stores', { code: 'D2', name: 'Drawer two' })).body;
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 10_000 })).status, 200);
    managerA = t.client((await owner.post('/v1/tokens', { name: 'anna', role: 'manager', store_ids: [store.id] })).body.token);
    managerB = t.client((await owner.post('/v1/tokens', { name: 'bert', role: 'manager', store_ids: [store.id] })).body.token);
  });
  after(() => t.close());

  const counts = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT string_agg(status || ':' || version || ':' || coalesce(decided_by, '-'), ',' ORDER BY id) FROM settlements WHERE tenant_id = $1) AS settlements,
                (SELECT count(*) FROM settlements WHERE tenant_id = $1)::int AS rows`,
        [tenantId],
      )
    ).rows[0];

  it('expected cash = float + the day\'s cash movements of that store\'s drawer; declared and variance recorded; ETag = version', async () => {
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Cora' })).body;
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Sam' })).body;
    const pay = (body: object) => owner.post('/v1/payments', body);
    assert.equal((await pay({ party_id: customer.id, store_id: store.id, method: 'cash', amount: 3_000 })).status, 201);
    assert.equal((await pay({ party_id: supplier.id, store_id: store.id, method: 'cash', amount: 800 })).status, 201);
    assert.equal((await pay({ party_id: customer.id, store_id: store.id, method: 'card', amount: 5_000 })).status, 201, 'card is not drawer cash');
    assert.equal((await pay({ party_id: customer.id, store_id: otherStore.id, method: 'cash', amount: 7_000 })).status, 201, 'another store');

    const response = await managerA.post('/v1/settlements', { store_id: store.id, business_date: today, declared_cash: 12_000, note: 'count 1' });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    assert.equal(response.headers.get('etag'), '"1"');
    const row = (await t.admin.query(`SELECT * FROM settlements WHERE id = $1`, [response.body.id])).rows[0];
    assert.deepEqual(
      [row.float_amount, row.cash_sales, row.cash_voids, row.payments_in, row.payments_out, row.other_cash, row.expected_cash, row.declared_cash, row.variance].map(Number),
      [10_000, 0, 0, 3_000, 800, 0, 12_200, 12_000, -200],
    );
    assert.equal(row.status, 'submitted');
    assert.equal(row.submitted_by, 'manager:anna');

    const second = await managerB.post('/v1/settlements', { store_id: store.id, business_date: today, declared_cash: 1 });
    assert.equal(second.status, 409);
    assert.equal(second.body.code, 'already_exists');
  });

  it('two managers approve the same settlement at once: one approves, the other is answered with that approval as already done; the row names one approver', async () => {
    for (let round = 1; round <= 8; round++) {
      const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(round), declared_cash: 10_000 });
      assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
      const etag = submitted.headers.get('etag') ?? '';
      const [a, b] = await Promise.all([
        managerA.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() }),
        managerB.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() }),
      ]);
      // The same decision on the same figures: one decides, the other waits for it and gets its answer (it was 412).
      assert.deepEqual([a.status, b.status], [200, 200], `${a.status} ${b.status}`);
      assert.deepEqual([a.headers.get('idempotent-replayed'), b.headers.get('idempotent-replayed')].sort(), [null, 'true']);
      const winner = a.headers.get('idempotent-replayed') === null ? a : b;
      const loser = winner === a ? b : a;
      assert.deepEqual(loser.body, winner.body);
      assert.equal(winner.headers.get('etag'), '"2"');
      assert.equal(loser.headers.get('etag'), '"2"');
      const row = (await t.admin.query(`SELECT status, version, decided_by, decided_op FROM settlements WHERE id = $1`, [submitted.body.id])).rows[0];
      assert.equal(row.status, 'approved');
      assert.equal(row.version, 2);
      assert.equal(row.decided_by, winner === a ? 'manager:anna' : 'manager:bert');
      const decisions = await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'settlement.approve' AND id = $2`, [tenantId, row.decided_op]);
      assert.equal(decisions.rows[0].n, 1);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM events WHERE tenant_id = $1 AND subject_id = $2 AND type = 'settlement.approve'`, [tenantId, submitted.body.id])).rows[0].n, 1);
    }
  });

  it('an approval and a rejection of the same count at once: one decides, the other is 412 naming the decision; the row, its operations and events hold one decision', async () => {
    for (let round = 1; round <= 8; round++) {
      const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(100 + round), declared_cash: 10_000 });
      assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
      const etag = submitted.headers.get('etag') ?? '';
      const operationsBefore = (await counts()).operations;
      const [approved, rejected] = await Promise.all([
        managerA.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() }),
        managerB.post(`/v1/settlements/${submitted.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() }),
      ]);
      assert.deepEqual([approved.status, rejected.status].sort(), [200, 412], `${approved.status} ${rejected.status}`);
      const [winner, loser, decided] = approved.status === 200 ? [approved, rejected, 'approved'] : [rejected, approved, 'rejected'];
      assert.equal(winner.body.status, decided);
      assert.equal(loser.body.code, 'version_conflict');
      assert.equal(loser.body.current_version, 2);
      assert.equal(loser.body.current_status, decided);
      const row = (await t.admin.query(`SELECT status, version, decided_by, decided_op, decision_note FROM settlements WHERE id = $1`, [submitted.body.id])).rows[0];
      assert.deepEqual(
        [row.status, row.version, row.decided_by, row.decision_note],
        decided === 'approved' ? ['approved', 2, 'manager:anna', null] : ['rejected', 2, 'manager:bert', 'recount'],
      );
      assert.equal((await counts()).operations, operationsBefore + 1, 'only the decision that went through left an operation');
      const events = await t.admin.query(`SELECT type, op_id FROM events WHERE tenant_id = $1 AND subject_id = $2 AND type <> 'settlement.submit'`, [tenantId, submitted.body.id]);
      assert.deepEqual(events.rows, [{ type: decided === 'approved' ? 'settlement.approve' : 'settlement.reject', op_id: row.decided_op }]);
    }
  });

  it('If-Match is required (428), must be current (412), and a decided settlement cannot be decided again (409) — nothing written', async () => {
    const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(20), declared_cash: 9_000 });
    const id = submitted.body.id;
    let before = await counts();
    const missing = await managerA.post(`/v1/settlements/${id}/approve`, {});
    assert.equal(missing.status, 428);
    assert.equal(missing.body.code, 'precondition_required');
    const stale = await managerA.post(`/v1/settlements/${id}/approve`, {}, { headers: { 'if-match': '"7"' } });
    assert.equal(stale.status, 412);
    assert.equal(stale.body.current_version, 1);
    const garbage = await managerA.post(`/v1/settlements/${id}/reject`, {}, { headers: { 'if-match': 'nonsense' } });
    assert.equal(garbage.status, 412);
    const staleList = await managerA.post(`/v1/settlements/${id}/approve`, {}, { headers: { 'if-match': '"7", W/"8"' } });
    assert.equal(staleList.status, 412);
    assert.equal(staleList.body.current_version, 1);
    // `*` would approve whatever figures are there now: a decision must name the version it saw.
    const any = await managerA.post(`/v1/settlements/${id}/approve`, {}, { headers: { 'if-match': '*' } });
    assert.equal(any.status, 428);
    assert.equal(any.body.code, 'precondition_required');
    assert.match(any.body.detail, /\*/);
    assert.deepEqual(await counts(), before);

    // If-Match is a list (RFC 9110): it holds when the current version is any of those named.
    const rejected = await managerB.post(`/v1/settlements/${id}/reject`, { note: 'recount' }, { headers: { 'if-match': '"7", "1"' } });
    assert.equal(rejected.status, 200);
    assert.equal(rejected.body.status, 'rejected');
    before = await counts();
    const again = await managerA.post(`/v1/settlements/${id}/approve`, {}, { headers: { 'if-match': '"2"' } });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'invalid_transition');
    assert.deepEqual(await counts(), before);

    // A rejected day may be submitted again, and that one approved.
    const resubmitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(20), declared_cash: 10_000 });
    assert.equal(resubmitted.status, 201);
    assert.equal(resubmitted.body.variance, 0);
    assert.equal((await managerB.post(`/v1/settlements/${resubmitted.body.id}/approve`, null, { headers: { 'if-match': '"1"' } })).status, 200);
    const fetched = await managerA.get(`/v1/settlements/${resubmitted.body.id}`);
    assert.equal(fetched.headers.get('etag'), '"2"');
    assert.equal((await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(20), declared_cash: 1 })).status, 409);
  });

  it('an approval retried with its Idempotency-Key replays the 200 (not a 412)', async () => {
    const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(40), declared_cash: 10_000 });
    const key = randomUUID();
    const first = await managerA.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': '"1"' }, idempotencyKey: key });
    const again = await managerA.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': '"1"' }, idempotencyKey: key });
    assert.equal(first.status, 200);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(again.headers.get('etag'), '"2"');
    assert.deepEqual(again.body, first.body);
  });

  it('a decision retried under its key with the empty body spelled otherwise (none, null, {}) replays it, not 422', async () => {
    const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(41), declared_cash: 10_000 });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const key = randomUUID();
    const first = await managerA.post(`/v1/settlements/${submitted.body.id}/reject`, undefined, { headers: { 'if-match': '"1"' }, idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const before = await counts();
    for (const body of [{}, null]) {
      const again = await managerA.post(`/v1/settlements/${submitted.body.id}/reject`, body, { headers: { 'if-match': '"1"' }, idempotencyKey: key });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, first.body);
    }
    const noted = await managerA.post(`/v1/settlements/${submitted.body.id}/reject`, { note: 'other' }, { headers: { 'if-match': '"1"' }, idempotencyKey: key });
    assert.equal(noted.status, 422, JSON.stringify(noted.body));
    assert.deepEqual(await counts(), before);
  });

  it('a recount after a rejection expects the float the day was first counted with, even if the float setting changed since', async () => {
    const shop = (await owner.post('/v1/stores', { code: 'FLOAT', name: 'Float' })).body;
    const day = pastDate(60);
    const first = await owner.post('/v1/settlements', { store_id: shop.id, business_date: day, declared_cash: 9_000 });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.equal(first.body.float_amount, 10_000);
    const rejected = await owner.post(`/v1/settlements/${first.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': '"1"' } });
    assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
    // The float setting is raised (from now on the drawers start with more change) …
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 25_000 })).status, 200);
    try {
      // … but the day being recounted started with the float it was first counted with
      const recount = await owner.post('/v1/settlements', { store_id: shop.id, business_date: day, declared_cash: 10_000 });
      assert.equal(recount.status, 201, JSON.stringify(recount.body));
      const row = (await t.admin.query(`SELECT float_amount, expected_cash, variance FROM settlements WHERE id = $1`, [recount.body.id])).rows[0];
      assert.deepEqual([row.float_amount, row.expected_cash, row.variance].map(Number), [10_000, 10_000, 0]);
      // A day never counted before takes the setting as it is now
      const fresh = await owner.post('/v1/settlements', { store_id: shop.id, business_date: pastDate(61), declared_cash: 25_000 });
      assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
      assert.equal(fresh.body.float_amount, 25_000);
    } finally {
      assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 10_000 })).status, 200);
    }
  });

  describe('money never lands in a settled day', () => {
    const entryDates = async (storeId: string) =>
      (
        await t.admin.query(
          `SELECT to_char(e.business_date, 'YYYY-MM-DD') AS day, sum(p.amount)::int AS cash
           FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
           JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
           WHERE e.tenant_id = $1 AND e.store_id = $2 AND a.key = 'store/' || $2 || '/cash_drawer'
           GROUP BY 1 ORDER BY 1`,
          [tenantId, storeId],
        )
      ).rows.map((row) => [row.day, row.cash]);
    const shopWithStock = async (code: string) => {
      const shop = (await owner.post('/v1/stores', { code, name: code })).body;
      const sku = (await owner.post('/v1/skus', { code: `${code}-SKU`, name: 'thing', unit: 'piece', price: 100 })).body;
      assert.equal((await owner.post(`/v1/stores/${shop.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 1000 }] })).status, 201);
      return { shop, sku };
    };
    const tomorrow = () => new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);

    it('an offline sale synced after its day was settled counts in the next open day; a sale after today\'s count, tomorrow', async () => {
      const { shop, sku } = await shopWithStock('LATE');
      const yesterday = pastDate(1);
      // Given yesterday is settled (nothing was sold)
      const settled = await owner.post('/v1/settlements', { store_id: shop.id, business_date: yesterday, declared_cash: 10_000 });
      assert.equal(settled.status, 201);
      // When a sale the till made yesterday arrives today
      const synced = await owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: shop.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 2, unit_price: 100 }], client_created_at: `${yesterday}T17:00:00Z` }],
      });
      assert.equal(synced.body.results[0].status, 201);
      // Then its cash is booked today, and yesterday's settlement still matches the ledger
      assert.deepEqual(await entryDates(shop.id), [[today, 200]]);
      // And once today is counted, a new sale's cash counts tomorrow
      assert.equal((await owner.post('/v1/settlements', { store_id: shop.id, business_date: today, declared_cash: 10_200 })).status, 201);
      const sale = await owner.post('/v1/sales', { store_id: shop.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
      assert.equal(sale.status, 201);
      assert.deepEqual(await entryDates(shop.id), [[today, 200], [tomorrow(), 100]]);
      const days = (await t.admin.query(`SELECT to_char(business_date, 'YYYY-MM-DD') AS day, cash_sales FROM settlements WHERE store_id = $1 ORDER BY 1`, [shop.id])).rows;
      assert.deepEqual(days.map((d) => [d.day, Number(d.cash_sales)]), [[yesterday, 0], [today, 200]]);
    });

    it('a rejected count keeps the day closed: every sale after the first count is tomorrow\'s, and the recount expects the first count\'s figures', async () => {
      const { shop, sku } = await shopWithStock('RECOUNT');
      const sell = async () => {
        const sale = await owner.post('/v1/sales', { store_id: shop.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] });
        assert.equal(sale.status, 201, JSON.stringify(sale.body));
      };
      await sell(); // before the count
      const first = await owner.post('/v1/settlements', { store_id: shop.id, business_date: today, declared_cash: 50 });
      assert.equal(first.status, 201);
      await sell(); // after the count
      const rejected = await owner.post(`/v1/settlements/${first.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': first.headers.get('etag')! } });
      assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
      await sell(); // after the rejection: still after the count
      const recount = await owner.post('/v1/settlements', { store_id: shop.id, business_date: today, declared_cash: 100 });
      assert.equal(recount.status, 201, JSON.stringify(recount.body));
      assert.equal(Number(recount.body.cash_sales), Number(first.body.cash_sales));
      assert.equal(Number(recount.body.cash_sales), 100);
      assert.deepEqual(await entryDates(shop.id), [[today, 100], [tomorrow(), 200]], 'one evening is not split over two days');
    });

    it('money is dated by the day it is booked on, not the day its transaction began: every day returned has been looked at', async () => {
      const { shop } = await shopWithStock('MIDNIGHT');
      const yesterday = pastDate(1);
      for (const day of [yesterday, today]) {
        assert.equal((await owner.post('/v1/settlements', { store_id: shop.id, business_date: day, declared_cash: 0 })).status, 201);
      }
      const openDay = async (wanted: string, onDay: string) =>
        (await t.admin.query(`SELECT to_char(open_business_date_on($1, $2, $3::date, $4::date), 'YYYY-MM-DD') AS d`, [tenantId, shop.id, wanted, onDay])).rows[0].d;
      // Booked today, wanting yesterday: both counted → tomorrow.
      assert.equal(await openDay(yesterday, today), tomorrow());
      // Judged by a "today" that is already over (a transaction begun before
      // midnight, or a clock read before waiting for a lock), today is still
      // looked at, and it is counted (migration 0815):
      assert.equal(await openDay(yesterday, yesterday), tomorrow());
      // …and open_business_date judges by the moment it books, not the transaction's start.
      // (Since 0870 "today" is the store's day of that moment, in its time zone: the
      // three-argument form reads the zone and hands it to the four-argument one.)
      const definition = async (signature: string) =>
        (await t.admin.query(`SELECT pg_get_functiondef($1::regprocedure) AS d`, [signature])).rows[0].d as string;
      assert.match(await definition('open_business_date(uuid,uuid,date)'), /open_business_date\(p_tenant, p_store, p_wanted,\s+\(SELECT st\.time_zone FROM stores st/);
      assert.match(
        await definition('open_business_date(uuid,uuid,date,text)'),
        /open_business_date_on\(p_tenant, p_store, p_wanted, store_day\(coalesce\(p_time_zone, 'UTC'\), clock_timestamp\(\)\)\)/,
      );
    });

    it('an entry whose clock read the day before, waiting on that day\'s next day while it is counted, does not land in the counted day', async () => {
      const { shop } = await shopWithStock('STALE-CLOCK');
      const yesterday = pastDate(1);
      // Given yesterday is counted
      assert.equal((await owner.post('/v1/settlements', { store_id: shop.id, business_date: yesterday, declared_cash: 0 })).status, 201);
      const counting = await t.admin.connect();
      const booking = await t.admin.connect();
      try {
        // And today's count is being submitted: it holds today's store-day lock exclusively (as submitSettlement does)
        await counting.query('BEGIN');
        await counting.query(`SELECT pg_advisory_xact_lock(settlement_day_lock_key($1, $2, $3::date))`, [tenantId, shop.id, today]);
        // When an entry whose "today" was read just before midnight (yesterday) finds yesterday counted and waits for today
        const dated = booking.query(`SELECT to_char(open_business_date_on($1, $2, $3::date, $3::date), 'YYYY-MM-DD') AS d`, [tenantId, shop.id, yesterday]);
        await waitFor('the entry to wait for today\'s store-day lock', async () =>
          (await t.admin.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows.length > 0);
        // And the count of today is written and commits
        await counting.query(
          `INSERT INTO settlements (tenant_id, id, store_id, business_date, float_amount, cash_sales, cash_voids, payments_in, payments_out, other_cash,
                                    expected_cash, declared_cash, variance, submitted_by, op_id)
           SELECT tenant_id, $3, store_id, $4::date, float_amount, cash_sales, cash_voids, payments_in, payments_out, other_cash,
                  expected_cash, declared_cash, variance, submitted_by, op_id
           FROM settlements WHERE tenant_id = $1 AND store_id = $2 AND business_date = $5::date`,
          [tenantId, shop.id, randomUUID(), today, yesterday],
        );
        await counting.query('COMMIT');
        // Then the entry is dated after the counted day, not in it
        assert.equal((await dated).rows[0].d, tomorrow(), 'today was counted before the entry looked at it');
      } finally {
        counting.release();
        booking.release();
      }
    });

    it('a submission racing concurrent cash sales: the settled figures are exactly what the ledger has for that day', async () => {
      const { shop, sku } = await shopWithStock('RACE');
      const sales = Array.from({ length: 30 }, () =>
        owner.post('/v1/sales', { store_id: shop.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: 100 }] }),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
      const submission = owner.post('/v1/settlements', { store_id: shop.id, business_date: today, declared_cash: 0 });
      const [responses, submitted] = await Promise.all([Promise.all(sales), submission]);
      assert.ok(responses.every((r) => r.status === 201));
      assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
      const byDay = new Map((await entryDates(shop.id)) as Array<[string, number]>);
      const settledRow = (await t.admin.query(`SELECT cash_sales FROM settlements WHERE id = $1`, [submitted.body.id])).rows[0];
      assert.equal(Number(settledRow.cash_sales), byDay.get(today) ?? 0, 'nothing slipped into the counted day after the count');
      assert.equal((byDay.get(today) ?? 0) + (byDay.get(tomorrow()) ?? 0), 3_000, 'every sale is booked on one of the two days');
    });
  });

  it('concurrent submissions for one store-day: one 201, the rest 409 already_exists', async () => {
    const responses = await Promise.all(
      [0, 1, 2, 3].map((i) => (i % 2 ? managerA : managerB).post('/v1/settlements', { store_id: store.id, business_date: pastDate(50), declared_cash: 100 + i })),
    );
    assert.deepEqual(responses.map((r) => r.status).sort(), [201, 409, 409, 409]);
    const rows = await t.admin.query(`SELECT count(*)::int AS n FROM settlements WHERE tenant_id = $1 AND store_id = $2 AND business_date = $3`, [tenantId, store.id, pastDate(50)]);
    assert.equal(rows.rows[0].n, 1);
  });

  it('the database allows one approved settlement per store-day', async () => {
    const approved = (await t.admin.query(`SELECT * FROM settlements WHERE tenant_id = $1 AND status = 'approved' LIMIT 1`, [tenantId])).rows[0];
    await assert.rejects(
      t.admin.query(
        `INSERT INTO settlements (tenant_id, id, store_id, business_date, status, float_amount, cash_sales, cash_voids, payments_in, payments_out, other_cash,
                                  expected_cash, declared_cash, variance, submitted_by, decided_by, decided_op, op_id)
         SELECT tenant_id, $2, store_id, business_date, 'approved', float_amount, cash_sales, cash_voids, payments_in, payments_out, other_cash,
                expected_cash, declared_cash, variance, submitted_by, decided_by, decided_op, op_id FROM settlements WHERE id = $1`,
        [approved.id, randomUUID()],
      ),
      (error: { constraint?: string }) => error.constraint === 'settlements_one_approved_per_store_day',
    );
  });

  it('with require_second_approver on, the manager who submitted a count cannot approve it (403, nothing written); another can, and rejecting stays open to both', async () => {
    assert.equal((await owner.patch('/v1/tenant/settings', { require_second_approver: true })).status, 200);
    try {
      const submitted = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(70), declared_cash: 10_000 });
      assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
      const etag = submitted.headers.get('etag') ?? '';
      const before = await counts();
      const own = await managerA.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() });
      assert.equal(own.status, 403, JSON.stringify(own.body));
      assert.match(own.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(own.body.code, 'forbidden');
      assert.equal(own.body.reason, 'second_approver_required');
      assert.deepEqual(await counts(), before);
      // The submitter may still reject (a recount follows); another manager approves the recount
      const rejected = await managerA.post(`/v1/settlements/${submitted.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': etag }, idempotencyKey: randomUUID() });
      assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
      const recount = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(70), declared_cash: 10_000 });
      assert.equal(recount.status, 201, JSON.stringify(recount.body));
      const approved = await managerB.post(`/v1/settlements/${recount.body.id}/approve`, {}, { headers: { 'if-match': recount.headers.get('etag') ?? '' }, idempotencyKey: randomUUID() });
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      assert.deepEqual((await t.admin.query(`SELECT status, decided_by FROM settlements WHERE id = $1`, [recount.body.id])).rows, [{ status: 'approved', decided_by: 'manager:bert' }]);
    } finally {
      assert.equal((await owner.patch('/v1/tenant/settings', { require_second_approver: null })).status, 200);
    }
    // Off (the default): the submitter approves their own count
    const alone = await managerA.post('/v1/settlements', { store_id: store.id, business_date: pastDate(71), declared_cash: 10_000 });
    const self = await managerA.post(`/v1/settlements/${alone.body.id}/approve`, {}, { headers: { 'if-match': alone.headers.get('etag') ?? '' }, idempotencyKey: randomUUID() });
    assert.equal(self.status, 200, JSON.stringify(self.body));
  });

  it('approval needs settlements.approve (cashier 403) and the store in scope (404)', async () => {
    const cashier = t.client((await owner.post('/v1/tokens', { name: 'cash', role: 'cashier', store_ids: [store.id] })).body.token);
    const otherManager = t.client((await owner.post('/v1/tokens', { name: 'other', role: 'manager', store_ids: [otherStore.id] })).body.token);
    const submitted = await cashier.post('/v1/settlements', { store_id: store.id, business_date: pastDate(30), declared_cash: 10_000 });
    assert.equal(submitted.status, 201, 'a cashier may submit');
    const before = await counts();
    const forbidden = await cashier.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': '"1"' } });
    assert.equal(forbidden.status, 403);
    const outside = await otherManager.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': '"1"' } });
    assert.equal(outside.status, 404);
    assert.equal((await otherManager.get(`/v1/settlements/${submitted.body.id}`)).status, 404);
    assert.equal((await otherManager.post('/v1/settlements', { store_id: store.id, business_date: pastDate(31), declared_cash: 1 })).status, 404);
    assert.deepEqual(await counts(), before);
  });

  it('a day whose variance would not read back exactly (beyond 2^53 − 1) is 422 limit_exceeded, nothing written; a count within it is recorded', async () => {
    const big = (await owner.post('/v1/stores', { code: 'HUGE', name: 'Huge day' })).body;
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Everything' })).body;
    // 1,000 cash payments out of 9 × 10^12: the drawer's credit total reaches its limit, 9 × 10^15
    for (let batch = 0; batch < 1000; batch += 25) {
      const paid = await Promise.all(
        Array.from({ length: 25 }, () => owner.post('/v1/payments', { party_id: supplier.id, store_id: big.id, method: 'cash', amount: 9_000_000_000_000 })),
      );
      assert.ok(paid.every((r) => r.status === 201), JSON.stringify(paid.find((r) => r.status !== 201)?.body));
    }
    const before = await counts();
    // expected = 10,000 − 9 × 10^15; declared 9 × 10^12 → variance 9,008,999,999,990,000 > 2^53 − 1
    const over = await owner.post('/v1/settlements', { store_id: big.id, business_date: today, declared_cash: 9_000_000_000_000 });
    assert.equal(over.status, 422, JSON.stringify(over.body));
    assert.equal(over.body.code, 'limit_exceeded');
    assert.deepEqual(await counts(), before);
    const within = await owner.post('/v1/settlements', { store_id: big.id, business_date: today, declared_cash: 1 });
    assert.equal(within.status, 201, JSON.stringify(within.body));
    assert.equal(within.body.expected_cash, 10_000 - 9_000_000_000_000_000);
    assert.equal(within.body.variance, 1 - (10_000 - 9_000_000_000_000_000));
  });

  describe('bad input: problem+json and nothing written', () => {
    const cases: Array<[string, () => Record<string, unknown>, number, string]> = [
      ['a future date', () => ({ store_id: store.id, business_date: '2999-01-01', declared_cash: 1 }), 400, 'validation_failed'],
      ['not a date', () => ({ store_id: store.id, business_date: '2024-02-30x', declared_cash: 1 }), 400, 'validation_failed'],
      ['negative cash', () => ({ store_id: store.id, business_date: today, declared_cash: -1 }), 400, 'validation_failed'],
      ['fractional cash', () => ({ store_id: store.id, business_date: today, declared_cash: 1.25 }), 400, 'validation_failed'],
      ['unknown store', () => ({ store_id: randomUUID(), business_date: today, declared_cash: 1 }), 404, 'not_found'],
      ['unknown field', () => ({ store_id: store.id, business_date: today, declared_cash: 1, expected_cash: 1 }), 400, 'validation_failed'],
    ];
    for (const [name, body, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const before = await counts();
        const response = await owner.post('/v1/settlements', body(), { idempotencyKey: randomUUID() });
        assert.equal(response.status, status, JSON.stringify(response.body));
        assert.equal(response.body.code, code);
        assert.deepEqual(await counts(), before);
      });
    }
  });
});
