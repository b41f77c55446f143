import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';

/**
 * Legitimate flows, each made through the API at its edges, leave nothing for
 * the integrity checks to report: a critical check that reports one of them
 * puts a false finding in the shop's review queue every night.
 */
describe('integrity checks find nothing in legitimate flows at their edges', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(async () => {
    await t.close();
  });

  const ok = <T extends { status: number; body: any }>(response: T, status = 201): T => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response;
  };
  const utcDay = (offsetDays: number): string => new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
  const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;

  async function findings(owner: ApiClient): Promise<Array<{ check: string; detail: unknown }>> {
    const response = ok(await owner.get('/v1/integrity'), 200);
    return response.body.findings;
  }

  async function storeWithStock(owner: ApiClient, skuId: string, code: string, timeZone?: string): Promise<string> {
    const store = ok(await owner.post('/v1/stores', { code, name: code, ...(timeZone ? { time_zone: timeZone } : {}) })).body.id;
    ok(await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: skuId, quantity: 500 }] }));
    return store;
  }

  async function storeToday(storeId: string): Promise<string> {
    return (await t.admin.query(`SELECT store_day(time_zone, now())::text AS d FROM stores WHERE id = $1`, [storeId])).rows[0].d;
  }

  it('money_sale_posted: synced, queued, counted, far-zone, zone-changed, clock-ahead, zero and credit sales, partial returns and voids', async () => {
    const { owner } = await t.newTenant();
    const skuId = ok(await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Oil', unit: 'piece', price: 500 })).body.id;
    const customer = ok(await owner.post('/v1/parties', { kind: 'customer', name: 'Bea' })).body.id;
    const line = (unit_price = 500) => [{ sku_id: skuId, quantity: 1, unit_price }];

    const sync = async (storeId: string, clientCreatedAt: string, extra: Record<string, unknown> = {}): Promise<string> => {
      const response = ok(
        await owner.post('/v1/sync/sales', {
          sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: line(), client_created_at: clientCreatedAt, ...extra }],
        }),
        200,
      );
      assert.equal(response.body.results[0].status, 201, JSON.stringify(response.body.results[0]));
      return response.body.results[0].body.id;
    };
    const sell = async (storeId: string, extra: Record<string, unknown> = {}): Promise<string> =>
      ok(await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: line(), ...extra })).body.id;
    const voidSale = async (saleId: string, clientCreatedAt?: string) =>
      ok(await owner.post(`/v1/sales/${saleId}/void`, { reason: 'till error', ...(clientCreatedAt ? { client_created_at: clientCreatedAt } : {}) }), 200);
    const count = async (storeId: string, day: string): Promise<string> =>
      ok(await owner.post('/v1/settlements', { store_id: storeId, business_date: day, declared_cash: 0 })).body.id;

    // A UTC store counted on three days running, then sales of the first of them synced days later, and voids queued offline.
    const utc = await storeWithStock(owner, skuId, 'UTC');
    for (const offset of [-5, -4, -3]) await count(utc, utcDay(offset));
    const late = await sync(utc, ago(5 * DAY));
    const lateToo = await sync(utc, ago(4 * DAY + HOUR), { payment_method: 'credit', customer_id: customer });
    const bookedOn = async (saleId: string, kind: string): Promise<string> =>
      (await t.admin.query(`SELECT business_date::text AS d FROM journal_entries WHERE subject_id = $1 AND kind = $2`, [saleId, kind])).rows[0].d;
    assert.equal(await bookedOn(late, 'sale'), utcDay(-2), 'past the three counted days');
    await voidSale(late, '1970-01-01T00:00:00Z'); // a till whose clock was reset
    assert.equal(await bookedOn(late, 'sale_void'), utcDay(-2), "not before its sale's day");
    await voidSale(lateToo, ago(4 * DAY)); // queued on a counted day
    await voidSale(await sync(utc, ago(10 * DAY)), ago(6 * DAY));
    // A count rejected and recounted, then a sale of that day synced.
    const rejectedDay = utcDay(-2);
    const rejected = await count(utc, rejectedDay);
    ok(await owner.post(`/v1/settlements/${rejected}/reject`, {}, { headers: { 'if-match': '"1"' } }), 200);
    await count(utc, rejectedDay);
    await voidSale(await sync(utc, ago(2 * DAY)), ago(DAY));
    // Today counted: sales rung up or synced after it, and voids of them.
    await count(utc, await storeToday(utc));
    await voidSale(await sell(utc));
    await voidSale(await sync(utc, ago(HOUR)), ago(HOUR / 2));
    // A till clock ahead, by minutes and by days; a zero total; a credit sale.
    await voidSale(await sync(utc, new Date(Date.now() + 3 * DAY).toISOString()), new Date(Date.now() + 4 * DAY).toISOString());
    await sync(utc, new Date(Date.now() + 5 * 60_000).toISOString());
    await sync(utc, ago(3 * DAY), { items: line(0) });
    await voidSale(await sell(utc, { items: line(0) }));
    await voidSale(await sell(utc, { payment_method: 'credit', customer_id: customer }), ago(HOUR));
    // Partial returns (their sale_return entries count with the void's): queued on counted days, with a clock reset to 1970, of a credit sale, of a zero total; then voided or not.
    const threeOf = (unit_price = 500) => [{ sku_id: skuId, quantity: 3, unit_price }];
    const giveBack = async (saleId: string, clientCreatedAt?: string) =>
      ok(await owner.post(`/v1/sales/${saleId}/returns`, { items: [{ sku_id: skuId, quantity: 1 }], reason: 'brought back', ...(clientCreatedAt ? { client_created_at: clientCreatedAt } : {}) }), 201);
    const oldSale = await sync(utc, ago(10 * DAY), { items: threeOf() });
    await giveBack(oldSale, ago(6 * DAY));
    await giveBack(oldSale, '1970-01-01T00:00:00Z');
    await voidSale(oldSale, ago(DAY));
    const lateReturned = await sync(utc, ago(5 * DAY), { items: threeOf() });
    await giveBack(lateReturned, '1970-01-01T00:00:00Z');
    const creditReturned = await sell(utc, { items: threeOf(), payment_method: 'credit', customer_id: customer });
    await giveBack(creditReturned);
    await giveBack(creditReturned, ago(HOUR));
    await voidSale(creditReturned);
    const zeroReturned = await sell(utc, { items: threeOf(0) });
    await giveBack(zeroReturned);
    await voidSale(zeroReturned);

    // The zones furthest from UTC, selling around their midnights, counted today.
    for (const zone of ['Pacific/Kiritimati', 'Etc/GMT+12']) {
      const store = await storeWithStock(owner, skuId, zone === 'Etc/GMT+12' ? 'W12' : 'E14', zone);
      for (let hours = 0; hours <= 26; hours += 2) await sync(store, ago(hours * HOUR + 60_000));
      await voidSale(await sync(store, ago(13 * HOUR)), ago(11 * HOUR));
      await voidSale(await sell(store), ago(DAY));
      // returns held to the void's bounds: queued around the zone's midnight, and with a till clock ahead
      await giveBack(await sync(store, ago(13 * HOUR), { items: threeOf() }), ago(11 * HOUR));
      await giveBack(await sell(store, { items: threeOf() }), ago(DAY));
      await giveBack(await sync(store, new Date(Date.now() + 3 * DAY).toISOString(), { items: threeOf() }), new Date(Date.now() + 4 * DAY).toISOString());
      await count(store, await storeToday(store));
      await giveBack(await sync(store, ago(30 * 60_000), { items: threeOf() }), ago(60_000));
      await voidSale(await sell(store));
      await voidSale(await sync(store, ago(30 * 60_000)), ago(60_000));
      await sell(store, { payment_method: 'credit', customer_id: customer });
    }

    // A store whose time zone changes between its sales and their voids (west to east, east to west).
    // Its counted day is the latest a zone change allows: the earlier of its today in either zone (a zone whose today is
    // before the latest count is refused); the counted sale is of that day in the first zone (2 hours ago, or its last hour).
    for (const [from, to] of [['Etc/GMT+12', 'Pacific/Kiritimati'], ['Pacific/Kiritimati', 'Etc/GMT+12']] as const) {
      const store = await storeWithStock(owner, skuId, `Z${from.length}`, from);
      const { day, at } = (
        await t.admin.query(
          `SELECT d::text AS day, to_char(least(now() - interval '2 hours', (d + 1)::timestamp AT TIME ZONE $1 - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at
           FROM (SELECT least(store_day($1, now()), store_day($2, now())) AS d) x`,
          [from, to],
        )
      ).rows[0];
      const synced = await sync(store, ago(20 * HOUR));
      const online = await sell(store);
      const counted = await sync(store, at);
      await count(store, day);
      ok(await owner.patch(`/v1/stores/${store}`, { time_zone: to }), 200);
      await voidSale(synced, ago(19 * HOUR));
      await voidSale(online, ago(60_000));
      await voidSale(counted);
    }

    const found = await findings(owner);
    assert.deepEqual(
      found.filter((finding) => finding.check === 'money_sale_posted'),
      [],
    );
    assert.deepEqual(
      found.map((finding) => finding.check),
      [],
      JSON.stringify(found),
    );
  });

  it('money_payment_has_entry and settlement_matches_ledger: payments by every method and direction, reverted on their day, after their day was counted, queued offline, in far zones, and reverted twice at once', async () => {
    const { owner } = await t.newTenant();
    const customer = ok(await owner.post('/v1/parties', { kind: 'customer', name: 'Bea' })).body.id;
    const supplier = ok(await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body.id;
    const pay = async (storeId: string, extra: Record<string, unknown>) =>
      ok(await owner.post('/v1/payments', { party_id: customer, store_id: storeId, method: 'cash', amount: 100, ...extra })).body as { id: string; op_id: string };
    const revert = async (payment: { op_id: string }) => ok(await owner.post(`/v1/operations/${payment.op_id}/revert`, undefined, { idempotencyKey: randomUUID() }), 200);
    const count = async (storeId: string, day: string) => ok(await owner.post('/v1/settlements', { store_id: storeId, business_date: day, declared_cash: 0 }));

    for (const zone of ['UTC', 'Pacific/Kiritimati', 'Etc/GMT+12']) {
      const store = ok(await owner.post('/v1/stores', { code: `P${zone.length}`, name: zone, time_zone: zone })).body.id;
      const today = await storeToday(store);
      // Every method, both directions, reverted on their day; one left standing of each.
      for (const method of ['cash', 'card', 'mobile', 'bank']) {
        await revert(await pay(store, { method, amount: 500 }));
        await revert(await pay(store, { method, party_id: supplier, amount: 70 }));
        await revert(await pay(store, { method, direction: 'out', amount: 30 }));
        await pay(store, { method, amount: 50 });
      }
      // Queued offline on a day then counted, reverted after the count (the reversal is today's).
      const queued = await pay(store, { client_created_at: ago(2 * DAY) });
      const queuedDay = (await t.admin.query(`SELECT business_date::text AS d FROM journal_entries WHERE subject_id = $1`, [queued.id])).rows[0].d;
      await count(store, queuedDay);
      await revert(queued);
      // Today counted, then a payment reverted (reversal tomorrow), and one of today reverted after the count.
      const ofToday = await pay(store, { amount: 40 });
      await count(store, today);
      await revert(ofToday);
      await revert(await pay(store, { party_id: supplier, amount: 20 }));
      // Two reverts of one payment at once.
      const twice = await pay(store, { amount: 60 });
      await Promise.all([revert(twice), revert(twice)]);
    }
    const found = await findings(owner);
    assert.deepEqual(found, [], JSON.stringify(found));
  });

  it('money_purchase_posted, purchase_return_matches_lines and settlement_matches_ledger: purchases in far zones, before and after a count, of kg, metre and piece lines, of one SKU on several lines, at cost 0, paid in part, sent back to the supplier in parts, whole, at cost 0 and after a count', async () => {
    const { owner } = await t.newTenant();
    const supplier = ok(await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body.id;
    const flour = ok(await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 300 })).body.id;
    const rope = ok(await owner.post('/v1/skus', { code: 'ROPE', name: 'Rope', unit: 'metre', price: 90 })).body.id;
    const jars = ok(await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    const buy = async (storeId: string, items: Array<{ sku_id: string; quantity: number; unit_cost: number }>) =>
      ok(await owner.post(`/v1/stores/${storeId}/stock/receipts`, { supplier_id: supplier, items }, { idempotencyKey: randomUUID() })).body.purchase as { id: string; total: number; business_date: string | null };
    const sendBack = async (purchaseId: string, items: Array<{ sku_id: string; quantity: number }>) =>
      ok(await owner.post(`/v1/purchases/${purchaseId}/returns`, { items, reason: 'damaged', reference: 'CN-1' }, { idempotencyKey: randomUUID() })).body as { credit_total: number; business_date: string | null };
    for (const zone of ['UTC', 'Pacific/Kiritimati', 'Etc/GMT+12']) {
      const store = ok(await owner.post('/v1/stores', { code: `B${zone.length}`, name: zone, time_zone: zone })).body.id;
      const today = await storeToday(store);
      const mixed = await buy(store, [{ sku_id: flour, quantity: 1500, unit_cost: 333 }, { sku_id: rope, quantity: 1, unit_cost: 500 }, { sku_id: flour, quantity: 1, unit_cost: 1 }]);
      assert.equal(mixed.business_date, today);
      const free = await buy(store, [{ sku_id: jars, quantity: 3, unit_cost: 0 }]);
      assert.equal(free.business_date, null);
      // Sent back: flour in parts (the first line gram by gram, then all but 1 g of it), the rope whole, free jars for nothing.
      // At 3.33/kg the first gram credits 0 (0.333 → 0: no entry), the next two 1 and 0 (0.666 → 1, 0.999 → 1): 499 for 1,499 g in all.
      const parts = [];
      for (const quantity of [1, 1, 1, 997, 499]) parts.push(await sendBack(mixed.id, [{ sku_id: flour, quantity }]));
      assert.deepEqual(parts.map((part) => part.credit_total), [0, 1, 0, 332, 166]);
      assert.deepEqual(parts.map((part) => part.business_date), [null, today, null, today, today]);
      assert.equal((await sendBack(mixed.id, [{ sku_id: rope, quantity: 1 }])).credit_total, 1); // 1 mm at 5.00/m: 0.5 → 1
      assert.equal((await sendBack(free.id, [{ sku_id: jars, quantity: 2 }])).business_date, null);
      ok(await owner.post('/v1/payments', { party_id: supplier, store_id: store, method: 'bank', amount: 100 }));
      const counted = ok(await owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 })).body;
      assert.equal(counted.expected_cash, 0, 'purchases and returns to the supplier move no cash');
      const late = await buy(store, [{ sku_id: jars, quantity: 7, unit_cost: 45 }]);
      assert.notEqual(late.business_date, today);
      // After the count, a return is booked past the counted day, like every store entry.
      assert.notEqual((await sendBack(late.id, [{ sku_id: jars, quantity: 7 }])).business_date, today);
      // The rest of the flour: the first line's last gram and the second line's one, each at its own cost.
      const rest = await sendBack(mixed.id, [{ sku_id: flour, quantity: 2 }]);
      assert.equal(rest.credit_total, 1); // 500 − 499 for the first line, 0.001 → 0 for the second
      assert.notEqual(rest.business_date, today);
    }
    const found = await findings(owner);
    assert.deepEqual(found, [], JSON.stringify(found));
  });

  it('stock_count_matches_ledger: counts in far zones of kg, metre and piece SKUs, of now and of moments among sales, a void, a return and a transfer, of a SKU never held, of variance 0, named in capitals, an earlier moment posted after a later one', async () => {
    const { owner } = await t.newTenant();
    const flour = ok(await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 300 })).body.id;
    const rope = ok(await owner.post('/v1/skus', { code: 'ROPE', name: 'Rope', unit: 'metre', price: 90 })).body.id;
    const jars = ok(await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    const dbNow = async (): Promise<string> => (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at;
    const count = (storeId: string, body: unknown) => owner.post(`/v1/stores/${storeId}/stock/counts`, body, { idempotencyKey: randomUUID() });
    const sell = async (storeId: string, skuId: string, quantity: number) =>
      ok(await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, quantity, unit_price: 100 }] })).body as { id: string };
    const destination = ok(await owner.post('/v1/stores', { code: 'CNT-D', name: 'Destination' })).body.id;
    for (const zone of ['UTC', 'Pacific/Kiritimati', 'Etc/GMT+12']) {
      const store = await storeWithStock(owner, flour, `CNT-${zone.length}`, zone);
      ok(await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: rope, quantity: 10_000 }] }));
      const first = await dbNow();
      await sell(store, flour, 120);
      const voided = await sell(store, flour, 30);
      ok(await owner.post(`/v1/sales/${voided.id}/void`, { reason: 'till error' }), 200);
      const returned = await sell(store, rope, 2_000);
      ok(await owner.post(`/v1/sales/${returned.id}/returns`, { items: [{ sku_id: rope, quantity: 500 }], reason: 'too long' }));
      const second = await dbNow();
      const transfer = ok(await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: destination, items: [{ sku_id: flour, quantity: 50 }] })).body.id;
      ok(await owner.post(`/v1/transfers/${transfer}/approve`, {}), 200);
      // The count of the first moment is posted after sales, a void, a return and a transfer.
      ok(await count(store, { items: [{ sku_id: flour.toUpperCase(), counted_quantity: 495 }, { sku_id: rope, counted_quantity: 10_000 }], counted_at: first }));
      // A later moment, posted after it: the first count's −5 already on that shelf.
      const later = ok(await count(store, { items: [{ sku_id: flour, counted_quantity: 370 }, { sku_id: rope, counted_quantity: 8_400 }], counted_at: second })).body;
      assert.deepEqual(
        later.items.map((line: { sku_id: string; expected_quantity: number; variance: number }) => [line.sku_id, line.expected_quantity, line.variance]).sort(),
        [[flour, 375, -5], [rope, 8_500, -100]].sort(),
      );
      // Now, with a SKU the store never held and one counted as the system has it.
      ok(await count(store, { items: [{ sku_id: jars, counted_quantity: 4 }, { sku_id: rope, counted_quantity: 8_400 }] }));
      ok(await owner.post(`/v1/transfers/${transfer}/receive`, {}), 200);
      ok(await count(destination, { items: [{ sku_id: flour, counted_quantity: 0 }] }));
    }
    const found = await findings(owner);
    assert.deepEqual(found, [], JSON.stringify(found));
  });

  it('count_correction_matches_sale, covered_sale_has_count_correction and stock_count_matches_ledger: till sales synced late on both sides of counts, in far zones, with an offset and in capitals, two lines of a SKU, a SKU not counted, then voided or partly returned', async () => {
    const { owner } = await t.newTenant();
    const flour = ok(await owner.post('/v1/skus', { code: 'FLOUR', name: 'Flour', unit: 'kg', price: 300 })).body.id;
    const jars = ok(await owner.post('/v1/skus', { code: 'JAR', name: 'Jar', unit: 'piece', price: 120 })).body.id;
    const dbNow = async (): Promise<string> => (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at;
    /** The same moment (to the millisecond, so never later) written with a +05:00 offset. */
    const withOffset = (at: string) => new Date(Date.parse(at) + 5 * HOUR).toISOString().replace('Z', '+05:00');
    const count = (storeId: string, body: unknown) => owner.post(`/v1/stores/${storeId}/stock/counts`, body, { idempotencyKey: randomUUID() });
    const sync = async (storeId: string, at: string, items: Array<{ sku_id: string; quantity: number }>) => {
      const response = ok(
        await owner.post('/v1/sync/sales', {
          sales: [{ idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', client_created_at: at, items: items.map((item) => ({ ...item, unit_price: 100 })) }],
        }),
        200,
      );
      assert.equal(response.body.results[0].status, 201, JSON.stringify(response.body));
      return response.body.results[0].body as { id: string; op_id: string };
    };
    for (const zone of ['UTC', 'Pacific/Kiritimati', 'Etc/GMT+12']) {
      const store = await storeWithStock(owner, flour, `CS-${zone.length}`, zone);
      ok(await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: jars, quantity: 100 }] }));
      const tillSold = await dbNow();
      const countedAt = await dbNow();
      // Synced between counted_at and the count: two lines of flour and a jar, named in capitals.
      const between = await sync(store, tillSold, [{ sku_id: flour.toUpperCase(), quantity: 20 }, { sku_id: flour, quantity: 5 }, { sku_id: jars, quantity: 1 }]);
      ok(await count(store, { items: [{ sku_id: flour, counted_quantity: 470 }], counted_at: countedAt })); // 500 − 25 − 5 missing
      // Synced after the count: flour covered (a correction), the jar not counted (taken as before).
      const covered = await sync(store, withOffset(tillSold), [{ sku_id: flour, quantity: 10 }, { sku_id: jars, quantity: 2 }]);
      const after = await sync(store, await dbNow(), [{ sku_id: flour, quantity: 3 }]);
      ok(await owner.post(`/v1/sales/${covered.id}/void`, { reason: 'till error' }), 200);
      ok(await owner.post(`/v1/sales/${between.id}/returns`, { items: [{ sku_id: flour, quantity: 4 }], reason: 'too much' }));
      ok(await owner.post(`/v1/sales/${after.id}/returns`, { items: [{ sku_id: flour, quantity: 1 }], reason: 'too much' }));
      // 470 counted − 3 sold after + 10 back by the void + 4 + 1 by the returns.
      const balance = Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2`, [store, flour])).rows[0].quantity);
      assert.equal(balance, 470 - 3 + 10 + 4 + 1);
      const kinds = (await t.admin.query(`SELECT kind FROM stock_ledger WHERE store_id = $1 AND op_id = $2 ORDER BY id`, [store, covered.op_id])).rows.map((row) => row.kind);
      assert.deepEqual(kinds, ['count_correction', 'sale', 'sale']);
      // Counted again as of now, as the system has it.
      ok(await count(store, { items: [{ sku_id: flour, counted_quantity: balance }, { sku_id: jars, counted_quantity: 97 }] }));
    }
    const found = await findings(owner);
    assert.deepEqual(found, [], JSON.stringify(found));
  });

  it('transfer checks: transfers requested, approved, received in full or short, cancelled, and named in capitals', async () => {
    const { owner } = await t.newTenant();
    const skuId = ok(await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Oil', unit: 'piece', price: 500 })).body.id;
    const other = ok(await owner.post('/v1/skus', { code: `K${randomUUID().slice(0, 6)}`, name: 'Salt', unit: 'piece', price: 90 })).body.id;
    const source = await storeWithStock(owner, skuId, 'SRC');
    ok(await owner.post(`/v1/stores/${source}/stock/receipts`, { items: [{ sku_id: other, quantity: 50 }] }));
    const destination = ok(await owner.post('/v1/stores', { code: 'DST', name: 'Destination' })).body.id;
    const transfer = async (): Promise<string> =>
      ok(await owner.post('/v1/transfers', { source_store_id: source, destination_store_id: destination, items: [{ sku_id: skuId, quantity: 5 }, { sku_id: other, quantity: 3 }] })).body.id;

    const full = await transfer();
    ok(await owner.post(`/v1/transfers/${full.toUpperCase()}/approve`, {}), 200);
    ok(await owner.post(`/v1/transfers/${full.toUpperCase()}/receive`, {}), 200);
    const short = await transfer();
    ok(await owner.post(`/v1/transfers/${short}/approve`, {}), 200);
    ok(await owner.post(`/v1/transfers/${short}/receive`, { items: [{ sku_id: skuId, quantity_received: 2 }, { sku_id: other, quantity_received: 0 }] }), 200);
    const inTransit = await transfer();
    ok(await owner.post(`/v1/transfers/${inTransit}/approve`, {}), 200);
    ok(await owner.post(`/v1/transfers/${await transfer()}/cancel`, {}), 200);
    await transfer();
    const transferChecks = async () => (await findings(owner)).filter((finding) => finding.check.startsWith('transfer_'));
    assert.deepEqual(await transferChecks(), []);

    // Before request UUIDs were read lowercased (f0e6f9f), a transfer approved
    // and received under its id in capitals wrote that spelling into its
    // ledger rows' reasons: `transfer 0A1B…`. Such a row still names its
    // transfer (a uuid in any letter case is the same uuid).
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      const moved = await client.query(`UPDATE stock_ledger SET reason = 'transfer ' || upper(substr(reason, 10)) WHERE reason = 'transfer ' || $1`, [full]);
      assert.equal(moved.rowCount, 4);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const reason = (await t.admin.query(`SELECT DISTINCT reason FROM stock_ledger WHERE kind = 'transfer_in' AND upper(reason) = upper('transfer ' || $1)`, [full])).rows;
    assert.deepEqual(reason, [{ reason: `transfer ${full.toUpperCase()}` }]);
    assert.deepEqual(await transferChecks(), []);
  });
});
