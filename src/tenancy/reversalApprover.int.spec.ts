import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import { ApiClient, type ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { balanceAndLedger, givenSku, givenStock, givenStore, saleRowCounts } from '../sales/testkit.js';

/**
 * Four eyes on undoing (tenant setting require_second_approver_for_reversals):
 * with it on, the token whose operation made a sale — sold online or synced
 * from a till — may not void it nor take goods back from it, and the token
 * that made an operation (a payment) may not revert it: 403 forbidden,
 * `reason: second_approver_required`, nothing written, its Idempotency-Key
 * not kept. Another token with the permission may. Off (absent, the default)
 * the maker undoes its own records as before, and the approvals' own
 * require_second_approver neither turns it on nor is changed by it.
 * Real HTTP, then the rows left behind.
 */
describe('require_second_approver_for_reversals: the maker of a sale or operation cannot undo it', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let milk: string;
  let customer: string;
  /** Two managers (sales.void, sales.return, operations.revert), every store. */
  let managerA: ApiClient;
  let managerB: ApiClient;
  let managerAId: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'FE1');
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    await givenStock(owner, storeId, [{ sku_id: milk, quantity: 10_000 }]);
    const issue = async (name: string) => {
      const response = await owner.post('/v1/tokens', { name, role: 'manager' });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      return { client: t.client(response.body.token), id: response.body.id as string };
    };
    const a = await issue('anna');
    const b = await issue('bert');
    managerA = a.client;
    managerAId = a.id;
    managerB = b.client;
    customer = ok(await owner.post('/v1/parties', { kind: 'customer', name: 'Tab Tom' })).body.id;
  });
  after(() => t.close());

  const ok = <T extends ApiResponse>(response: T, status = 201): T => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response;
  };

  const setRule = async (value: boolean | null) => ok(await owner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: value }), 200);

  const sell = async (client: ApiClient, quantity = 3) =>
    ok(await client.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity, unit_price: 120 }] }, { idempotencyKey: randomUUID() })).body;

  const voidOf = (client: ApiClient, saleId: string, key: string | undefined = randomUUID()) =>
    client.post(`/v1/sales/${saleId}/void`, { reason: 'rang up twice' }, key === undefined ? {} : { idempotencyKey: key });

  const returnOf = (client: ApiClient, saleId: string, quantity = 1, key: string | undefined = randomUUID()) =>
    client.post(`/v1/sales/${saleId}/returns`, { items: [{ sku_id: milk, quantity }], reason: 'sour' }, key === undefined ? {} : { idempotencyKey: key });

  const revertOf = (client: ApiClient, opId: string, key: string | undefined = randomUUID()) =>
    client.post(`/v1/operations/${opId}/revert`, undefined, key === undefined ? {} : { idempotencyKey: key });

  function assertSecondApproverRequired(response: ApiResponse): void {
    assert.equal(response.status, 403, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, 'forbidden');
    assert.equal(response.body.reason, 'second_approver_required');
    assert.match(response.body.detail, /require_second_approver_for_reversals/);
  }

  /** Everything a void, a return or a revert writes, for the tenant. */
  async function rows() {
    const money = (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM postings WHERE tenant_id = $1)::int AS postings,
                (SELECT coalesce(sum(balance), 0)::bigint FROM accounts WHERE tenant_id = $1 AND balance > 0) AS debits,
                (SELECT count(*) FROM sale_returns WHERE tenant_id = $1)::int AS returns,
                (SELECT count(*) FROM sales WHERE tenant_id = $1 AND status = 'voided')::int AS voided,
                (SELECT coalesce(sum(returned_total), 0)::bigint FROM sales WHERE tenant_id = $1) AS returned_total,
                (SELECT count(*) FROM operations WHERE tenant_id = $1 AND reverted_by IS NOT NULL)::int AS reverted_ops,
                (SELECT count(*) FROM payments WHERE tenant_id = $1 AND reverted_by_op IS NOT NULL)::int AS reverted_payments`,
        [tenantId],
      )
    ).rows[0];
    return { ...(await saleRowCounts(t, tenantId)), ...money, milk: await balanceAndLedger(t, tenantId, storeId, milk) };
  }

  async function saleRow(saleId: string) {
    return (await t.admin.query(`SELECT status, voided_by_op, returned_total::int AS returned_total FROM sales WHERE id = $1`, [saleId])).rows[0];
  }

  it('GET/PATCH /v1/tenant/settings: the setting is absent by default, set by a merge patch (new ETag), validated, removed by null, and independent of require_second_approver', async () => {
    const { owner: shopOwner, tenantId: shop } = await t.newTenant();
    const fresh = ok(await shopOwner.get('/v1/tenant/settings'), 200);
    assert.deepEqual(fresh.body, {});
    const etag = fresh.headers.get('etag') ?? '';

    const on = ok(await shopOwner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: true }, { headers: { 'if-match': etag } }), 200);
    assert.deepEqual(on.body, { require_second_approver_for_reversals: true });
    assert.notEqual(on.headers.get('etag'), etag);
    const read = ok(await shopOwner.get('/v1/tenant/settings'), 200);
    assert.deepEqual(read.body, { require_second_approver_for_reversals: true });
    assert.equal(read.headers.get('etag'), on.headers.get('etag'));
    // approvals' rule untouched, and setting it leaves this one
    const both = ok(await shopOwner.patch('/v1/tenant/settings', { require_second_approver: false }), 200);
    assert.deepEqual(both.body, { require_second_approver_for_reversals: true, require_second_approver: false });

    // Not a boolean → 400 at its path, nothing changed
    const stored = async () => (await t.admin.query(`SELECT settings, settings_version FROM tenants WHERE id = $1`, [shop])).rows[0];
    const beforeBad = await stored();
    for (const bad of ['yes', 1, {}]) {
      const refused = await shopOwner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: bad });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'validation_failed');
      assert.ok(
        refused.body.errors.some((error: { path: string }) => error.path === '/body/require_second_approver_for_reversals'),
        JSON.stringify(refused.body),
      );
    }
    // A stale If-Match → 412, nothing changed
    const stale = await shopOwner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: false }, { headers: { 'if-match': etag } });
    assert.equal(stale.status, 412, JSON.stringify(stale.body));
    assert.deepEqual(await stored(), beforeBad);

    const removed = ok(await shopOwner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: null }), 200);
    assert.deepEqual(removed.body, { require_second_approver: false });
    assert.deepEqual((await stored()).settings, { require_second_approver: false });
  });

  it('the OpenAPI document names the setting in the settings schemas and the refusal in the 403 of void, return and revert', async () => {
    const doc = ok(await new ApiClient(t.baseUrl, undefined).get('/openapi.json'), 200).body;
    const settings = doc.paths['/v1/tenant/settings'];
    const patchBody = settings.patch.requestBody.content['application/json'].schema;
    assert.match(patchBody.properties.require_second_approver_for_reversals.description, /void/);
    assert.ok(settings.get.responses['200'].content['application/json'].schema.properties.require_second_approver_for_reversals);
    assert.ok(settings.patch.responses['200'].content['application/json'].schema.properties.require_second_approver_for_reversals);
    for (const path of ['/v1/sales/{id}/void', '/v1/sales/{id}/returns', '/v1/operations/{op_id}/revert']) {
      const operation = doc.paths[path].post;
      assert.match(operation.responses['403'].description, /second_approver_required/, path);
      assert.match(operation.summary, /require_second_approver_for_reversals/, path);
    }
  });

  it('void: the manager who sold it gets 403 second_approver_required, nothing written and the key free; another manager voids it; off, the seller voids its own', async () => {
    await setRule(true);
    try {
      const sale = await sell(managerA);
      const before = await rows();
      const key = randomUUID();
      assertSecondApproverRequired(await voidOf(managerA, sale.id, key));
      // again under the same key: refused again, not a stored answer replayed
      assertSecondApproverRequired(await voidOf(managerA, sale.id, key));
      assertSecondApproverRequired(await voidOf(managerA, sale.id, undefined));
      assert.deepEqual(await rows(), before);
      assert.deepEqual(await saleRow(sale.id), { status: 'completed', voided_by_op: null, returned_total: 0 });
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key])).rows[0].n, 0);

      // Another manager, even under the refused call's key (it was not kept): voided once
      const voided = ok(await voidOf(managerB, sale.id, key), 200);
      assert.equal(voided.body.status, 'voided');
      assert.equal(voided.headers.get('idempotent-replayed'), null);
      const after = await rows();
      assert.equal(after.voided, before.voided + 1);
      assert.deepEqual(after.milk, { balance: before.milk.balance + 3, ledger: before.milk.ledger + 3 });
      assert.equal(after.entries, before.entries + 1);

      // The seller of a sale voided since is still refused (not answered the void as a replay)
      assertSecondApproverRequired(await voidOf(managerA, sale.id));
      assert.deepEqual(await rows(), after);
      // …while the other manager's repeat is the usual replay
      const again = ok(await voidOf(managerB, sale.id), 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');

      // The owner (another token) voids a sale the manager made; the manager one the owner made
      ok(await voidOf(owner, (await sell(managerA)).id), 200);
      ok(await voidOf(managerA, (await sell(owner)).id), 200);

      // Refused with the rule on, the same key goes through once it is off
      const later = await sell(managerA);
      const laterKey = randomUUID();
      assertSecondApproverRequired(await voidOf(managerA, later.id, laterKey));
      await setRule(false);
      ok(await voidOf(managerA, later.id, laterKey), 200);
    } finally {
      await setRule(null);
    }
    // Off (absent): the seller voids its own sale
    const own = await sell(managerA);
    const voided = ok(await voidOf(managerA, own.id), 200);
    assert.equal(voided.body.status, 'voided');
  });

  it("return: the manager who sold it gets 403, nothing written (stock, ledger, returned_total, entries, key); another manager takes goods back; off, the seller does", async () => {
    await setRule(true);
    try {
      const sale = await sell(managerA, 5);
      const before = await rows();
      const key = randomUUID();
      assertSecondApproverRequired(await returnOf(managerA, sale.id, 2, key));
      assertSecondApproverRequired(await returnOf(managerA, sale.id, 2, key));
      assert.deepEqual(await rows(), before);
      assert.deepEqual(await saleRow(sale.id), { status: 'completed', voided_by_op: null, returned_total: 0 });

      const taken = ok(await returnOf(managerB, sale.id, 2, key));
      assert.equal(taken.body.refund_total, 240);
      assert.equal(taken.body.sale_returned_total, 240);
      const after = await rows();
      assert.equal(after.returns, before.returns + 1);
      assert.deepEqual(after.milk, { balance: before.milk.balance + 2, ledger: before.milk.ledger + 2 });
      assert.deepEqual(await saleRow(sale.id), { status: 'completed', voided_by_op: null, returned_total: 240 });

      // The seller is refused before anything else is decided: over what is left, or on a voided sale, still 403
      assertSecondApproverRequired(await returnOf(managerA, sale.id, 50));
      ok(await voidOf(managerB, sale.id), 200);
      assertSecondApproverRequired(await returnOf(managerA, sale.id, 1));
      const voidedReturn = await returnOf(managerB, sale.id, 1);
      assert.equal(voidedReturn.status, 409);
      assert.equal(voidedReturn.body.code, 'invalid_transition');
    } finally {
      await setRule(null);
    }
    const own = await sell(managerA, 2);
    const taken = ok(await returnOf(managerA, own.id, 1));
    assert.equal(taken.body.sale_returned_total, 120);
  });

  it('a sale synced from a till (POST /v1/sync/sales) was made by the syncing token: it may not void it nor take goods back from it; another token may', async () => {
    await setRule(true);
    try {
      const synced = ok(
        await managerA.post('/v1/sync/sales', {
          sales: [{ idempotency_key: `till-${randomUUID()}`, store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity: 4, unit_price: 120 }] }],
        }),
        200,
      );
      const result = synced.body.results[0];
      assert.equal(result.status, 201, JSON.stringify(result));
      const sale = result.body;
      assert.equal(sale.source, 'offline');
      const maker = (await t.admin.query(`SELECT actor_token_id FROM operations WHERE id = $1`, [sale.op_id])).rows[0];
      assert.equal(maker.actor_token_id, managerAId);

      const before = await rows();
      assertSecondApproverRequired(await voidOf(managerA, sale.id));
      assertSecondApproverRequired(await returnOf(managerA, sale.id, 1));
      assert.deepEqual(await rows(), before);

      ok(await returnOf(managerB, sale.id, 1));
      const voided = ok(await voidOf(managerB, sale.id), 200);
      assert.equal(voided.body.status, 'voided');
      assert.deepEqual(await saleRow(sale.id), { status: 'voided', voided_by_op: voided.body.voided_by_op, returned_total: 120 });
    } finally {
      await setRule(null);
    }
  });

  it('no other way round: a synced item cannot carry a void, and a sale is not reverted (the maker 403 first, another token 422); nothing written', async () => {
    await setRule(true);
    try {
      const sale = await sell(managerA, 2);
      const before = await rows();
      const synced = ok(
        await managerA.post('/v1/sync/sales', {
          sales: [{ idempotency_key: `till-${randomUUID()}`, store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity: 2, unit_price: 120 }], void_of: sale.id, status: 'voided' }],
        }),
        200,
      );
      assert.equal(synced.body.results[0].status, 400, JSON.stringify(synced.body.results[0]));
      assertSecondApproverRequired(await revertOf(managerA, sale.op_id));
      const other = await revertOf(managerB, sale.op_id);
      assert.equal(other.status, 422, JSON.stringify(other.body));
      assert.equal(other.body.code, 'unprocessable');
      assert.deepEqual(await rows(), before);
      assert.deepEqual(await saleRow(sale.id), { status: 'completed', voided_by_op: null, returned_total: 0 });
    } finally {
      await setRule(null);
    }
  });

  it('revert: the manager who recorded a payment gets 403, nothing written (entries, payment, operation, key); another manager reverts it; off, the maker does', async () => {
    const pay = async (client: ApiClient, amount: number) =>
      ok(await client.post('/v1/payments', { party_id: customer, store_id: storeId, method: 'cash', amount }, { idempotencyKey: randomUUID() })).body;
    await setRule(true);
    try {
      const payment = await pay(managerA, 500);
      const before = await rows();
      const key = randomUUID();
      assertSecondApproverRequired(await revertOf(managerA, payment.op_id, key));
      assertSecondApproverRequired(await revertOf(managerA, payment.op_id, key));
      assert.deepEqual(await rows(), before);
      assert.equal((await t.admin.query(`SELECT reverted_by FROM operations WHERE id = $1`, [payment.op_id])).rows[0].reverted_by, null);

      const reverted = ok(await revertOf(managerB, payment.op_id, key), 200);
      assert.equal(reverted.body.reverted_op_id, payment.op_id);
      assert.equal(reverted.headers.get('idempotent-replayed'), null);
      const after = await rows();
      assert.equal(after.reverted_payments, before.reverted_payments + 1);
      assert.equal(after.entries, before.entries + 1);

      // The maker of an operation reverted since is still refused, not answered the revert
      assertSecondApproverRequired(await revertOf(managerA, payment.op_id));
      assert.deepEqual(await rows(), after);
      // The approvals' rule alone does not hold reverts
      ok(await owner.patch('/v1/tenant/settings', { require_second_approver: true, require_second_approver_for_reversals: false }), 200);
      const alone = await pay(managerA, 70);
      ok(await revertOf(managerA, alone.op_id), 200);
    } finally {
      ok(await owner.patch('/v1/tenant/settings', { require_second_approver: null, require_second_approver_for_reversals: null }), 200);
    }
    const own = await pay(managerA, 80);
    ok(await revertOf(managerA, own.op_id), 200);
  });

  it("concurrent voids of one sale by its seller and another manager, among other sales of the lane: only the other's void happens, once; the seller's are 403; the rows agree", async () => {
    await setRule(true);
    try {
      const sale = await sell(managerA, 7);
      const before = await rows();
      const calls = [
        ...Array.from({ length: 6 }, () => ({ who: 'seller', call: () => voidOf(managerA, sale.id) })),
        ...Array.from({ length: 6 }, () => ({ who: 'other', call: () => voidOf(managerB, sale.id) })),
        // sales and a return of another sale in the same lane go on meanwhile
        ...Array.from({ length: 6 }, () => ({ who: 'sale', call: () => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: milk, quantity: 1, unit_price: 120 }] }, { idempotencyKey: randomUUID() }) })),
      ];
      // interleaved, all at once
      calls.sort(() => Math.random() - 0.5);
      const answers = await Promise.all(calls.map(async ({ who, call }) => ({ who, response: await call() })));

      for (const { response } of answers.filter((answer) => answer.who === 'seller')) assertSecondApproverRequired(response);
      const other = answers.filter((answer) => answer.who === 'other').map((answer) => answer.response);
      for (const response of other) assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(other.filter((response) => response.headers.get('idempotent-replayed') === null).length, 1, 'voided exactly once');
      const voidOps = new Set(other.map((response) => response.body.voided_by_op));
      assert.equal(voidOps.size, 1);
      for (const { response } of answers.filter((answer) => answer.who === 'sale')) assert.equal(response.status, 201, JSON.stringify(response.body));

      const [voidOp] = [...voidOps];
      assert.deepEqual(await saleRow(sale.id), { status: 'voided', voided_by_op: voidOp, returned_total: 0 });
      const maker = (await t.admin.query(`SELECT type, actor_token_id FROM operations WHERE tenant_id = $1 AND id = $2`, [tenantId, voidOp])).rows[0];
      assert.equal(maker.type, 'sale.void');
      assert.notEqual(maker.actor_token_id, managerAId);
      const after = await rows();
      // stock: the void's 7 back, the six sales' 6 out; balance = ledger
      assert.deepEqual(after.milk, { balance: before.milk.balance + 7 - 6, ledger: before.milk.ledger + 7 - 6 });
      assert.equal(after.voided, before.voided + 1);
      assert.equal(after.sales, (before.sales as number) + 6);
      const voidRows = (await t.admin.query(`SELECT count(*)::int AS n, sum(quantity_change)::int AS q FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [tenantId, voidOp])).rows[0];
      assert.deepEqual(voidRows, { n: 1, q: 7 });
      const voidEntries = (await t.admin.query(`SELECT count(*)::int AS n FROM journal_entries WHERE tenant_id = $1 AND kind = 'sale_void' AND subject_id = $2`, [tenantId, sale.id])).rows[0];
      assert.equal(voidEntries.n, 1);
      // the refused and replayed voids left no operation of their own
      assert.equal(after.operations, (before.operations as number) + 1 + 6);
      assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM stock_ledger WHERE tenant_id = $1 AND kind = 'void' AND reason = $2`, [tenantId, `void of sale ${sale.id}`])).rows[0].n, 1);
      assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    } finally {
      await setRule(null);
    }
  });

  it('concurrent returns of one sale by its seller and another manager: the seller\'s are all 403, the other\'s take back exactly what was sold, the rows agree', async () => {
    await setRule(true);
    try {
      const sale = await sell(managerA, 3);
      const before = await rows();
      const calls = [
        ...Array.from({ length: 5 }, () => ({ who: 'seller', call: () => returnOf(managerA, sale.id, 1) })),
        ...Array.from({ length: 5 }, () => ({ who: 'other', call: () => returnOf(managerB, sale.id, 1) })),
      ].sort(() => Math.random() - 0.5);
      const answers = await Promise.all(calls.map(async ({ who, call }) => ({ who, response: await call() })));
      for (const { response } of answers.filter((answer) => answer.who === 'seller')) assertSecondApproverRequired(response);
      const other = answers.filter((answer) => answer.who === 'other').map((answer) => answer.response);
      assert.deepEqual(other.map((response) => response.status).sort(), [201, 201, 201, 409, 409]);
      for (const response of other.filter((r) => r.status === 409)) assert.equal(response.body.code, 'return_exceeds_sale');

      const after = await rows();
      assert.equal(after.returns, before.returns + 3);
      assert.deepEqual(after.milk, { balance: before.milk.balance + 3, ledger: before.milk.ledger + 3 });
      assert.deepEqual(await saleRow(sale.id), { status: 'completed', voided_by_op: null, returned_total: 360 });
      const makers = (
        await t.admin.query(`SELECT DISTINCT o.actor_token_id FROM sale_returns r JOIN operations o ON o.tenant_id = r.tenant_id AND o.id = r.op_id WHERE r.sale_id = $1`, [sale.id])
      ).rows.map((row) => row.actor_token_id);
      assert.equal(makers.length, 1);
      assert.notEqual(makers[0], managerAId);
      assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    } finally {
      await setRule(null);
    }
  });
});
