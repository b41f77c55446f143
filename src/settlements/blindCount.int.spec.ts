import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { BLIND_FIGURES } from './blindCount.js';

/**
 * Blind counts: who counts the drawer (a cashier) does not learn what it
 * should hold. Every answer that shows a settlement to a role without
 * settlements.expected.read has its expected cash, variance and the day's
 * movements as null — the submission, its replay, GET, the list — while the
 * row holds every figure and owner, admin, manager and auditor see them.
 */
describe('a blind cash count', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let store: { id: string };
  let cashier: ApiClient;
  let manager: ApiClient;
  let auditor: ApiClient;
  let today: string;

  const pastDate = (daysAgo: number) => new Date(Date.parse(`${today}T00:00:00Z`) - daysAgo * 86_400_000).toISOString().slice(0, 10);
  /** The figures a cashier's count must not show, as an answer has them. */
  const blindOf = (settlement: Record<string, unknown>) => Object.fromEntries(BLIND_FIGURES.map((figure) => [figure, settlement[figure]]));
  const ALL_NULL = Object.fromEntries(BLIND_FIGURES.map((figure) => [figure, null]));
  /** Today's figures: float 10,000 + 3,000 paid in − 800 paid out = 12,200 expected; 12,000 counted. */
  const TODAY = { cash_sales: 0, cash_voids: 0, cash_returns: 0, payments_in: 3_000, payments_out: 800, other_cash: 0, expected_cash: 12_200, variance: -200 };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    today = (await t.admin.query(`SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d`)).rows[0].d;
    store = (await owner.post('/v1/stores', { code: 'B1', name: 'Blind drawer' })).body;
    assert.equal((await owner.patch('/v1/tenant/settings', { settlement_float: 10_000 })).status, 200);
    const customer = (await owner.post('/v1/parties', { kind: 'customer', name: 'Cora' })).body;
    const supplier = (await owner.post('/v1/parties', { kind: 'supplier', name: 'Sam' })).body;
    assert.equal((await owner.post('/v1/payments', { party_id: customer.id, store_id: store.id, method: 'cash', amount: 3_000 })).status, 201);
    assert.equal((await owner.post('/v1/payments', { party_id: supplier.id, store_id: store.id, method: 'cash', amount: 800 })).status, 201);
    const token = async (name: string, role: string) => t.client((await owner.post('/v1/tokens', { name, role, store_ids: [store.id] })).body.token);
    cashier = await token('till', 'cashier');
    manager = await token('boss', 'manager');
    auditor = await token('eye', 'auditor');
  });
  after(() => t.close());

  it('a cashier\'s count: null figures in its answer, its replay, GET and the list; the manager and the auditor see them; the row holds them', async () => {
    const key = randomUUID();
    const body = { store_id: store.id, business_date: today, declared_cash: 12_000 };
    // When the cashier submits the count
    const submitted = await cashier.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    // Then the answer shows the count, the float, the version — and none of what the drawer should hold
    assert.deepEqual(blindOf(submitted.body), ALL_NULL);
    assert.equal(submitted.body.declared_cash, 12_000);
    assert.equal(submitted.body.float_amount, 10_000);
    assert.equal(submitted.body.status, 'submitted');
    assert.equal(submitted.headers.get('etag'), '"1"');
    // And its replay neither
    const replayed = await cashier.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(replayed.status, 201);
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replayed.body, submitted.body);
    // Nor GET, nor the list
    const read = await cashier.get(`/v1/settlements/${submitted.body.id}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, submitted.body);
    const listed = await cashier.get(`/v1/settlements?store_id=${store.id}`);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.items.map(blindOf), [ALL_NULL]);
    // But the manager and the auditor see every figure
    for (const reader of [manager, auditor, owner]) {
      const seen = await reader.get(`/v1/settlements/${submitted.body.id}`);
      assert.equal(seen.status, 200);
      assert.deepEqual(blindOf(seen.body), TODAY);
      assert.deepEqual({ ...seen.body, ...ALL_NULL }, submitted.body, 'the rest as the cashier saw it');
      assert.deepEqual((await reader.get(`/v1/settlements?store_id=${store.id}`)).body.items.map(blindOf), [TODAY]);
    }
    // And the manager replaying the cashier's key gets the figures (the caller decides, not who stored the answer)
    const managerReplay = await manager.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(managerReplay.status, 201, JSON.stringify(managerReplay.body));
    assert.equal(managerReplay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(blindOf(managerReplay.body), TODAY);
    // And the row holds every figure, computed as ever
    const row = (await t.admin.query('SELECT * FROM settlements WHERE tenant_id = $1 AND id = $2', [tenantId, submitted.body.id])).rows[0];
    assert.deepEqual(Object.fromEntries(BLIND_FIGURES.map((figure) => [figure, Number(row[figure])])), TODAY);
    assert.equal((await t.admin.query('SELECT count(*)::int AS n FROM settlements WHERE tenant_id = $1', [tenantId])).rows[0].n, 1, 'replays wrote nothing');
    // And the manager's approval shows the figures to the manager
    const approved = await manager.post(`/v1/settlements/${submitted.body.id}/approve`, {}, { headers: { 'if-match': '"1"' }, idempotencyKey: randomUUID() });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.deepEqual(blindOf(approved.body), TODAY);
    assert.deepEqual(blindOf((await cashier.get(`/v1/settlements/${submitted.body.id}`)).body), ALL_NULL, 'approved, still blind for the cashier');
  });

  it('a cashier replaying a manager\'s submission (the same key and body) is answered blind', async () => {
    const key = randomUUID();
    const body = { store_id: store.id, business_date: pastDate(3), declared_cash: 9_500 };
    const submitted = await manager.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const figures = { cash_sales: 0, cash_voids: 0, cash_returns: 0, payments_in: 0, payments_out: 0, other_cash: 0, expected_cash: 10_000, variance: -500 };
    assert.deepEqual(blindOf(submitted.body), figures);
    const replayed = await cashier.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(replayed.status, 201, JSON.stringify(replayed.body));
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(replayed.body, { ...submitted.body, ...ALL_NULL });
  });
});
