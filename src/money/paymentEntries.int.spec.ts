import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';

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
    const entryId = randomUUID();
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO journal_entries (tenant_id, id, kind, store_id, subject_type, subject_id, op_id) VALUES ($1, $2, 'payment', $3, 'payment', $4, $5)`,
        [tenantId, entryId, store, subjectId, opId],
      );
      // Both postings in one statement (the database checks each statement's entries balance).
      await client.query(
        `WITH lines (key, amount) AS (VALUES ('store/' || $3::text || '/cash_drawer', $5::bigint), ('party/' || $4::text, -$5::bigint)),
              moved AS (UPDATE accounts a SET balance = a.balance + l.amount, debit_total = a.debit_total + greatest(l.amount, 0),
                                              credit_total = a.credit_total + greatest(-l.amount, 0)
                        FROM lines l WHERE a.tenant_id = $1 AND a.key = l.key RETURNING a.id, l.amount)
         INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) SELECT $1, $2, moved.id, moved.amount, $6 FROM moved`,
        [tenantId, entryId, store, customer, amount, opId],
      );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
    return entryId;
  }

  async function pay(amount: number): Promise<{ id: string; op_id: string; entry_id: string }> {
    const response = await owner.post('/v1/payments', { party_id: customer, store_id: store, method: 'cash', amount }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body;
  }

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
