import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { asAppInTenant } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';

/**
 * A payment recorded wrongly (500 typed for 50, the wrong customer, the
 * wrong method) could only be offset by a payment the other way: a refund in
 * the books and in the day's drawer figures (payments_out). Now its operation
 * is reverted (POST /v1/operations/{op_id}/revert): a `payment_revert` entry
 * moves exactly its postings back, dated like every store entry (never on a
 * counted day), the payment is marked `reverted_by_op` once, nothing of the
 * original is changed or deleted. Real HTTP, then the rows left behind.
 */
describe('reverting a payment', () => {
  let t: TestApp;
  let today: string;
  let tomorrow: string;
  let yesterday: string;

  before(async () => {
    t = await startTestApp();
    ({ today, tomorrow, yesterday } = (
      await t.admin.query(
        `SELECT to_char(d, 'YYYY-MM-DD') AS today, to_char(d + 1, 'YYYY-MM-DD') AS tomorrow, to_char(d - 1, 'YYYY-MM-DD') AS yesterday
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) x`,
      )
    ).rows[0]);
  });
  after(() => t.close());

  const ok = <T extends ApiResponse>(response: T, status = 201): T => {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response;
  };

  async function shop(code = 'REV') {
    const { owner, tenantId } = await t.newTenant();
    const store = ok(await owner.post('/v1/stores', { code, name: 'Revert shop' })).body.id as string;
    const customer = ok(await owner.post('/v1/parties', { kind: 'customer', name: 'Tab Tom' })).body.id as string;
    const supplier = ok(await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' })).body.id as string;
    const pay = async (body: Record<string, unknown>) =>
      ok(await owner.post('/v1/payments', { party_id: customer, store_id: store, method: 'cash', ...body }, { idempotencyKey: randomUUID() })).body;
    const revert = (opId: string, client: ApiClient = owner, key: string | undefined = randomUUID()) =>
      client.post(`/v1/operations/${opId}/revert`, undefined, key === undefined ? {} : { idempotencyKey: key });
    return { owner, tenantId, store, customer, supplier, pay, revert };
  }

  /** Every posting of a tenant's entries, with its entry, for before/after comparisons. */
  async function postingsOf(tenantId: string) {
    return (
      await t.admin.query(
        `SELECT e.id AS entry_id, e.kind, e.subject_id, e.business_date::text AS day, e.op_id, a.key, p.id, p.amount::bigint::int AS amount
         FROM journal_entries e JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
         WHERE e.tenant_id = $1 ORDER BY p.id`,
        [tenantId],
      )
    ).rows;
  }

  async function balances(tenantId: string): Promise<Record<string, number>> {
    const { rows } = await t.admin.query(`SELECT key, balance::bigint::int AS balance FROM accounts WHERE tenant_id = $1 AND balance <> 0 ORDER BY key`, [tenantId]);
    return Object.fromEntries(rows.map((row) => [row.key, row.balance]));
  }

  it('a cash payment in of 500 typed for 50 is reverted: one payment_revert entry moves 500 back between the drawer and the customer, today; the payment shows it; the original rows are untouched', async () => {
    const { owner, tenantId, store, customer, pay, revert } = await shop();
    const wrong = await pay({ amount: 500 });
    const right = await pay({ amount: 50 });
    const before = await postingsOf(tenantId);

    const reverted = ok(await revert(wrong.op_id), 200);
    assert.equal(reverted.headers.get('idempotent-replayed'), null);
    assert.equal(reverted.body.reverted_op_id, wrong.op_id);
    assert.equal(reverted.body.reverted_type, 'payment.create');
    const revertOp = reverted.body.op_id as string;
    const paymentChange = reverted.body.changes.find((change: { type: string }) => change.type === 'payment.reverted');
    assert.ok(paymentChange, JSON.stringify(reverted.body.changes));
    assert.equal(paymentChange.subject_type, 'payment');
    assert.equal(paymentChange.subject_id, wrong.id);
    assert.equal(paymentChange.before.reverted_by_op, null);
    assert.equal(paymentChange.after.reverted_by_op, revertOp);
    assert.ok(reverted.body.changes.some((change: { type: string; subject_id: string }) => change.type === 'operation.reverted' && change.subject_id === wrong.op_id));

    // The payment says it was reverted, by which operation, when, and where the reversal is booked.
    const got = ok(await owner.get(`/v1/payments/${wrong.id}`), 200).body;
    assert.equal(got.reverted_by_op, revertOp);
    assert.ok(!Number.isNaN(Date.parse(got.reverted_at)));
    assert.equal(got.revert_business_date, today);
    assert.equal(got.amount, 500);
    assert.equal(got.entry_id, wrong.entry_id);
    const untouched = ok(await owner.get(`/v1/payments/${right.id}`), 200).body;
    assert.equal(untouched.reverted_by_op, null);
    assert.equal(untouched.reverted_at, null);
    assert.equal(untouched.revert_business_date, null);

    // Exactly one new entry: the negation of the payment's postings, the payment its subject, dated today.
    const after = await postingsOf(tenantId);
    assert.deepEqual(after.slice(0, before.length), before, 'nothing of the earlier entries changed');
    const added = after.slice(before.length);
    assert.deepEqual(
      added.map(({ kind, subject_id, day, op_id, key, amount }) => ({ kind, subject_id, day, op_id, key, amount })).sort((a, b) => (a.key < b.key ? -1 : 1)),
      [
        { kind: 'payment_revert', subject_id: wrong.id, day: today, op_id: revertOp, key: `party/${customer}`, amount: 500 },
        { kind: 'payment_revert', subject_id: wrong.id, day: today, op_id: revertOp, key: `store/${store}/cash_drawer`, amount: -500 },
      ],
    );
    assert.deepEqual(await balances(tenantId), { [`party/${customer}`]: -50, [`store/${store}/cash_drawer`]: 50 });
    const ledger = ok(await owner.get(`/v1/ledger/operations/${revertOp}`), 200).body.items;
    assert.deepEqual(
      ledger.map((entry: { kind: string; subject_type: string; subject_id: string; business_date: string }) => [entry.kind, entry.subject_type, entry.subject_id, entry.business_date]),
      [['payment_revert', 'payment', wrong.id, today]],
    );

    // The operations: the payment's names its revert; the revert lists what it wrote.
    assert.equal(ok(await owner.get(`/v1/operations/${wrong.op_id}`), 200).body.reverted_by, revertOp);
    const operation = ok(await owner.get(`/v1/operations/${revertOp}`), 200).body;
    assert.equal(operation.type, 'operation.revert');
    assert.equal(operation.store_id, store);
    assert.deepEqual(
      operation.effects.map((effect: { table: string; id: string; action: string }) => `${effect.table}:${effect.action}`).sort(),
      // its entry, its two postings and the two accounts they moved (the drawer, the customer's)
      ['accounts:updated', 'accounts:updated', 'journal_entries:created', 'operations:updated', 'payments:updated', 'postings:created', 'postings:created'],
    );
    assert.ok(operation.effects.some((effect: { table: string; id: string }) => effect.table === 'journal_entries' && effect.id === ledger[0].id));
    const { rows: moved } = await t.admin.query(
      `SELECT p.id::text AS posting, p.account_id FROM postings p WHERE p.tenant_id = $1 AND p.entry_id = $2 ORDER BY p.id`,
      [tenantId, ledger[0].id],
    );
    assert.deepEqual(
      operation.effects.filter((effect: { table: string }) => effect.table === 'postings').map((effect: { id: string }) => effect.id).sort(),
      moved.map((row: { posting: string }) => row.posting).sort(),
    );
    assert.deepEqual(
      operation.effects.filter((effect: { table: string }) => effect.table === 'accounts').map((effect: { id: string }) => effect.id).sort(),
      moved.map((row: { account_id: string }) => row.account_id).sort(),
    );
    assert.ok(operation.effects.some((effect: { table: string; id: string }) => effect.table === 'payments' && effect.id === wrong.id));

    // The day's count: the reversal is "other" cash, not a refund; the drawer expects what was really paid.
    const count = ok(await owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 50 }));
    assert.deepEqual(
      [count.body.payments_in, count.body.payments_out, count.body.other_cash, count.body.expected_cash, count.body.variance],
      [550, 0, -500, 50, 0],
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('reverting again replays the first revert — the same key, another key, no key — and writes nothing', async () => {
    const { tenantId, pay, revert } = await shop();
    const payment = await pay({ amount: 120, method: 'card' });
    const key = randomUUID();
    const first = ok(await revert(payment.op_id, undefined, key), 200);
    const rows = await postingsOf(tenantId);
    for (const again of [await revert(payment.op_id, undefined, key), await revert(payment.op_id), await revert(payment.op_id, undefined, undefined)]) {
      ok(again, 200);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(again.body, first.body);
    }
    assert.deepEqual(await postingsOf(tenantId), rows);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM operations WHERE tenant_id = $1 AND type = 'operation.revert'`, [tenantId])).rows[0].n, 1);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('twelve reverts of one payment at once (real concurrent requests) write exactly one reversal', async () => {
    const { owner, tenantId, store, customer, supplier, pay, revert } = await shop();
    const payment = await pay({ amount: 777 });
    const other = await pay({ amount: 300, party_id: supplier, method: 'bank' });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => revert(payment.op_id, owner, i % 3 === 0 ? undefined : randomUUID())));
    for (const answer of answers) ok(answer, 200);
    const opIds = new Set(answers.map((answer) => answer.body.op_id));
    assert.equal(opIds.size, 1, 'every answer names the one revert');
    assert.equal(answers.filter((answer) => answer.headers.get('idempotent-replayed') === null).length, 1, 'one did it, the others were answered as already done');
    const [revertOp] = [...opIds];

    const entries = (await t.admin.query(`SELECT id, op_id FROM journal_entries WHERE tenant_id = $1 AND kind = 'payment_revert'`, [tenantId])).rows;
    assert.deepEqual(entries.map((entry) => entry.op_id), [revertOp]);
    assert.equal((await t.admin.query(`SELECT count(*)::int AS n FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [tenantId, entries[0].id])).rows[0].n, 2);
    const marked = (await t.admin.query(`SELECT id, reverted_by_op FROM payments WHERE tenant_id = $1 ORDER BY created_at`, [tenantId])).rows;
    assert.deepEqual(marked, [
      { id: payment.id, reverted_by_op: revertOp },
      { id: other.id, reverted_by_op: null },
    ]);
    assert.deepEqual(
      (await t.admin.query(`SELECT type, reverted_by FROM operations WHERE tenant_id = $1 AND type IN ('payment.create', 'operation.revert') ORDER BY created_at`, [tenantId])).rows,
      [
        { type: 'payment.create', reverted_by: revertOp },
        { type: 'payment.create', reverted_by: null },
        { type: 'operation.revert', reverted_by: null },
      ],
    );
    // Balances are the sums of their postings, and the reverted payment moved nothing in the end.
    const sums = (
      await t.admin.query(
        `SELECT a.key, a.balance::bigint::int AS balance, coalesce(sum(p.amount), 0)::bigint::int AS postings
         FROM accounts a LEFT JOIN postings p ON p.tenant_id = a.tenant_id AND p.account_id = a.id
         WHERE a.tenant_id = $1 GROUP BY a.key, a.balance`,
        [tenantId],
      )
    ).rows;
    for (const row of sums) assert.equal(row.balance, row.postings, row.key);
    assert.deepEqual(await balances(tenantId), { [`party/${supplier}`]: 300, [`store/${store}/bank`]: -300 });
    assert.equal(sums.find((row) => row.key === `party/${customer}`)?.balance, 0);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it("a revert racing the count of the payment's day: the count is exactly its day's ledger, the reversal in it or on the next day", async () => {
    const { owner, tenantId, store, pay, revert } = await shop();
    const payment = await pay({ amount: 400 });
    const [reverted, counted] = await Promise.all([
      revert(payment.op_id),
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 2));
        return owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 }, { idempotencyKey: randomUUID() });
      })(),
    ]);
    ok(reverted, 200);
    ok(counted);
    const day = ok(await owner.get(`/v1/payments/${payment.id}`), 200).body.revert_business_date;
    if (day === today) assert.deepEqual([counted.body.payments_in, counted.body.other_cash, counted.body.expected_cash], [400, -400, 0]);
    else {
      assert.equal(day, tomorrow);
      assert.deepEqual([counted.body.payments_in, counted.body.other_cash, counted.body.expected_cash], [400, 0, 400]);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('reverts of many payments racing their day\'s count, store by store: every count matches the ledger (settlement_matches_ledger), no reversal on a counted day', async () => {
    const { owner, tenantId, customer, supplier } = await shop();
    const stores: string[] = [];
    for (let i = 0; i < 4; i += 1) stores.push(ok(await owner.post('/v1/stores', { code: `R${i}`, name: `Race ${i}` })).body.id);
    const payments: Array<{ op_id: string; store_id: string }> = [];
    for (const store of stores) {
      for (let i = 0; i < 5; i += 1) {
        payments.push(
          ok(await owner.post('/v1/payments', { party_id: i % 2 ? supplier : customer, store_id: store, method: 'cash', amount: 100 + i }, { idempotencyKey: randomUUID() })).body,
        );
      }
    }
    const answers = await Promise.all([
      ...payments.map((payment) => owner.post(`/v1/operations/${payment.op_id}/revert`, undefined, { idempotencyKey: randomUUID() })),
      ...stores.map((store) => owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 0 }, { idempotencyKey: randomUUID() })),
    ]);
    for (const answer of answers) assert.ok(answer.status === 200 || answer.status === 201, JSON.stringify(answer.body));
    const misplaced = (
      await t.admin.query(
        `SELECT e.id FROM journal_entries e JOIN settlements s ON s.tenant_id = e.tenant_id AND s.store_id = e.store_id AND s.business_date = e.business_date
         WHERE e.tenant_id = $1 AND e.kind = 'payment_revert' AND e.created_at > s.created_at`,
        [tenantId],
      )
    ).rows;
    assert.deepEqual(misplaced, []);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('money never lands on a counted day: a payment of a counted day reverted after the count is reversed on the next day; the count keeps its figures', async () => {
    const { owner, tenantId, store, supplier, pay, revert } = await shop();
    // A supplier paid from the drawer yesterday (queued offline), yesterday counted, then the payment found wrong.
    const queued = await pay({ amount: 90, party_id: supplier, client_created_at: `${yesterday}T15:00:00Z` });
    assert.equal(queued.business_date, yesterday);
    const counted = ok(await owner.post('/v1/settlements', { store_id: store, business_date: yesterday, declared_cash: 0 }));
    assert.deepEqual([counted.body.payments_out, counted.body.expected_cash], [90, -90]);
    ok(await revert(queued.op_id), 200);
    assert.equal(ok(await owner.get(`/v1/payments/${queued.id}`), 200).body.revert_business_date, today);
    // Today counted, then a payment recorded (booked tomorrow) and reverted: tomorrow too.
    ok(await owner.post('/v1/settlements', { store_id: store, business_date: today, declared_cash: 90 }));
    const late = await pay({ amount: 33 });
    assert.equal(late.business_date, tomorrow);
    ok(await revert(late.op_id), 200);
    assert.equal(ok(await owner.get(`/v1/payments/${late.id}`), 200).body.revert_business_date, tomorrow);
    const todayCount = ok(await owner.get(`/v1/settlements?store_id=${store}&business_date=${today}`), 200).body.items[0];
    assert.deepEqual([todayCount.other_cash, todayCount.expected_cash], [90, 90]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('who may revert: a cashier is refused (403), a token of another store gets 404 as for a made-up operation, and nothing is written', async () => {
    const { owner, tenantId, store, pay, revert } = await shop();
    const elsewhere = ok(await owner.post('/v1/stores', { code: 'OTHER', name: 'Other' })).body.id;
    const payment = await pay({ amount: 60 });
    const token = async (role: string, storeIds?: string[]) =>
      t.client(ok(await owner.post('/v1/tokens', { name: `${role}-${randomUUID().slice(0, 6)}`, role, ...(storeIds ? { store_ids: storeIds } : {}) })).body.token);
    const cashier = await token('cashier', [store]);
    const otherManager = await token('manager', [elsewhere]);
    const rows = await postingsOf(tenantId);

    const refused = await revert(payment.op_id, cashier);
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    const hidden = await revert(payment.op_id, otherManager);
    const madeUp = await revert(randomUUID(), otherManager);
    assert.equal(hidden.status, 404, JSON.stringify(hidden.body));
    assert.equal(madeUp.status, 404);
    assert.deepEqual(
      [hidden.body.code, hidden.body.title, hidden.body.detail],
      [madeUp.body.code, madeUp.body.title, madeUp.body.detail],
    );
    assert.equal((await otherManager.get(`/v1/payments/${payment.id}`)).status, 404);
    assert.deepEqual(await postingsOf(tenantId), rows);
    assert.equal((await t.admin.query(`SELECT reverted_by_op FROM payments WHERE id = $1`, [payment.id])).rows[0].reverted_by_op, null);

    // The store's own manager may.
    const manager = await token('manager', [store]);
    ok(await revert(payment.op_id, manager), 200);
  });

  it('the database keeps a payment as recorded: the app role may only mark it reverted, once, with its time; never delete it', async () => {
    const { tenantId, pay, revert } = await shop();
    const payment = await pay({ amount: 70 });
    const reverted = await pay({ amount: 80 });
    const revertOp = ok(await revert(reverted.op_id), 200).body.op_id;
    const asApp = (statement: string, values: unknown[]) => asAppInTenant(t.appPool, tenantId, [[statement, values]]);
    await assert.rejects(asApp(`UPDATE payments SET amount = 7 WHERE id = $1`, [payment.id]), /permission denied|immutable/);
    await assert.rejects(asApp(`DELETE FROM payments WHERE id = $1`, [payment.id]), /permission denied|append-only/);
    await assert.rejects(asApp(`UPDATE payments SET reverted_by_op = $2 WHERE id = $1`, [payment.id, revertOp]), /reverted/);
    await assert.rejects(asApp(`UPDATE payments SET reverted_by_op = NULL, reverted_at = NULL WHERE id = $1`, [reverted.id]), /reverted/);
    await assert.rejects(asApp(`UPDATE payments SET reverted_at = now() + interval '1 day' WHERE id = $1`, [reverted.id]), /reverted/);
    // Even the owner (triggers on) cannot change a payment's recorded fields.
    await assert.rejects(t.admin.query(`UPDATE payments SET amount = 7 WHERE id = $1`, [payment.id]), /immutable|reverted/);
    await assert.rejects(t.admin.query(`DELETE FROM payments WHERE id = $1`, [payment.id]), /append-only|never deleted/);
  });

  it('a reversal that would take an account total past its limit is refused 422 limit_exceeded (declared), and nothing is written', async () => {
    const { tenantId, store, supplier, pay, revert } = await shop();
    const payment = await pay({ amount: 500 });
    await pay({ amount: 500, party_id: supplier });
    // The drawer (at 0: 500 in, 500 out) with its totals near their limit (9 × 10^15): a shop that has moved that much cash.
    await t.admin.query(
      `UPDATE accounts SET debit_total = 9000000000000000 - 100, credit_total = 9000000000000000 - 100 WHERE tenant_id = $1 AND key = $2 AND balance = 0`,
      [tenantId, `store/${store}/cash_drawer`],
    );
    const rows = await postingsOf(tenantId);
    const refused = await revert(payment.op_id);
    assert.equal(refused.status, 422, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'limit_exceeded');
    assert.deepEqual(await postingsOf(tenantId), rows);
    assert.deepEqual((await t.admin.query(`SELECT reverted_by_op, reverted_at FROM payments WHERE id = $1`, [payment.id])).rows, [{ reverted_by_op: null, reverted_at: null }]);
    assert.equal((await t.admin.query(`SELECT reverted_by FROM operations WHERE tenant_id = $1 AND id = $2`, [tenantId, payment.op_id])).rows[0].reverted_by, null);
  });

  it('a payment out by card to a supplier and a payment in by mobile are reverted between their own accounts', async () => {
    const { tenantId, store, customer, supplier, pay, revert } = await shop();
    const out = await pay({ amount: 250, party_id: supplier, method: 'card' });
    const refund = await pay({ amount: 40, party_id: customer, method: 'mobile', direction: 'out' });
    ok(await revert(out.op_id), 200);
    ok(await revert(refund.op_id), 200);
    const reversals = (await postingsOf(tenantId)).filter((row) => row.kind === 'payment_revert');
    assert.deepEqual(
      reversals.map(({ subject_id, key, amount }) => `${subject_id === out.id ? 'out' : 'refund'} ${key} ${amount}`).sort(),
      [`out party/${supplier} -250`, `out store/${store}/card_clearing 250`, `refund party/${customer} -40`, `refund store/${store}/mobile_clearing 40`].sort(),
    );
    assert.deepEqual(await balances(tenantId), {});
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
