import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { inOneTransaction, withTriggersOff, type Statements } from '../../test/support/database.js';
import { integrityFindings } from '../../test/support/integrity.js';

/** The shop both suites write into: its tenant, its store and a customer. */
interface Shop {
  tenantId: string;
  store: string;
  customer: string;
}

/**
 * A balanced entry of `kind` naming the payment `subjectId`, under `opId`:
 * `toDrawer` into the store's drawer, its negation to the customer's account,
 * both accounts' totals kept equal to their postings (its statements, to run
 * as the database owner).
 */
function entryStatements(shop: Shop, kind: string, subjectId: string, opId: string, toDrawer: number): { id: string; statements: Statements } {
  const id = randomUUID();
  return {
    id,
    statements: [
      [
        `INSERT INTO journal_entries (tenant_id, id, kind, store_id, subject_type, subject_id, op_id) VALUES ($1, $2, $6, $3, 'payment', $4, $5)`,
        [shop.tenantId, id, shop.store, subjectId, opId, kind],
      ],
      // Both postings in one statement (the database checks each statement's entries balance).
      [
        `WITH lines (key, amount) AS (VALUES ('store/' || $3::text || '/cash_drawer', $5::bigint), ('party/' || $4::text, -$5::bigint)),
              moved AS (UPDATE accounts a SET balance = a.balance + l.amount, debit_total = a.debit_total + greatest(l.amount, 0),
                                              credit_total = a.credit_total + greatest(-l.amount, 0)
                        FROM lines l WHERE a.tenant_id = $1 AND a.key = l.key RETURNING a.id, l.amount)
         INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) SELECT $1, $2, moved.id, moved.amount, $6 FROM moved`,
        [shop.tenantId, id, shop.store, shop.customer, toDrawer, opId],
      ],
    ],
  };
}

/** A cash payment in of `amount` from the shop's customer, through the API. */
async function payCash(owner: ApiClient, shop: Shop, amount: number): Promise<{ id: string; op_id: string; entry_id: string }> {
  const response = await owner.post('/v1/payments', { party_id: shop.customer, store_id: shop.store, method: 'cash', amount }, { idempotencyKey: randomUUID() });
  assert.equal(response.status, 201, JSON.stringify(response.body));
  return response.body;
}

/**
 * The ledger's payment entries against the payments: money_payment_has_entry
 * looked from each payment at the entry it names only. A second `payment`
 * entry for a payment (the drawer and the customer's tab moved twice: the
 * day's count then expects cash that never came in), or a `payment` entry
 * whose payment is not there, balanced and with every account equal to its
 * postings, passed every check.
 */
describe('payment entries without their payment, or more than one for a payment', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let customer: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'PE', name: 'Payment entries' })).body.id;
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Cleo' })).body.id;
  });
  after(() => t.close());

  /**
   * Writes, as the database owner (no trigger switched off: the database
   * accepts it), a balanced `payment` entry for `subjectId` under `opId`:
   * `amount` into the store's drawer, out of the customer's account, with
   * both accounts' totals kept equal to their postings.
   */
  async function postPaymentEntry(subjectId: string, opId: string, amount: number): Promise<string> {
    const entry = entryStatements({ tenantId, store, customer }, 'payment', subjectId, opId, amount);
    await inOneTransaction(t.admin, entry.statements);
    return entry.id;
  }
  const pay = (amount: number) => payCash(owner, { tenantId, store, customer }, amount);

  it('a payment whose money is posted twice (a second payment entry naming it) is reported, and only by money_payment_has_entry', async () => {
    const payment = await pay(700);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    const second = await postPaymentEntry(payment.id, payment.op_id, 700);
    const findings = await integrityFindings(t.admin, tenantId);
    assert.deepEqual(
      findings.map((finding) => [finding.check, finding.subject]),
      [['money_payment_has_entry', payment.id]],
    );
    assert.deepEqual((findings[0]!.detail as { payment_entries: unknown }).payment_entries, [payment.entry_id, second].sort());
  });

  it('a payment entry whose payment does not exist is reported by money_payment_has_entry, naming the entry', async () => {
    const payment = await pay(40);
    const before = (await integrityFindings(t.admin, tenantId)).map((finding) => finding.subject);
    const ghost = randomUUID();
    const entry = await postPaymentEntry(ghost, payment.op_id, 40);
    const found = (await integrityFindings(t.admin, tenantId)).filter((finding) => !before.includes(finding.subject));
    assert.deepEqual(
      found.map((finding) => [finding.check, finding.subject, finding.detail]),
      [['money_payment_has_entry', ghost, { payment_id: ghost, payment_exists: false, payment_entries: [entry] }]],
    );
  });
});

/**
 * A reverted payment (POST /v1/operations/{op_id}/revert of its operation):
 * its `payment` entry plus exactly one `payment_revert` entry, written by the
 * revert's operation for the payment's store, netting it to zero on both
 * accounts, and the payment marked `reverted_by_op` as its operation is
 * `reverted_by`. Each corruption below leaves every entry balanced and every
 * account equal to its postings; money_payment_has_entry, and only it, must
 * report it.
 */
