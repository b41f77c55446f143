/**
 * Partial returns reviewed against the paths around them: a store's zone
 * moved back after a sale, an offline sale that synced short on one of two
 * lines of a SKU (returned like any other since: shortReturns.int.spec.ts), refunds of every payment method in the day's count.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenSku, givenStock, givenStore } from './testkit.js';

describe('partial returns: reviewed paths', () => {
  let t: TestApp;

  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  const entryDays = async (tenantId: string, saleId: string) =>
    Object.fromEntries(
      (
        await t.admin.query(
          `SELECT e.kind, e.business_date::text AS day FROM journal_entries e
           WHERE e.tenant_id = $1 AND (e.subject_id = $2 OR e.subject_id IN (SELECT id FROM sale_returns WHERE sale_id = $2))`,
          [tenantId, saleId],
        )
      ).rows.map((row) => [row.kind, row.day]),
    );

  it('a store moved to a zone behind its old one after a sale: the refund of a return is booked no earlier than the sale, the books stay clean', async () => {
    const { owner, tenantId } = await t.newTenant();
    // Kiritimati (UTC+14) is always one or two days ahead of Pago Pago (UTC−11)
    const store = (await owner.post('/v1/stores', { code: 'KIRI', name: 'Kiritimati', time_zone: 'Pacific/Kiritimati' })).body.id as string;
    const tea = await givenSku(owner, 'TEA', 'piece', 250);
    await givenStock(owner, store, [{ sku_id: tea, quantity: 10 }]);
    const sale = (await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: tea, quantity: 4, unit_price: 250 }] })).body;
    const queued = (await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: tea, quantity: 2, unit_price: 250 }] })).body;
    const saleDay = (await entryDays(tenantId, sale.id)).sale;
    // the store's zone is put right: it is far behind
    const moved = await owner.patch(`/v1/stores/${store}`, { time_zone: 'Pacific/Pago_Pago' });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    const today = (await t.admin.query(`SELECT store_day('Pacific/Pago_Pago', now())::text AS d`)).rows[0].d;
    assert.ok(today < saleDay, `${today} is before the sale's day ${saleDay}`);

    // a return now, and one a till queued a minute ago
    const returned = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: tea, quantity: 1 }], reason: 'one back' }, { idempotencyKey: randomUUID() });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    const queuedReturn = await owner.post(
      `/v1/sales/${queued.id}/returns`,
      { items: [{ sku_id: tea, quantity: 1 }], reason: 'queued', client_created_at: new Date(Date.now() - 60_000).toISOString() },
      { idempotencyKey: randomUUID() },
    );
    assert.equal(queuedReturn.status, 201, JSON.stringify(queuedReturn.body));
    assert.deepEqual(await entryDays(tenantId, sale.id), { sale: saleDay, sale_return: saleDay });
    assert.deepEqual(await entryDays(tenantId, queued.id), { sale: saleDay, sale_return: saleDay });
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    // and a void after it: what is left comes back, no earlier than the sale either
    assert.equal((await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'the rest' })).status, 200);
    assert.deepEqual(await entryDays(tenantId, sale.id), { sale: saleDay, sale_return: saleDay, sale_void: saleDay });
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('an offline sale short on the second of two lines of a SKU: the answer of a return names all of that SKU returnable, and a return of it takes it back', async () => {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, 'S');
    const soap = await givenSku(owner, 'SOAP', 'piece', 100);
    const salt = await givenSku(owner, 'SALT', 'piece', 40);
    await givenStock(owner, store, [
      { sku_id: soap, quantity: 7 },
      { sku_id: salt, quantity: 10 },
    ]);
    const synced = await owner.post('/v1/sync/sales', {
      sales: [
        {
          idempotency_key: randomUUID(),
          store_id: store,
          payment_method: 'cash',
          client_created_at: new Date(Date.now() - 60_000).toISOString(),
          items: [
            { sku_id: soap, quantity: 5, unit_price: 100 },
            { sku_id: soap, quantity: 5, unit_price: 100 },
            { sku_id: salt, quantity: 3, unit_price: 40 },
          ],
        },
      ],
    });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const sale = synced.body.results[0].body;
    assert.deepEqual(
      sale.items.map((item: { shortfall_quantity: number }) => item.shortfall_quantity),
      [0, 3, 0],
    );
    const salted = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: salt, quantity: 1 }], reason: 'one back' }, { idempotencyKey: randomUUID() });
    assert.equal(salted.status, 201, JSON.stringify(salted.body));
    const soapLeft = salted.body.remaining.find((entry: { sku_id: string }) => entry.sku_id === soap);
    // what the answer says a return may take back, a return may take back
    const soaped = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: soap, quantity: 10 }], reason: 'all back' }, { idempotencyKey: randomUUID() });
    assert.equal(soaped.status, 201, JSON.stringify(soaped.body));
    assert.deepEqual(soapLeft, { sku_id: soap, sold: 10, returned: 0, returnable: 10, returnable_piece_ids: [] });
    assert.deepEqual(soaped.body.remaining[0], { sku_id: soap, sold: 10, returned: 10, returnable: 0, returnable_piece_ids: [] });
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the day\'s count: cash_returns holds the cash refunds only (card, mobile and credit refunds leave their own accounts)', async () => {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, 'C');
    const rice = await givenSku(owner, 'RICE', 'kg', 1200);
    await givenStock(owner, store, [{ sku_id: rice, quantity: 100_000 }]);
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Amina' })).body.id as string;
    const sold: Record<string, { id: string; total: number }> = {};
    for (const method of ['cash', 'card', 'mobile', 'credit'] as const) {
      const response = await owner.post('/v1/sales', {
        store_id: store,
        payment_method: method,
        ...(method === 'credit' ? { customer_id: customer } : {}),
        items: [{ sku_id: rice, quantity: 2_345, unit_price: 1_199 }],
      });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      sold[method] = response.body;
    }
    // 2,345 g at 1,199 per kg is 2,811.655 → 2,812; 1,001 g back is 1,200.199 → 1,200
    const refunds: Record<string, number> = {};
    for (const method of Object.keys(sold)) {
      const response = await owner.post(`/v1/sales/${sold[method]!.id}/returns`, { items: [{ sku_id: rice, quantity: 1_001 }], reason: 'too much' }, { idempotencyKey: randomUUID() });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      refunds[method] = response.body.refund_total;
    }
    assert.deepEqual(refunds, { cash: 1_200, card: 1_200, mobile: 1_200, credit: 1_200 });
    const accounts = Object.fromEntries(
      (
        await t.admin.query(`SELECT coalesce(kind, 'x') AS kind, balance::int FROM accounts WHERE tenant_id = $1 AND (store_id = $2 OR party_id = $3)`, [tenantId, store, customer])
      ).rows.map((row) => [row.kind, row.balance]),
    );
    assert.deepEqual(
      { cash: accounts.cash_drawer, card: accounts.card_clearing, mobile: accounts.mobile_clearing, credit: accounts.receivable },
      { cash: 2_812 - 1_200, card: 2_812 - 1_200, mobile: 2_812 - 1_200, credit: 2_812 - 1_200 },
    );
    const today = (await t.admin.query(`SELECT business_date::text AS d FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, sold.cash!.id])).rows[0].d;
    const count = await owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 }, { idempotencyKey: randomUUID() });
    assert.equal(count.status, 201, JSON.stringify(count.body));
    assert.equal(count.body.cash_sales, 2_812);
    assert.equal(count.body.cash_returns, 1_200);
    assert.equal(count.body.other_cash, 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('the answers of a return (first and replayed), a void after it and GET /v1/sales/{id} are exactly what the OpenAPI document says: every field documented, of its type, none missing', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'D');
    const cheese = await givenSku(owner, 'CHEESE', 'kg', 1500);
    const milk = await givenSku(owner, 'MILK', 'piece', 120);
    await givenStock(owner, store, [
      { sku_id: cheese, quantity: 10_000 },
      { sku_id: milk, quantity: 10 },
    ]);
    const doc = (await new ApiClient(t.baseUrl, undefined).get('/openapi.json')).body;
    // Every documented object closed (additionalProperties: false) and every property required: an answer with a field
    // the document does not name, or without one it names, is refused.
    const closed = (schema: unknown): unknown => {
      if (Array.isArray(schema)) return schema.map(closed);
      if (schema === null || typeof schema !== 'object') return schema;
      const copy = Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, key === 'properties' ? Object.fromEntries(Object.entries(value as object).map(([name, property]) => [name, closed(property)])) : closed(value)]));
      if (copy.type === 'object' && copy.properties) return { ...copy, additionalProperties: false, required: Object.keys(copy.properties as object) };
      return copy;
    };
    const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
    const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
    const conforms = (method: 'get' | 'post', path: string, status: string, body: unknown) => {
      const schema = closed(doc.paths[path][method].responses[status].content['application/json'].schema) as object;
      assert.ok(ajv.validate(schema, body), `${method} ${path} ${status}: ${ajv.errorsText(ajv.errors)} in ${JSON.stringify(body)}`);
      // (the closed schema does refuse a field it does not name, and one missing)
      assert.equal(ajv.validate(schema, { ...(body as object), undocumented: 1 }), false);
      const { id: _id, ...withoutId } = body as Record<string, unknown>;
      assert.equal(ajv.validate(schema, withoutId), false);
    };
    const sale = (await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: cheese, quantity: 600, unit_price: 999 }, { sku_id: milk, quantity: 3, unit_price: 120 }] })).body;
    conforms('get', '/v1/sales/{id}', '200', (await owner.get(`/v1/sales/${sale.id}`)).body);
    const key = randomUUID();
    const body = { items: [{ sku_id: cheese, quantity: 200 }], reason: 'too much', client_created_at: new Date(Date.now() - 60_000).toISOString() };
    const first = await owner.post(`/v1/sales/${sale.id}/returns`, body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    conforms('post', '/v1/sales/{id}/returns', '201', first.body);
    const replay = await owner.post(`/v1/sales/${sale.id}/returns`, body, { idempotencyKey: key });
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replay.body, first.body);
    conforms('post', '/v1/sales/{id}/returns', '201', replay.body);
    const second = await owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: milk, quantity: 1 }], reason: 'one back' }, { idempotencyKey: randomUUID() });
    conforms('post', '/v1/sales/{id}/returns', '201', second.body);
    const got = (await owner.get(`/v1/sales/${sale.id}`)).body;
    conforms('get', '/v1/sales/{id}', '200', got);
    // GET shows each return as POST answered it, without what only the POST answers
    const shown = (answer: Record<string, unknown>) => Object.fromEntries(Object.entries(answer).filter(([name]) => name !== 'remaining' && name !== 'sale_returned_total'));
    assert.deepEqual(got.returns, [shown(first.body), shown(second.body)]);
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'the rest' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    conforms('post', '/v1/sales/{id}/void', '200', voided.body);
    assert.deepEqual(voided.body.returns, got.returns);
    assert.equal(voided.body.returned_total, first.body.refund_total + second.body.refund_total);
  });

  it('a queued return\'s client_created_at with microseconds or an offset reads the same in the answer, its replay and GET /v1/sales/{id}', async () => {
    const { owner } = await t.newTenant();
    const store = await givenStore(owner, 'U');
    const milk = await givenSku(owner, 'MILK', 'piece', 120);
    await givenStock(owner, store, [{ sku_id: milk, quantity: 10 }]);
    const sale = (await owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: milk, quantity: 5, unit_price: 120 }] })).body;
    const earlier = new Date(Date.now() - 3_600_000);
    const stamps = [
      `${earlier.toISOString().slice(0, 19)}.123999Z`,
      `${new Date(earlier.getTime() + 60_000 + 5 * 3_600_000).toISOString().slice(0, 19)}.999999+05:00`,
    ];
    const answers = [];
    for (const stamp of stamps) {
      const key = randomUUID();
      const body = { items: [{ sku_id: milk, quantity: 1 }], reason: 'queued', client_created_at: stamp };
      const answer = await owner.post(`/v1/sales/${sale.id}/returns`, body, { idempotencyKey: key });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      assert.equal(answer.body.client_created_at, new Date(Date.parse(stamp)).toISOString());
      assert.deepEqual((await owner.post(`/v1/sales/${sale.id}/returns`, body, { idempotencyKey: key })).body, answer.body);
      answers.push(answer.body.client_created_at);
    }
    const got = (await owner.get(`/v1/sales/${sale.id}`)).body;
    assert.deepEqual(
      got.returns.map((entry: { client_created_at: string }) => entry.client_created_at),
      answers,
    );
  });

  it('returns racing adjustments, transfer approvals and new sales of the same SKU in the same store: every request answered, balance = ledger, running totals in order, books clean', async () => {
    const { owner, tenantId } = await t.newTenant();
    const store = await givenStore(owner, 'HOT');
    const other = await givenStore(owner, 'FAR');
    const salt = await givenSku(owner, 'SALT', 'kg', 800);
    await givenStock(owner, store, [{ sku_id: salt, quantity: 100_000 }]);
    const sales = [];
    for (let i = 0; i < 12; i++) {
      const sold = await owner.post('/v1/sales', { store_id: store, payment_method: i % 2 ? 'card' : 'cash', items: [{ sku_id: salt, quantity: 1_000 + i, unit_price: 799 }] });
      assert.equal(sold.status, 201, JSON.stringify(sold.body));
      sales.push(sold.body as { id: string; total: number });
    }
    const transfers = [];
    for (let i = 0; i < 6; i++) {
      const requested = await owner.post('/v1/transfers', { source_store_id: store, destination_store_id: other, items: [{ sku_id: salt, quantity: 500 }] });
      assert.equal(requested.status, 201, JSON.stringify(requested.body));
      transfers.push(requested.body.id as string);
    }
    const [ledgerBefore] = (await t.admin.query(`SELECT coalesce(sum(quantity_change), 0)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2`, [tenantId, store])).rows;
    const answers = await Promise.all([
      // two returns of each sale (333 g and 1 g), at once
      ...sales.flatMap((sale) => [333, 1].map((grams) => owner.post(`/v1/sales/${sale.id}/returns`, { items: [{ sku_id: salt, quantity: grams }], reason: 'back' }, { idempotencyKey: randomUUID() }))),
      ...Array.from({ length: 8 }, (_, i) => owner.post(`/v1/stores/${store}/stock/adjustments`, { sku_id: salt, quantity_change: i % 2 ? -7 : 11, reason: 'count' }, { idempotencyKey: randomUUID() })),
      ...transfers.map((id) => owner.post(`/v1/transfers/${id}/approve`, undefined, { idempotencyKey: randomUUID() })),
      ...Array.from({ length: 8 }, () => owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items: [{ sku_id: salt, quantity: 250, unit_price: 800 }] }, { idempotencyKey: randomUUID() })),
    ]);
    assert.deepEqual(
      answers.filter((answer) => answer.status >= 300).map((answer) => [answer.status, answer.body]),
      [],
    );
    // every movement in the ledger once, the balance its sum, each row's quantity_after its running total in id order
    const expected = 12 * (333 + 1) + 4 * 11 - 4 * 7 - 6 * 500 - 8 * 250;
    const { rows } = await t.admin.query(
      `SELECT (SELECT quantity::int FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS balance,
              (SELECT sum(quantity_change)::int FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) AS ledger,
              (SELECT count(*)::int FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND kind = 'return') AS return_rows,
              (SELECT bool_and(quantity_after = running) FROM (
                 SELECT quantity_after, sum(quantity_change) OVER (ORDER BY id) AS running FROM stock_ledger WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3) r) AS in_order`,
      [tenantId, store, salt],
    );
    assert.deepEqual(rows[0], { balance: ledgerBefore.n + expected, ledger: ledgerBefore.n + expected, return_rows: 24, in_order: true });
    // the refunds: each sale's two returns refund lineTotal(334 g) between them, whatever order they took
    const refunds = await t.admin.query(`SELECT sale_id, sum(refund_total)::int AS refunded FROM sale_returns WHERE tenant_id = $1 GROUP BY sale_id`, [tenantId]);
    assert.equal(refunds.rows.length, 12);
    for (const row of refunds.rows) assert.equal(row.refunded, Math.floor((334 * 799 * 2 + 1000) / 2000), row.sale_id); // 266.866 → 267
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
