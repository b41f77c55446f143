import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { withTriggersOff } from '../../test/support/database.js';
import { findingsAfter, integrityFindings } from '../../test/support/integrity.js';
import type { CountLine as CountItem } from './countStock.js';


interface LedgerRow {
  id: number;
  kind: string;
  change: number;
  after: number;
  reason: string | null;
  op_id: string;
  at: string;
}

/**
 * A sale a till made offline before a stock count's counted_at, synced
 * (POST /v1/sync/sales) after it, is taken out of stock once: whether it
 * arrives after the count was recorded (a count_correction row gives back
 * what its sale row takes) or between counted_at and the moment the count is
 * posted (the count leaves it out of its expected quantity). Through HTTP,
 * against the rows left behind.
 */
describe('stock counts and sales synced late: each sale is taken out once', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'CS1', name: 'Counted, synced' })).body.id;
  });
  after(() => t.close());

  const newSku = async (stock: number): Promise<string> => {
    const sku = await owner.post('/v1/skus', { code: `S-${randomUUID().slice(0, 8)}`, name: 'thing', unit: 'piece', price: 100 });
    assert.equal(sku.status, 201);
    if (stock > 0) assert.equal((await owner.post(`/v1/stores/${store}/stock/receipts`, { items: [{ sku_id: sku.body.id, quantity: stock }] })).status, 201);
    return sku.body.id;
  };
  const saleBody = (sku: string, quantity: number, clientCreatedAt?: string) => ({
    store_id: store,
    payment_method: 'cash',
    items: [{ sku_id: sku, quantity, unit_price: 100 }],
    ...(clientCreatedAt === undefined ? {} : { client_created_at: clientCreatedAt }),
  });
  /** An online sale (POST /v1/sales), optionally with its till's clock. */
  const sell = async (sku: string, quantity: number, clientCreatedAt?: string) => {
    const response = await owner.post('/v1/sales', saleBody(sku, quantity, clientCreatedAt), { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string; items: Array<{ shortfall_quantity: number }> };
  };
  /** A sale a till queued offline, made at `clientCreatedAt` by its clock, synced now. */
  const sync = async (sku: string, quantity: number, clientCreatedAt: string) => {
    const response = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), ...saleBody(sku, quantity, clientCreatedAt) }] });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const [result] = response.body.results;
    assert.equal(result.status, 201, JSON.stringify(result.body));
    return result.body as { id: string; op_id: string; source: string; items: Array<{ shortfall_quantity: number }> };
  };
  const count = async (sku: string, counted: number, countedAt?: string) => {
    const response = await owner.post(
      `/v1/stores/${store}/stock/counts`,
      { items: [{ sku_id: sku, counted_quantity: counted }], ...(countedAt === undefined ? {} : { counted_at: countedAt }) },
      { idempotencyKey: randomUUID() },
    );
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string; counted_at_exact: string; items: CountItem[] };
  };
  /** The database's clock to the microsecond (a moment to count at, or a till's clock). */
  const dbNow = async (): Promise<string> =>
    (await t.admin.query(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0].at;
  const balance = async (sku: string) =>
    Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku])).rows[0]?.quantity ?? 0);
  const ledgerOf = async (sku: string): Promise<LedgerRow[]> =>
    (
      await t.admin.query(
        `SELECT id::int, kind, quantity_change::int AS change, quantity_after::int AS after, reason, op_id,
                to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
         FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 ORDER BY id`,
        [tenantId, store, sku],
      )
    ).rows;
  const kinds = (rows: LedgerRow[]) => rows.map((row) => [row.kind, row.change, row.after]);
  const sumOf = (rows: LedgerRow[]) => rows.reduce((sum, row) => sum + row.change, 0);
  const reviewItemsOf = async (saleId: string) =>
    (await t.admin.query(`SELECT kind FROM review_items WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, saleId])).rows.map((row) => row.kind);

  it('synced after the count was recorded: the count found the goods gone, a count_correction row gives back what the sale row takes (net 0)', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow(); // the till sells 10 offline
    const countedAt = await dbNow();
    // The shelf held 90 at countedAt (the 10 the till sold had left); the ledger said 100.
    const counted = await count(sku, 90, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after]), [[100, -10, 90]]);
    const onlineAfter = await sell(sku, 5); // after the count: taken
    assert.equal(await balance(sku), 85);

    const synced = await sync(sku, 10, tillSold);
    assert.equal(synced.source, 'offline');
    assert.deepEqual(synced.items.map((item) => item.shortfall_quantity), [0]);
    assert.equal(await balance(sku), 85, 'the count already took the 10 out');
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger), [
      ['receipt', 100, 100],
      ['count', -10, 90],
      ['sale', -5, 85],
      ['count_correction', 10, 95],
      ['sale', -10, 85],
    ]);
    const [correction, saleRow] = ledger.slice(3);
    assert.equal(correction!.reason, `count ${counted.id}`);
    assert.equal(correction!.op_id, synced.op_id);
    assert.equal(saleRow!.reason, `sale ${synced.id}`);
    assert.equal(saleRow!.op_id, synced.op_id);
    assert.equal(sumOf(ledger), await balance(sku));
    assert.deepEqual(await reviewItemsOf(synced.id), [], 'no shortage: the goods left before the count');

    // GET …/ledger lists the new kind; GET /v1/operations/{op_id} lists both rows and the balance once.
    const listed = await owner.get(`/v1/stores/${store}/stock/${sku}/ledger`);
    assert.equal(listed.status, 200);
    const listedRows = listed.body.items as Array<{ id: number; kind: string; quantity_change: number; reason: string | null }>;
    assert.deepEqual(
      listedRows.filter((row) => row.kind === 'count_correction').map((row) => [row.id, row.quantity_change, row.reason]),
      [[correction!.id, 10, `count ${counted.id}`]],
    );
    const operation = await owner.get(`/v1/operations/${synced.op_id}`);
    assert.equal(operation.status, 200);
    const effects = (operation.body.effects as Array<{ table: string; id: string; action: string }>).filter((effect) => effect.table.startsWith('stock_'));
    assert.deepEqual(
      effects.map((effect) => `${effect.table} ${effect.id} ${effect.action}`).sort(),
      [`stock_balances ${store}/${sku} updated`, `stock_ledger ${correction!.id} created`, `stock_ledger ${saleRow!.id} created`].sort(),
    );

    // A synced sale the till made AFTER counted_at is taken out once, as any sale.
    const later = await sync(sku, 3, await dbNow());
    assert.equal(await balance(sku), 82);
    // An online sale is "now" whatever its till's clock says: a clock lagging behind counted_at takes nothing back.
    const lagging = await sell(sku, 2, tillSold);
    assert.equal(await balance(sku), 80);
    const tail = (await ledgerOf(sku)).slice(5);
    assert.deepEqual(kinds(tail), [['sale', -3, 82], ['sale', -2, 80]]);
    assert.deepEqual(tail.map((row) => row.op_id), [later.op_id, lagging.op_id]);
    // A synced sale without the till's time is "now" too.
    const untimed = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), ...saleBody(sku, 1) }] });
    assert.equal(untimed.body.results[0].status, 201, JSON.stringify(untimed.body));
    assert.equal(await balance(sku), 79);
    assert.equal(sumOf(await ledgerOf(sku)), 79);
    // balance = counted − what left since counted_at (by the till's time) + what came in since
    assert.equal(await balance(sku), 90 - 5 - 3 - 2 - 1);
    assert.ok(onlineAfter.id);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('synced between counted_at and the count being posted: the count leaves the sale out of its expected quantity', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow();
    const countedAt = await dbNow();
    const synced = await sync(sku, 10, tillSold); // arrives after counted_at: stamped after it
    const syncedAfter = await sync(sku, 4, await dbNow()); // made after counted_at by the till: moved after it
    await sell(sku, 1); // online, after counted_at
    assert.equal(await balance(sku), 85);

    // The shelf held 88 at countedAt: 100 − the 10 the till had sold − 2 missing.
    const counted = await count(sku, 88, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after]), [[90, -2, 83]]);
    assert.equal(await balance(sku), 88 - 4 - 1);
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger), [
      ['receipt', 100, 100],
      ['sale', -10, 90],
      ['sale', -4, 86],
      ['sale', -1, 85],
      ['count', -2, 83],
    ]);
    assert.deepEqual([ledger[1]!.op_id, ledger[2]!.op_id], [synced.op_id, syncedAfter.op_id]);
    assert.equal(sumOf(ledger), await balance(sku));

    // Counted again as of now, the shelf as the ledger has it: nothing moves (the synced sale is not taken out again).
    const again = await count(sku, 83);
    assert.deepEqual(again.items.map((line) => [line.expected_quantity, line.variance, line.ledger_id]), [[83, 0, null]]);
    assert.equal(await balance(sku), 83);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a count of variance 0 between the two: the shelf showed the till\'s sale, and the balance keeps it taken once', async () => {
    const sku = await newSku(50);
    const tillSold = await dbNow();
    const countedAt = await dbNow();
    await sync(sku, 20, tillSold);
    const counted = await count(sku, 30, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after, line.ledger_id]), [[30, 0, 30, null]]);
    assert.equal(await balance(sku), 30);
    assert.deepEqual(kinds(await ledgerOf(sku)), [['receipt', 50, 50], ['sale', -20, 30]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a synced sale the count covers takes no shortfall and opens no review item, even when the balance is below its quantity', async () => {
    const sku = await newSku(10);
    const tillSold = await dbNow(); // the till sold all 10
    const countedAt = await dbNow();
    await count(sku, 0, countedAt);
    assert.equal(await balance(sku), 0);
    const synced = await sync(sku, 10, tillSold);
    assert.deepEqual(synced.items.map((item) => item.shortfall_quantity), [0]);
    assert.deepEqual(await reviewItemsOf(synced.id), []);
    assert.equal(await balance(sku), 0);
    assert.deepEqual(kinds(await ledgerOf(sku)), [['receipt', 10, 10], ['count', -10, 0], ['count_correction', 10, 10], ['sale', -10, 0]]);
    // One it does not cover (made after counted_at) is short as before: what is there is taken, the rest is its shortfall.
    const short = await sync(sku, 2, await dbNow());
    assert.deepEqual(short.items.map((item) => item.shortfall_quantity), [2]);
    assert.deepEqual(await reviewItemsOf(short.id), ['offline_sale_shortage']);
    assert.equal(await balance(sku), 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a sale covered by an earlier count is not taken out again by a later count; an earlier count posted late still holds from its counted_at', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow();
    const first = await dbNow();
    await count(sku, 90, first); // found the till's 10 gone
    const second = await dbNow();
    const synced = await sync(sku, 10, tillSold); // after both moments: covered by the first count (net 0)
    assert.equal(await balance(sku), 90);
    const later = await count(sku, 90, second);
    assert.deepEqual(later.items.map((line) => [line.expected_quantity, line.variance]), [[90, 0]]);
    assert.equal(await balance(sku), 90);
    assert.ok(synced.id);

    // Two moments counted, the earlier posted last... is refused (409); but an earlier count posted after a later
    // counted_at, with a sale synced in between, is applied once: 100 in; the till sells 10 at t0; counts at t1 < t2.
    const other = await newSku(100);
    const t0 = await dbNow();
    const t1 = await dbNow();
    const t2 = await dbNow();
    await sync(other, 10, t0); // arrives after t1 and t2, before either count: 90
    await sell(other, 5); // after t2: 85
    const c1 = await count(other, 88, t1); // the shelf at t1: 100 − 10 − 2 missing → expected 90, variance −2
    assert.deepEqual(c1.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after]), [[90, -2, 83]]);
    const c2 = await count(other, 88, t2); // at t2 the shelf still held 88: the first count's −2 holds, the sale is not taken again
    assert.deepEqual(c2.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after]), [[88, 0, 83]]);
    assert.equal(await balance(other), 83);
    assert.equal(sumOf(await ledgerOf(other)), 83);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('concurrent: counts posted while sync batches with sales on both sides of counted_at and online sales go in; the balance ends at the formula, the ledger sums to it', async () => {
    const sku = await newSku(5_000);
    const tillBefore = await dbNow(); // what the tills sold before the stocktake
    const countedAt = await dbNow();
    const tillAfter = await dbNow(); // and after it
    const batches = 8;
    const perBatch = 15;
    const quantity = (batch: number, i: number) => 1 + ((batch + i) % 3);
    const clientTime = (batch: number, i: number) => ((batch + i) % 2 === 0 ? tillBefore : tillAfter);
    const syncBatch = async (batch: number) =>
      owner.post('/v1/sync/sales', {
        sales: Array.from({ length: perBatch }, (_, i) => ({ idempotency_key: randomUUID(), ...saleBody(sku, quantity(batch, i), clientTime(batch, i)) })),
      });
    const onlineSales = async (lane: number) => {
      const answers = [];
      for (let i = 0; i < 10; i++) answers.push(await owner.post('/v1/sales', saleBody(sku, 1 + ((lane + i) % 2)), { idempotencyKey: randomUUID() }));
      return answers;
    };
    const countAfter = async (delayMs: number, counted: number, at?: string) => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: counted }], ...(at ? { counted_at: at } : {}) }, { idempotencyKey: randomUUID() });
    };
    // One batch synced before any count is posted (made on both sides of countedAt, recorded after it): the count of
    // countedAt must leave its earlier half out of its expected quantity.
    const early = await syncBatch(batches);
    const [syncAnswers, onlineAnswers, countAnswers] = await Promise.all([
      Promise.all(Array.from({ length: batches }, (_, batch) => syncBatch(batch))),
      Promise.all(Array.from({ length: 4 }, (_, lane) => onlineSales(lane))),
      Promise.all([countAfter(0, 4_800, countedAt), countAfter(40, 4_750, countedAt), countAfter(80, 4_700)]),
    ]);
    for (const answer of [early, ...syncAnswers]) {
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      for (const result of answer.body.results) assert.equal(result.status, 201, JSON.stringify(result.body));
    }
    for (const answer of onlineAnswers.flat()) assert.equal(answer.status, 201, JSON.stringify(answer.body));
    // And one batch synced after every count (its sales made on both sides of countedAt, so half before the latest
    // count's counted_at): whatever the interleaving above, the corrections path runs (on an idle machine every batch
    // above could be recorded before the counts, leaving it untried).
    const late = await syncBatch(batches + 1);
    assert.equal(late.status, 200, JSON.stringify(late.body));
    for (const result of late.body.results) assert.equal(result.status, 201, JSON.stringify(result.body));
    // The count of now is applied (its counted_at is when it held the lock: later than any recorded); of the two of
    // countedAt, at most one (the second is counted already: 409; both, if the count of now came first).
    assert.equal(countAnswers[2]!.status, 201, JSON.stringify(countAnswers[2]!.body));
    const ofMoment = countAnswers.slice(0, 2);
    assert.ok(ofMoment.filter((answer) => answer.status === 201).length <= 1);
    for (const answer of ofMoment) {
      assert.ok([201, 409].includes(answer.status), JSON.stringify(answer.body));
      if (answer.status === 409) assert.equal(answer.body.code, 'conflict');
    }
    const latest = countAnswers[2]!.body as { counted_at_exact: string; items: CountItem[] };
    const latestAt = latest.counted_at_exact;

    // What left after the latest count's counted_at: online sales by their ledger row's stamp, synced ones by the till's time.
    const sold = (
      await t.admin.query(
        `SELECT s.source, s.op_id, to_char(s.client_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS client_at,
                to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, -l.quantity_change::int AS quantity
         FROM sales s JOIN stock_ledger l ON l.tenant_id = s.tenant_id AND l.op_id = s.op_id AND l.kind = 'sale'
         WHERE s.tenant_id = $1 AND l.sku_id = $2`,
        [tenantId, sku],
      )
    ).rows as Array<{ source: string; op_id: string; client_at: string | null; at: string; quantity: number }>;
    assert.equal(sold.length, (batches + 2) * perBatch + 40);
    const leftSince = sold.filter((row) => (row.source === 'offline' ? row.client_at! > latestAt : row.at > latestAt)).reduce((sum, row) => sum + row.quantity, 0);
    const final = await balance(sku);
    assert.equal(final, latest.items[0]!.counted_quantity - leftSince, JSON.stringify({ leftSince, latestAt }));
    const ledger = await ledgerOf(sku);
    assert.equal(sumOf(ledger), final);
    let running = 0;
    for (const row of ledger) {
      running += row.change;
      assert.equal(row.after, running);
      assert.ok(row.after >= 0);
    }
    // A synced sale made before the latest count's counted_at and written after it (so after the count committed:
    // that count's counted_at is when it held the lock) has its correction; a correction is only in a synced sale
    // made at or before a count's counted_at, and gives back what its sale took.
    const corrected = new Map(ledger.filter((row) => row.kind === 'count_correction').map((row) => [row.op_id, row.change]));
    for (const row of sold.filter((sale) => sale.source === 'offline' && sale.client_at! <= latestAt && sale.at > latestAt)) {
      assert.equal(corrected.get(row.op_id), row.quantity, JSON.stringify(row));
    }
    for (const [opId, change] of corrected) {
      const sale = sold.find((row) => row.op_id === opId)!;
      assert.equal(sale.source, 'offline');
      assert.ok(sale.client_at! <= latestAt, JSON.stringify(sale));
      assert.equal(change, sale.quantity);
    }
    assert.ok(sold.some((row) => row.at > latestAt) && sold.some((row) => row.at <= latestAt), 'the counts fell among the sales');
    assert.ok(corrected.size > 0, 'synced sales made before a counted_at were written after its count (the corrections path ran)');
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  /** A void of a sale; with `clientCreatedAt`, one the till queued offline, made then by its clock. */
  const voidSale = async (saleId: string, clientCreatedAt?: string) => {
    const response = await owner.post(`/v1/sales/${saleId}/void`, { reason: 'rung up by mistake', ...(clientCreatedAt === undefined ? {} : { client_created_at: clientCreatedAt }) }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body as { id: string; voided_by_op: string };
  };
  /** A return of `quantity` of the sale's SKU; with `clientCreatedAt`, one the till queued offline. */
  const returnOf = async (saleId: string, sku: string, quantity: number, clientCreatedAt?: string) => {
    const response = await owner.post(
      `/v1/sales/${saleId}/returns`,
      { items: [{ sku_id: sku, quantity }], reason: 'brought back', ...(clientCreatedAt === undefined ? {} : { client_created_at: clientCreatedAt }) },
      { idempotencyKey: randomUUID() },
    );
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { id: string; op_id: string };
  };

  it('a sale rung up offline by mistake and voided at once, both before counted_at, sent after the count was recorded: the balance is the count\'s', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow();
    const tillVoided = await dbNow();
    const countedAt = await dbNow();
    // The shelf held all 100 at countedAt (the mistaken sale never took goods).
    const counted = await count(sku, 100, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance]), [[100, 0]]);
    await sell(sku, 5); // after the count
    const synced = await sync(sku, 10, tillSold); // covered: net 0
    assert.equal(await balance(sku), 95);
    const voided = await voidSale(synced.id, tillVoided); // covered too: net 0
    assert.equal(await balance(sku), 95, 'the count already saw the goods on the shelf');
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger), [
      ['receipt', 100, 100],
      ['sale', -5, 95],
      ['count_correction', 10, 105],
      ['sale', -10, 95],
      ['void', 10, 105],
      ['count_correction', -10, 95],
    ]);
    const [voidRow, correction] = ledger.slice(4);
    assert.deepEqual([voidRow!.op_id, correction!.op_id], [voided.voided_by_op, voided.voided_by_op]);
    assert.equal(correction!.reason, `count ${counted.id}`);
    assert.equal(sumOf(ledger), 95);
    // GET /v1/operations/{op_id} of the void: both rows, the balance once.
    const operation = await owner.get(`/v1/operations/${voided.voided_by_op}`);
    assert.equal(operation.status, 200);
    const effects = (operation.body.effects as Array<{ table: string; id: string; action: string }>).filter((effect) => effect.table.startsWith('stock_'));
    assert.deepEqual(
      effects.map((effect) => `${effect.table} ${effect.id} ${effect.action}`).sort(),
      [`stock_balances ${store}/${sku} updated`, `stock_ledger ${voidRow!.id} created`, `stock_ledger ${correction!.id} created`].sort(),
    );
    // Counted again as of now, the shelf as the ledger has it: nothing moves.
    const again = await count(sku, 95);
    assert.deepEqual(again.items.map((line) => [line.expected_quantity, line.variance]), [[95, 0]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the mistaken pair sent between counted_at and the count being posted: the count adds the void back to its expected quantity', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow();
    const tillVoided = await dbNow();
    const countedAt = await dbNow();
    const synced = await sync(sku, 10, tillSold);
    const voided = await voidSale(synced.id, tillVoided);
    await sell(sku, 5);
    assert.equal(await balance(sku), 95);
    const counted = await count(sku, 100, countedAt); // the shelf held 100 at countedAt
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance, line.ledger_id]), [[100, 0, null]]);
    assert.equal(await balance(sku), 95);
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger), [['receipt', 100, 100], ['sale', -10, 90], ['void', 10, 100], ['sale', -5, 95]]);
    assert.equal(ledger[2]!.op_id, voided.voided_by_op);
    // Two missing at countedAt: the variance is theirs alone.
    const other = await newSku(100);
    const otherSold = await dbNow();
    const otherVoided = await dbNow();
    const otherAt = await dbNow();
    await voidSale((await sync(other, 10, otherSold)).id, otherVoided);
    const short = await count(other, 98, otherAt);
    assert.deepEqual(short.items.map((line) => [line.expected_quantity, line.variance, line.quantity_after]), [[100, -2, 98]]);
    assert.equal(sumOf(await ledgerOf(other)), 98);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a return the till took offline before counted_at is given back once, sent after the count or before it is posted', async () => {
    const sku = await newSku(100);
    const sale = await sell(sku, 10);
    const tillReturned = await dbNow();
    const countedAt = await dbNow();
    // The shelf held 93 at countedAt: the 3 brought back were on it; the ledger said 90.
    const counted = await count(sku, 93, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance]), [[90, 3]]);
    const returned = await returnOf(sale.id, sku, 3, tillReturned);
    assert.equal(await balance(sku), 93);
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger).slice(2), [['count', 3, 93], ['return', 3, 96], ['count_correction', -3, 93]]);
    assert.deepEqual(ledger.slice(3).map((row) => [row.op_id, row.reason]), [[returned.op_id, `return of sale ${sale.id}`], [returned.op_id, `count ${counted.id}`]]);

    const between = await newSku(100);
    const sold = await sell(between, 10);
    const tillTook = await dbNow();
    const betweenAt = await dbNow();
    await returnOf(sold.id, between, 3, tillTook);
    assert.equal(await balance(between), 93);
    const later = await count(between, 93, betweenAt);
    assert.deepEqual(later.items.map((line) => [line.expected_quantity, line.variance, line.ledger_id]), [[93, 0, null]]);
    assert.deepEqual(kinds(await ledgerOf(between)), [['receipt', 100, 100], ['sale', -10, 90], ['return', 3, 93]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('voids and returns the till made after counted_at, and those without the till\'s time, put the goods back as before', async () => {
    const sku = await newSku(100);
    const [a, b, c] = [await sell(sku, 10), await sell(sku, 10), await sell(sku, 10)];
    const tillEarlier = await dbNow();
    const countedAt = await dbNow();
    await count(sku, 70, countedAt);
    await returnOf(a.id, sku, 2, await dbNow()); // the till's time after counted_at
    await voidSale(b.id, await dbNow());
    await voidSale(c.id); // online: "now"
    await returnOf(a.id, sku, 1); // online: "now"
    assert.equal(await balance(sku), 70 + 2 + 10 + 10 + 1);
    const ledger = await ledgerOf(sku);
    assert.deepEqual(kinds(ledger).slice(4), [['return', 2, 72], ['void', 10, 82], ['void', 10, 92], ['return', 1, 93]]);
    assert.equal(ledger.filter((row) => row.kind === 'count_correction').length, 0);
    assert.equal(sumOf(ledger), 93);
    // A void with the till's time before counted_at of a SKU never counted: nothing covers it.
    const uncounted = await newSku(10);
    await voidSale((await sell(uncounted, 4)).id, tillEarlier);
    assert.deepEqual(kinds(await ledgerOf(uncounted)), [['receipt', 10, 10], ['sale', -4, 6], ['void', 4, 10]]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('concurrent: a count of a past moment posted while the tills\' offline voids made before it arrive, and online sales go in: each void given back once', async () => {
    const sku = await newSku(1_000);
    const tillSold = await dbNow();
    const tillVoided = await dbNow();
    const sales = [];
    for (let i = 0; i < 20; i++) sales.push(await sync(sku, 5, tillSold)); // recorded before counted_at: 900
    const countedAt = await dbNow(); // the shelf held all 1,000: the 20 sales were voided on the till before it
    const voidOf = (sale: { id: string }) => owner.post(`/v1/sales/${sale.id}/void`, { reason: 'rung up by mistake', client_created_at: tillVoided }, { idempotencyKey: randomUUID() });
    // Five voids arrive before the count is posted, ten while it is, five after it: both paths run.
    const first = await Promise.all(sales.slice(0, 5).map(voidOf));
    const [racing, online, counted] = await Promise.all([
      Promise.all(sales.slice(5, 15).map(voidOf)),
      Promise.all(Array.from({ length: 10 }, () => owner.post('/v1/sales', saleBody(sku, 1), { idempotencyKey: randomUUID() }))),
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 30));
        return owner.post(`/v1/stores/${store}/stock/counts`, { items: [{ sku_id: sku, counted_quantity: 1_000 }], counted_at: countedAt }, { idempotencyKey: randomUUID() });
      })(),
    ]);
    const voids = [...first, ...racing, ...(await Promise.all(sales.slice(15).map(voidOf)))];
    for (const answer of voids) assert.equal(answer.status, 200, JSON.stringify(answer.body));
    for (const answer of online) assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.equal(counted.status, 201, JSON.stringify(counted.body));
    const line = (counted.body.items as CountItem[])[0]!;
    // The voids recorded before the count are in its expected quantity; those after it wrote a correction.
    const before = (line.expected_quantity - 900) / 5;
    assert.ok(Number.isInteger(before) && before >= 5 && before <= 15, JSON.stringify(line));
    const ledger = await ledgerOf(sku);
    const voidOps = new Set(voids.map((answer) => answer.body.voided_by_op as string));
    const corrections = ledger.filter((row) => row.kind === 'count_correction');
    assert.ok(corrections.every((row) => voidOps.has(row.op_id) && row.change === -5 && row.reason === `count ${counted.body.id}`));
    assert.equal(new Set(corrections.map((row) => row.op_id)).size, corrections.length);
    assert.equal(corrections.length, 20 - before, JSON.stringify({ before, corrections: corrections.length }));
    // counted − what left since counted_at (the 10 online) + nothing came in; each void given back once.
    assert.equal(await balance(sku), 1_000 - 10);
    assert.equal(sumOf(ledger), 1_000 - 10);
    let running = 0;
    for (const row of ledger) {
      running += row.change;
      assert.equal(row.after, running);
      assert.ok(row.after >= 0);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  // count_correction_matches_sale against corrupted rows: each corruption leaves every balance equal to its ledger
  // (the other stock checks stay quiet), so the check reports it (with stock_count_matches_ledger where the
  // corruption also changes what a count's arithmetic reads).
  /** A SKU of 20, a till's sale of 5 before a count that found it gone, synced after: its count_correction row. */
  const corrected = async () => {
    const sku = await newSku(20);
    const tillSold = await dbNow();
    const countedAt = await dbNow();
    const counted = await count(sku, 15, countedAt);
    const sale = await sync(sku, 5, tillSold);
    const row = (await ledgerOf(sku)).find((entry) => entry.kind === 'count_correction');
    assert.ok(row, 'the sale wrote its count_correction row');
    return { sku, countId: counted.id, countedAt, sale, correctionId: row.id };
  };
  const newFindings = (corrupt: () => Promise<void>) => findingsAfter(t.admin, tenantId, corrupt);
  const subjectOf = (opId: string, sku: string) => `${opId}/${store}/${sku}`;

  it('clean corrections are not reported', async () => {
    await corrected();
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a correction naming a count that is not of its SKU is reported', async () => {
    const one = await corrected();
    const other = await corrected();
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE stock_ledger SET reason = $3 WHERE tenant_id = $1 AND id = $2`, [tenantId, one.correctionId, `count ${other.countId}`]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['count_correction_matches_sale', subjectOf(one.sale.op_id, one.sku)]]);
  });

  it('a correction of a sale the till made after the count\'s counted_at is reported', async () => {
    const one = await corrected();
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE sales SET client_created_at = $3::timestamptz + interval '1 microsecond' WHERE tenant_id = $1 AND id = $2`, [tenantId, one.sale.id, one.countedAt]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['count_correction_matches_sale', subjectOf(one.sale.op_id, one.sku)]]);
  });

  it('a correction giving back more than its sale took, and one in an online sale\'s operation, are reported', async () => {
    const one = await corrected();
    // +1 on the correction and on every row after it of the pair, and on the balance: the ledger still sums to it.
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE stock_ledger SET quantity_change = quantity_change + 1 WHERE tenant_id = $1 AND id = $2`, [tenantId, one.correctionId]],
        [`UPDATE stock_ledger SET quantity_after = quantity_after + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND id >= $4`, [tenantId, store, one.sku, one.correctionId]],
        [`UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, one.sku]],
      ]),
    );
    // The count's arithmetic breaks too: the sale made before its counted_at, recorded after it, no longer nets 0.
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]).sort(), [
      ['count_correction_matches_sale', subjectOf(one.sale.op_id, one.sku)],
      ['stock_count_matches_ledger', one.countId],
    ]);

    const two = await corrected();
    const online = await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: two.sku, quantity: 1, unit_price: 100 }] }, { idempotencyKey: randomUUID() });
    assert.equal(online.status, 201, JSON.stringify(online.body));
    const balance = Number((await t.admin.query(`SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, two.sku])).rows[0].quantity);
    const more = await newFindings(() =>
      withTriggersOff(t.admin, [
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, 1, $5, 'count_correction', $6)`,
          [tenantId, store, two.sku, online.body.op_id, balance + 1, `count ${two.countId}`],
        ],
        [`UPDATE stock_balances SET quantity = quantity + 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, two.sku]],
      ]),
    );
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]), [['count_correction_matches_sale', subjectOf(online.body.op_id, two.sku)]]);
  });
  // The corrections of voids and returns, and the count's rule for them, against corrupted rows (clean, they leave no
  // finding: the tests above; the tenant keeps the findings of earlier corruptions, so these compare before and after).
  /** A SKU of 20; a till's sale of 5 and its void, both before a count that saw the 20, sent after it. */
  const voidCorrected = async () => {
    const sku = await newSku(20);
    const tillSold = await dbNow();
    const tillVoided = await dbNow();
    const countedAt = await dbNow();
    const counted = await count(sku, 20, countedAt);
    const sale = await sync(sku, 5, tillSold);
    const voided = await voidSale(sale.id, tillVoided);
    const row = (await ledgerOf(sku)).find((entry) => entry.kind === 'count_correction' && entry.op_id === voided.voided_by_op);
    assert.ok(row, 'the void wrote its count_correction row');
    return { sku, countId: counted.id, countedAt, sale, voidOp: voided.voided_by_op, correctionId: row.id };
  };

  /** A return of 2 of a sale of 5 the till made before a count's counted_at, recorded after the count: its count_correction row. */
  const returnCorrected = async () => {
    const sku = await newSku(20);
    const sale = await sell(sku, 5);
    const tillReturned = await dbNow();
    const countedAt = await dbNow();
    const counted = await count(sku, 17, countedAt);
    const returned = await returnOf(sale.id, sku, 2, tillReturned);
    const correction = (await ledgerOf(sku)).find((entry) => entry.kind === 'count_correction' && entry.op_id === returned.op_id);
    assert.ok(correction, 'the return wrote its count_correction row');
    return { sku, counted, returned, correction };
  };

  it('a correction of a void the till made after the count\'s counted_at is reported', async () => {
    const one = await voidCorrected();
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE sales SET void_client_created_at = $3::timestamptz + interval '1 microsecond' WHERE tenant_id = $1 AND id = $2`, [tenantId, one.sale.id, one.countedAt]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['count_correction_matches_sale', subjectOf(one.voidOp, one.sku)]]);
  });

  it('a return\'s correction taking out more than the return put back, and a correction in an online void\'s operation, are reported', async () => {
    const { sku, counted, returned, correction } = await returnCorrected();
    // −1 on the correction and on every row after it of the pair, and on the balance: the ledger still sums to it.
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [
        [`UPDATE stock_ledger SET quantity_change = quantity_change - 1 WHERE tenant_id = $1 AND id = $2`, [tenantId, correction.id]],
        [`UPDATE stock_ledger SET quantity_after = quantity_after - 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND id >= $4`, [tenantId, store, sku, correction.id]],
        [`UPDATE stock_balances SET quantity = quantity - 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku]],
      ]),
    );
    // The count's arithmetic breaks too: the return made before its counted_at, recorded after it, no longer nets 0.
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]).sort(), [
      ['count_correction_matches_sale', subjectOf(returned.op_id, sku)],
      ['stock_count_matches_ledger', counted.id],
    ]);

    const two = await voidCorrected();
    const onlineVoid = await voidSale((await sell(two.sku, 3)).id); // no till time: "now"
    const balanceNow = await balance(two.sku);
    const more = await newFindings(() =>
      withTriggersOff(t.admin, [
        [
          `INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason) VALUES ($1, $2, $3, $4, -1, $5, 'count_correction', $6)`,
          [tenantId, store, two.sku, onlineVoid.voided_by_op, balanceNow - 1, `count ${two.countId}`],
        ],
        [`UPDATE stock_balances SET quantity = quantity - 1 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, two.sku]],
      ]),
    );
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]), [['count_correction_matches_sale', subjectOf(onlineVoid.voided_by_op, two.sku)]]);
  });

  it('a count whose expected quantity left out a void the till made before counted_at (its time moved after it) is reported', async () => {
    const sku = await newSku(100);
    const tillSold = await dbNow();
    const tillVoided = await dbNow();
    const countedAt = await dbNow();
    const synced = await sync(sku, 10, tillSold);
    await voidSale(synced.id, tillVoided);
    const counted = await count(sku, 100, countedAt); // expected 100: the sale's −10 and the void's +10
    const found = await newFindings(() =>
      withTriggersOff(t.admin, [[`UPDATE sales SET void_client_created_at = $3::timestamptz + interval '1 microsecond' WHERE tenant_id = $1 AND id = $2`, [tenantId, synced.id, countedAt]]]),
    );
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['stock_count_matches_ledger', counted.id]]);
  });
  // covered_sale_has_count_correction: an operation a count covers (made by the till at or before its counted_at,
  // recorded after the count) whose count_correction row is missing. The row is deleted and every later row of the
  // pair and the balance follow (the ledger still sums to the balance, its running totals hold): the operation now
  // moves the balance by what its own row moved, which the count's arithmetic sees too (stock_count_matches_ledger).
  const dropCorrection = (sku: string, correctionId: number, change: number) =>
    withTriggersOff(t.admin, [
      [`DELETE FROM stock_ledger WHERE tenant_id = $1 AND id = $2`, [tenantId, correctionId]],
      [`UPDATE stock_ledger SET quantity_after = quantity_after - $5 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND id > $4`, [tenantId, store, sku, correctionId, change]],
      [`UPDATE stock_balances SET quantity = quantity - $4 WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3`, [tenantId, store, sku, change]],
    ]);

  it('a synced sale a count covers, recorded after the count, without its count_correction row is reported', async () => {
    const one = await corrected();
    const found = await newFindings(() => dropCorrection(one.sku, one.correctionId, 5));
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]).sort(), [
      ['covered_sale_has_count_correction', subjectOf(one.sale.op_id, one.sku)],
      ['stock_count_matches_ledger', one.countId],
    ]);
    const finding = found.find((entry) => entry.check === 'covered_sale_has_count_correction')!;
    const { op_id, operation, store_id, sku_id, quantity_change, count_id } = finding.detail as Record<string, unknown>;
    assert.deepEqual({ op_id, operation, store_id, sku_id, quantity_change, count_id }, { op_id: one.sale.op_id, operation: 'sale', store_id: store, sku_id: one.sku, quantity_change: -5, count_id: one.countId });
  });

  it('a void and a return with the till\'s time a count covers, recorded after it, without their count_correction rows are reported', async () => {
    const one = await voidCorrected();
    const found = await newFindings(() => dropCorrection(one.sku, one.correctionId, -5));
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]).sort(), [
      ['covered_sale_has_count_correction', subjectOf(one.voidOp, one.sku)],
      ['stock_count_matches_ledger', one.countId],
    ]);

    const { sku, counted, returned, correction } = await returnCorrected();
    const more = await newFindings(() => dropCorrection(sku, correction.id, -2));
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]).sort(), [
      ['covered_sale_has_count_correction', subjectOf(returned.op_id, sku)],
      ['stock_count_matches_ledger', counted.id],
    ]);
  });
  it('a count keeps when it held its balance rows: after its counted_at, before its own ledger rows and audit events, after the rows written before it and before those written after it', async () => {
    const sku = await newSku(20);
    const before = await sell(sku, 1);
    const counted = await count(sku, 10);
    const later = await sell(sku, 1);
    const { rows } = await t.admin.query(
      `SELECT c.held_at > c.counted_at AS after_counted_at,
              c.held_at < (SELECT min(l.created_at) FROM stock_ledger l WHERE l.tenant_id = c.tenant_id AND l.op_id = c.op_id) AS before_own_rows,
              c.held_at < (SELECT min(e.created_at) FROM events e WHERE e.tenant_id = c.tenant_id AND e.op_id = c.op_id) AS before_own_events,
              c.held_at > (SELECT l.created_at FROM stock_ledger l WHERE l.tenant_id = c.tenant_id AND l.op_id = $3) AS after_earlier_sale,
              c.held_at < (SELECT l.created_at FROM stock_ledger l WHERE l.tenant_id = c.tenant_id AND l.op_id = $4) AS before_later_sale,
              -- what migration 1320 gave the counts recorded before it (their first audit event): between the same two rows
              (SELECT min(e.created_at) FROM events e WHERE e.tenant_id = c.tenant_id AND e.op_id = c.op_id)
                BETWEEN (SELECT l.created_at FROM stock_ledger l WHERE l.tenant_id = c.tenant_id AND l.op_id = $3)
                    AND (SELECT l.created_at FROM stock_ledger l WHERE l.tenant_id = c.tenant_id AND l.op_id = $4) AS backfill_between
       FROM stock_counts c WHERE c.tenant_id = $1 AND c.id = $2`,
      [tenantId, counted.id, before.op_id, later.op_id],
    );
    assert.deepEqual(rows, [{ after_counted_at: true, before_own_rows: true, before_own_events: true, after_earlier_sale: true, before_later_sale: true, backfill_between: true }]);
  });
  // The same check against a count's held_at moved back before an operation that was in fact recorded first (so,
  // rightly, without a correction): the rows now say the count was recorded before the operation read its balance
  // row — a covered operation without its correction —, while every other check (which do not read held_at) is quiet.
  const heldAtCountedAt = (countId: string) =>
    withTriggersOff(t.admin, [[`UPDATE stock_counts SET held_at = counted_at + interval '1 microsecond' WHERE tenant_id = $1 AND id = $2`, [tenantId, countId]]]);

  it('a synced sale recorded between counted_at and a count whose held_at says it was recorded first is reported, with its row and without', async () => {
    // With a sale row: stock was there.
    const sku = await newSku(20);
    const tillSold = await dbNow();
    const countedAt = await dbNow();
    const between = await sync(sku, 5, tillSold);
    const counted = await count(sku, 15, countedAt);
    assert.deepEqual(counted.items.map((line) => [line.expected_quantity, line.variance]), [[15, 0]]);
    const found = await newFindings(() => heldAtCountedAt(counted.id));
    assert.deepEqual(found.map((finding) => [finding.check, finding.subject]), [['covered_sale_has_count_correction', subjectOf(between.op_id, sku)]]);

    // Without one: the store held none of the SKU, so the sale recorded all 5 short (review item, no ledger row); a
    // sale the count covered would have taken them (its correction giving them back).
    const empty = await newSku(0);
    const tillShort = await dbNow();
    const emptyAt = await dbNow();
    const short = await sync(empty, 5, tillShort);
    assert.deepEqual(short.items.map((item) => item.shortfall_quantity), [5]);
    assert.deepEqual(await reviewItemsOf(short.id), ['offline_sale_shortage']);
    const none = await count(empty, 0, emptyAt);
    assert.deepEqual(none.items.map((line) => [line.expected_quantity, line.variance]), [[0, 0]]);
    assert.deepEqual(await ledgerOf(empty), []);
    const more = await newFindings(() => heldAtCountedAt(none.id));
    assert.deepEqual(more.map((finding) => [finding.check, finding.subject]), [['covered_sale_has_count_correction', subjectOf(short.op_id, empty)]]);
    const { quantity_change, shortfall, count_id } = more[0]!.detail as Record<string, unknown>;
    assert.deepEqual({ quantity_change, shortfall, count_id }, { quantity_change: 0, shortfall: 5, count_id: none.id });
  });
});