describe('reversing entries of reverted payments', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: string;
  let customer: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'PR', name: 'Payment reverts' })).body.id;
    customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Cleo' })).body.id;
  });
  after(() => t.close());

  /** Runs statements as the owner with triggers and foreign keys off (a bug or a hand edit). */
  const corrupt = (statements: Statements) => withTriggersOff(t.admin, statements);
  const postEntry = (kind: string, subjectId: string, opId: string, toDrawer: number) => entryStatements({ tenantId, store, customer }, kind, subjectId, opId, toDrawer);

  /** Removes an entry and its postings, keeping every account's totals equal to its remaining postings. */
  function unpost(entryId: string): Statements {
    return [
      [
        `WITH gone AS (DELETE FROM postings WHERE tenant_id = $1 AND entry_id = $2 RETURNING account_id, amount)
         UPDATE accounts a SET balance = a.balance - g.amount, debit_total = a.debit_total - g.debits, credit_total = a.credit_total - g.credits
         FROM (SELECT account_id, sum(amount) AS amount, coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS debits,
                      coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS credits FROM gone GROUP BY account_id) g
         WHERE a.tenant_id = $1 AND a.id = g.account_id`,
        [tenantId, entryId],
      ],
      [`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [tenantId, entryId]],
    ];
  }

  const pay = (amount: number) => payCash(owner, { tenantId, store, customer }, amount);

  /** A cash payment in of `amount`, reverted through the API; its revert's op id and reversing entry. */
  async function payAndRevert(amount: number): Promise<{ id: string; op_id: string; entry_id: string; revertOp: string; revertEntry: string }> {
    const payment = await pay(amount);
    const reverted = await owner.post(`/v1/operations/${payment.op_id}/revert`, undefined, { idempotencyKey: randomUUID() });
    assert.equal(reverted.status, 200, JSON.stringify(reverted.body));
    const entry = (await t.admin.query(`SELECT id FROM journal_entries WHERE tenant_id = $1 AND kind = 'payment_revert' AND subject_id = $2`, [tenantId, payment.id])).rows;
    assert.equal(entry.length, 1);
    return { ...payment, revertOp: reverted.body.op_id, revertEntry: entry[0].id };
  }

  /** The findings that were not there before `change`, as [check, subject]. */
  async function newFindings(change: () => Promise<void>): Promise<Array<[string, string]>> {
    const before = (await integrityFindings(t.admin, tenantId)).map((finding) => `${finding.check}/${finding.subject}`);
    await change();
    return (await integrityFindings(t.admin, tenantId))
      .filter((finding) => !before.includes(`${finding.check}/${finding.subject}`))
      .map((finding) => [finding.check, finding.subject]);
  }

  it('a reverted payment (its entry and one reversal netting it to zero) is not reported', async () => {
    await payAndRevert(300);
    await pay(20);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a payment marked reverted whose reversing entry is gone (the drawer and the tab keep money the revert took back) is reported', async () => {
    const payment = await payAndRevert(310);
    assert.deepEqual(await newFindings(() => corrupt(unpost(payment.revertEntry))), [['money_payment_has_entry', payment.id]]);
  });

  it('a reversing entry of a payment that is not reverted (its money taken back behind its back) is reported', async () => {
    const payment = await pay(320);
    const stray = postEntry('payment_revert', payment.id, payment.op_id, -320);
    assert.deepEqual(await newFindings(() => corrupt(stray.statements)), [['money_payment_has_entry', payment.id]]);
  });

  it('a reversal that moves another amount than the payment (450 of 500 taken back) is reported', async () => {
    const payment = await payAndRevert(500);
    const partial = postEntry('payment_revert', payment.id, payment.revertOp, -450);
    assert.deepEqual(await newFindings(() => corrupt([...unpost(payment.revertEntry), ...partial.statements])), [['money_payment_has_entry', payment.id]]);
  });

  it('a reversal that moves the money the same way again (doubling the payment instead of undoing it) is reported', async () => {
    const payment = await payAndRevert(330);
    const doubled = postEntry('payment_revert', payment.id, payment.revertOp, 330);
    assert.deepEqual(await newFindings(() => corrupt([...unpost(payment.revertEntry), ...doubled.statements])), [['money_payment_has_entry', payment.id]]);
  });

  it('a second reversing entry of a reverted payment (its money taken back twice) is reported', async () => {
    const payment = await payAndRevert(340);
    const second = postEntry('payment_revert', payment.id, payment.revertOp, -340);
    assert.deepEqual(await newFindings(() => corrupt(second.statements)), [['money_payment_has_entry', payment.id]]);
  });

  it('a reversal written by another operation than the one the payment names is reported', async () => {
    const payment = await payAndRevert(350);
    const other = await pay(1);
    const foreign = postEntry('payment_revert', payment.id, other.op_id, -350);
    assert.deepEqual(await newFindings(() => corrupt([...unpost(payment.revertEntry), ...foreign.statements])), [['money_payment_has_entry', payment.id]]);
  });

  it("a payment marked reverted whose operation is not (or the other way round) is reported", async () => {
    const unmarkedOp = await payAndRevert(360);
    assert.deepEqual(
      await newFindings(() => corrupt([[`UPDATE operations SET reverted_by = NULL WHERE tenant_id = $1 AND id = $2`, [tenantId, unmarkedOp.op_id]]])),
      [['money_payment_has_entry', unmarkedOp.id]],
    );
    const unmarkedPayment = await payAndRevert(370);
    assert.deepEqual(
      await newFindings(() => corrupt([[`UPDATE payments SET reverted_by_op = NULL, reverted_at = NULL WHERE tenant_id = $1 AND id = $2`, [tenantId, unmarkedPayment.id]]])),
      [['money_payment_has_entry', unmarkedPayment.id]],
    );
  });

  it('a reversing entry naming a payment that does not exist is reported, naming the entry', async () => {
    const payment = await pay(40);
    const ghost = randomUUID();
    const entry = postEntry('payment_revert', ghost, payment.op_id, -40);
    assert.deepEqual(await newFindings(() => corrupt(entry.statements)), [['money_payment_has_entry', ghost]]);
    const found = (await integrityFindings(t.admin, tenantId, ['money_payment_has_entry'])).find((finding) => finding.subject === ghost);
    assert.deepEqual(found?.detail, { payment_id: ghost, payment_exists: false, payment_entries: [entry.id] });
  });
});
