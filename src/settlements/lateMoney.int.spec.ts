import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

/**
 * A day's cash count against money that arrives late (a till's queued
 * payment, void or sale, dated on the till's day) or at the same moment:
 * real concurrent requests, then the rows they left. The count's figures
 * must be exactly the ledger of its day (settlement_matches_ledger), no
 * money may land on a counted day, and every unit of cash must be on a day
 * that is still open or in a count — none lost between two days.
 */
describe('a cash count racing late money', () => {
  let t: TestApp;
  let today: string;
  let yesterday: string;
  let twoDaysAgo: string;
  let tomorrow: string;

  before(async () => {
    t = await startTestApp();
    const row = (
      await t.admin.query(
        `SELECT to_char(d, 'YYYY-MM-DD') AS today, to_char(d - 1, 'YYYY-MM-DD') AS yesterday, to_char(d - 2, 'YYYY-MM-DD') AS two,
                to_char(d + 1, 'YYYY-MM-DD') AS tomorrow
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) x`,
      )
    ).rows[0];
    ({ today, yesterday, tomorrow } = row);
    twoDaysAgo = row.two;
  });
  after(() => t.close());

  const FLOAT = 1_000;

  async function shop() {
    const { owner, tenantId } = await t.newTenant();
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: FLOAT })).status, 200);
    const store = (await owner.post('/v1/stores', { code: 'LATE', name: 'Late shop' })).body as { id: string };
    const sku = (await owner.post('/v1/skus', { code: 'TEA', name: 'Tea', unit: 'piece', price: 100 })).body as { id: string };
    await owner.post(`/v1/stores/${store.id}/stock/receipts`, { items: [{ sku_id: sku.id, quantity: 100_000 }] });
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Tab Tom' })).body as { id: string };
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Milk van' })).body as { id: string };
    const syncSale = (at: string, amount: number) =>
      owner.post('/v1/sync/sales', {
        sales: [{ idempotency_key: randomUUID(), store_id: store.id, payment_method: 'cash', items: [{ sku_id: sku.id, quantity: 1, unit_price: amount }], client_created_at: at }],
      });
    const payIn = (at: string, amount: number) =>
      owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount, client_created_at: at }, { idempotencyKey: randomUUID() });
    const payOut = (at: string, amount: number) =>
      owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'cash', amount, client_created_at: at }, { idempotencyKey: randomUUID() });
    const voidSale = (saleId: string, at: string) => owner.post(`/v1/sales/${saleId}/void`, { reason: 'handed back', client_created_at: at }, { idempotencyKey: randomUUID() });
    const count = (day: string, declared = 0) => owner.post('/v1/settlements', { store_id: store.id, business_date: day, declared_cash: declared }, { idempotencyKey: randomUUID() });
    const approve = (settlement: ApiResponse) =>
      owner.post(`/v1/settlements/${settlement.body.id}/approve`, {}, { headers: { 'if-match': settlement.headers.get('etag')! }, idempotencyKey: randomUUID() });
    const reject = (settlement: ApiResponse) =>
      owner.post(`/v1/settlements/${settlement.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': settlement.headers.get('etag')! }, idempotencyKey: randomUUID() });
    return { owner, tenantId, store, sku, syncSale, payIn, payOut, voidSale, count, approve, reject };
  }

  /** The store's drawer movements per business day, from the ledger. */
  async function drawerByDay(tenantId: string, storeId: string): Promise<Map<string, number>> {
    const { rows } = await t.admin.query<{ d: string; amount: string }>(
      `SELECT to_char(e.business_date, 'YYYY-MM-DD') AS d, sum(p.amount)::bigint AS amount
       FROM journal_entries e
       JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
       JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
       WHERE e.tenant_id = $1 AND e.store_id = $2 AND a.key = 'store/' || $2 || '/cash_drawer'
       GROUP BY 1 ORDER BY 1`,
      [tenantId, storeId],
    );
    return new Map(rows.map((row) => [row.d, Number(row.amount)]));
  }

  /** Every settlement's recorded movements (expected − float) by day and status. */
  async function settled(tenantId: string, storeId: string) {
    return (
      await t.admin.query<{ d: string; status: string; moved: string }>(
        `SELECT to_char(business_date, 'YYYY-MM-DD') AS d, status, (expected_cash - float_amount)::bigint AS moved
         FROM settlements WHERE tenant_id = $1 AND store_id = $2 ORDER BY business_date, created_at`,
        [tenantId, storeId],
      )
    ).rows.map((row) => ({ day: row.d, status: row.status, moved: Number(row.moved) }));
  }

  const ok = (responses: ApiResponse[]) => {
    for (const response of responses) assert.ok(response.status === 200 || response.status === 201, `${response.status} ${JSON.stringify(response.body)}`);
  };
  const syncedSaleId = (response: ApiResponse) => {
    assert.equal(response.body.results[0].status, 201, JSON.stringify(response.body));
    return response.body.results[0].body.id as string;
  };

  it("late payments, voids and synced sales of yesterday racing yesterday's count being submitted and approved: the count is exactly its day's ledger, the rest is today's", async () => {
    const { tenantId, store, syncSale, payIn, payOut, voidSale, count, approve } = await shop();
    // Given yesterday's offline sales, already synced (some will be voided late)
    const earlier = await Promise.all(Array.from({ length: 12 }, (_, i) => syncSale(`${yesterday}T09:${String(i).padStart(2, '0')}:00Z`, 100)));
    const saleIds = earlier.map(syncedSaleId);
    let moved = 12 * 100;
    // When, at once, a till's queue of yesterday arrives (payments in and out, voids, more sales) and yesterday is counted and approved
    const late: Array<Promise<ApiResponse>> = [];
    for (let i = 0; i < 12; i += 1) {
      late.push(payIn(`${yesterday}T18:${String(i).padStart(2, '0')}:00Z`, 10 + i));
      moved += 10 + i;
      late.push(payOut(`${yesterday}T19:${String(i).padStart(2, '0')}:00Z`, 3));
      moved -= 3;
      late.push(voidSale(saleIds[i]!, `${yesterday}T20:${String(i).padStart(2, '0')}:00Z`));
      moved -= 100;
      late.push(syncSale(`${yesterday}T21:${String(i).padStart(2, '0')}:00Z`, 7));
      moved += 7;
    }
    const counting = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      const submitted = await count(yesterday);
      assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
      const approved = await approve(submitted);
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      return submitted;
    })();
    const [responses] = await Promise.all([Promise.all(late), counting]);
    for (const response of responses) {
      if ('results' in (response.body as object)) syncedSaleId(response);
      else ok([response]);
    }
    // Then yesterday's count is exactly yesterday's ledger, and nothing of the store is on another day than yesterday or today
    const byDay = await drawerByDay(tenantId, store.id);
    assert.deepEqual([...byDay.keys()].filter((day) => day !== yesterday && day !== today), []);
    const counts = await settled(tenantId, store.id);
    assert.deepEqual(counts, [{ day: yesterday, status: 'approved', moved: byDay.get(yesterday) ?? 0 }]);
    // and every unit of cash is in yesterday's count or today's
    assert.equal((byDay.get(yesterday) ?? 0) + (byDay.get(today) ?? 0), moved);
    const todays = await count(today);
    assert.equal(todays.status, 201, JSON.stringify(todays.body));
    assert.equal(Number(todays.body.expected_cash) - FLOAT, byDay.get(today) ?? 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('two counts of adjacent days racing late money of the first day: each count is its day\'s ledger, every unit in one of them or still open', async () => {
    const { tenantId, store, syncSale, payIn, payOut, count } = await shop();
    let moved = 0;
    const late: Array<Promise<ApiResponse>> = [];
    for (let i = 0; i < 15; i += 1) {
      late.push(payIn(`${twoDaysAgo}T18:${String(i).padStart(2, '0')}:00Z`, 20 + i));
      moved += 20 + i;
      late.push(payOut(`${yesterday}T08:${String(i).padStart(2, '0')}:00Z`, 5));
      moved -= 5;
      late.push(syncSale(`${twoDaysAgo}T21:${String(i).padStart(2, '0')}:00Z`, 11));
      moved += 11;
    }
    const counts = [twoDaysAgo, yesterday].map(async (day, i) => {
      await new Promise((resolve) => setTimeout(resolve, 5 + 5 * i));
      return count(day);
    });
    const [responses, submissions] = await Promise.all([Promise.all(late), Promise.all(counts)]);
    for (const response of responses) {
      if ('results' in (response.body as object)) syncedSaleId(response);
      else ok([response]);
    }
    for (const submitted of submissions) assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const byDay = await drawerByDay(tenantId, store.id);
    assert.deepEqual([...byDay.keys()].filter((day) => ![twoDaysAgo, yesterday, today].includes(day)), []);
    assert.deepEqual(await settled(tenantId, store.id), [
      { day: twoDaysAgo, status: 'submitted', moved: byDay.get(twoDaysAgo) ?? 0 },
      { day: yesterday, status: 'submitted', moved: byDay.get(yesterday) ?? 0 },
    ]);
    assert.equal([...byDay.values()].reduce((sum, amount) => sum + amount, 0), moved);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a late void of a sale on a counted day racing the count of the void's day: the counted day keeps its figures, the void is in the count that finds the cash gone or after it", async () => {
    const { tenantId, store, syncSale, voidSale, count, approve } = await shop();
    // Given yesterday's sales, yesterday counted and approved
    const saleIds = (await Promise.all(Array.from({ length: 20 }, (_, i) => syncSale(`${yesterday}T10:${String(i).padStart(2, '0')}:00Z`, 50)))).map(syncedSaleId);
    const yesterdays = await count(yesterday, FLOAT + 1_000);
    assert.equal(yesterdays.status, 201);
    assert.equal((await approve(yesterdays)).status, 200);
    // When the voids, made yesterday evening after the count, arrive while today is counted
    const voids = saleIds.map((id, i) => voidSale(id, `${yesterday}T22:${String(i).padStart(2, '0')}:00Z`));
    const todays = (async () => {
      await Promise.race([voids[3], new Promise((resolve) => setTimeout(resolve, 200))]); // some voids are in, the rest on their way
      return count(today);
    })();
    const [voided, submitted] = await Promise.all([Promise.all(voids), todays]);
    ok(voided);
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    // Then yesterday still holds its sales; each void is on today (in today's count) or tomorrow (after it)
    const byDay = await drawerByDay(tenantId, store.id);
    assert.equal(byDay.get(yesterday), 1_000);
    assert.deepEqual([...byDay.keys()].filter((day) => ![yesterday, today, tomorrow].includes(day)), []);
    assert.equal((byDay.get(today) ?? 0) + (byDay.get(tomorrow) ?? 0), -1_000);
    assert.equal(Number(submitted.body.cash_voids) + (byDay.get(today) ?? 0), 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a late payment dated on a day the shop is skipping, held open while a later day is counted: it stays on its day, as if it had come first — never on the counted day", async () => {
    const { tenantId, store, payIn, count, owner } = await shop();
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Slow Sal' })).body as { id: string };
    // Given nothing counted yet, and a payment of two days ago paused after its entry was dated (its payment row waits for the party's row)
    const holder = await t.admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM parties WHERE id = $1 FOR UPDATE`, [customer.id]);
      const paying = owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount: 70, client_created_at: `${twoDaysAgo}T17:00:00Z` }, { idempotencyKey: randomUUID() });
      await waitForLockWait();
      // When yesterday is counted meanwhile (the shop skips two days ago) — it does not wait for the payment of another day
      const yesterdays = await count(yesterday);
      assert.equal(yesterdays.status, 201, JSON.stringify(yesterdays.body));
      assert.equal(Number(yesterdays.body.expected_cash), FLOAT);
      await holder.query('COMMIT');
      const paid = await paying;
      assert.equal(paid.status, 201, JSON.stringify(paid.body));
      // Then the payment is on two days ago — where it would be had it committed before the count (the count read nothing of that day) —
      assert.equal(paid.body.business_date, twoDaysAgo);
      // and one that arrives now, asking for the same day, books on the first day after the count
      const after = await payIn(`${twoDaysAgo}T17:30:00Z`, 5);
      assert.equal(after.body.business_date, today);
      assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
  });

  async function waitForLockWait() {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await t.admin.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO payments%'`);
      if (rows.length > 0) return;
      if (Date.now() > deadline) throw new Error('the payment never waited');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("a count of a day the shop skipped, sent after a later day's count: it expects what is booked on that day; that day's money arriving after the later count (racing this count too) is the first open day's — each unit in one count", async () => {
    const { tenantId, store, payIn, count } = await shop();
    // Given a payment of two days ago booked on its day, then yesterday counted (two days ago skipped)
    const onItsDay = await payIn(`${twoDaysAgo}T10:00:00Z`, 40);
    assert.equal(onItsDay.body.business_date, twoDaysAgo);
    assert.equal((await count(yesterday)).status, 201);
    // When more money of two days ago arrives, some of it while two days ago is counted late
    const before = await payIn(`${twoDaysAgo}T17:00:00Z`, 5);
    assert.equal(before.body.business_date, today, 'not before the latest count: the first day after it');
    const arriving = Array.from({ length: 10 }, (_, i) => payIn(`${twoDaysAgo}T18:${String(i).padStart(2, '0')}:00Z`, 3));
    const [responses, late] = await Promise.all([Promise.all(arriving), count(twoDaysAgo)]);
    ok(responses);
    // Then the late count is recorded against what two days ago holds: only the money booked there before the later count
    assert.equal(late.status, 201, JSON.stringify(late.body));
    assert.equal(Number(late.body.expected_cash), FLOAT + 40);
    assert.ok(responses.every((response) => response.body.business_date === today), JSON.stringify(responses.map((response) => response.body.business_date)));
    // and the rest is today's count: every unit of cash in exactly one count
    const todays = await count(today);
    assert.equal(Number(todays.body.expected_cash), FLOAT + 5 + 30);
    const byDay = await drawerByDay(tenantId, store.id);
    assert.deepEqual(Object.fromEntries(byDay), { [twoDaysAgo]: 40, [today]: 35 });
    assert.deepEqual(
      (await settled(tenantId, store.id)).map(({ day, moved }) => [day, moved]),
      [[twoDaysAgo, 40], [yesterday, 0], [today, 35]],
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a count rejected while late money moves past it: the recount has the first count\'s figures, the moved money is the next day\'s', async () => {
    const { tenantId, store, syncSale, payIn, count, reject } = await shop();
    syncedSaleId(await syncSale(`${today}T08:00:00Z`, 300));
    syncedSaleId(await syncSale(`${today}T08:01:00Z`, 300));
    const first = await count(today);
    assert.equal(first.status, 201);
    let late = 0;
    const arriving: Array<Promise<ApiResponse>> = [];
    for (let i = 0; i < 20; i += 1) {
      arriving.push(payIn(`${today}T09:${String(i).padStart(2, '0')}:00Z`, 10));
      late += 10;
    }
    const deciding = (async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      const rejected = await reject(first);
      assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
      return count(today);
    })();
    const [responses, recount] = await Promise.all([Promise.all(arriving), deciding]);
    ok(responses);
    assert.equal(recount.status, 201, JSON.stringify(recount.body));
    assert.equal(recount.body.expected_cash, first.body.expected_cash);
    const byDay = await drawerByDay(tenantId, store.id);
    assert.equal(byDay.get(today), 600);
    assert.equal(byDay.get(tomorrow), late);
    assert.ok(responses.every((response) => response.body.business_date === tomorrow));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
