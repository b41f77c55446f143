import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

/**
 * A stored answer is replayed as it was stored, whatever fields the answer
 * gained since. Answers are stored by the code of their day — an older
 * release, or, during a rolling deploy, an API process still on the old code
 * after the backfill migration ran — and many keys are kept for good (sales,
 * payments, visits…). A replay used to be written through TODAY's response
 * schema, whose required field the stored answer lacked: a 500 on every
 * retry, for ever. Here no backfill runs: the field is removed from the
 * stored answer in the database, as older code would have left it, and the
 * repeat must answer the original status and body without that field,
 * `Idempotent-Replayed: true`, nothing written. A field the schema does not
 * declare is never shown, stored or not.
 */
describe('a stored answer lacking a field the answer now requires is replayed as stored', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let tea: string;
  const SHOP = { latitude: -1.286389, longitude: 36.817223 };

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'RPL1');
    tea = await givenSku(owner, 'TEA', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: tea, quantity: 100 }]);
  });
  after(() => t.close());

  /** Everything a repeat could have written. */
  const written = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)::int AS keys,
                (SELECT count(*) FROM sales WHERE tenant_id = $1)::int AS sales,
                (SELECT count(*) FROM payments WHERE tenant_id = $1)::int AS payments,
                (SELECT count(*) FROM journal_entries WHERE tenant_id = $1)::int AS entries,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM visits WHERE tenant_id = $1) AS visits`,
        [tenantId],
      )
    ).rows[0];

  /** The stored answer of `key` as older code wrote it: `path` (a JSON path, e.g. {visit,client_created_at}) missing. */
  async function storedWithout(key: string, path: string[]): Promise<void> {
    const { rowCount } = await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body #- $3::text[] WHERE tenant_id = $1 AND key = $2 AND response_body #> $3::text[] IS NOT NULL`, [
      tenantId,
      key,
      path,
    ]);
    assert.equal(rowCount, 1, `the stored answer of ${key} held ${path.join('.')}`);
  }

  /** `body` without the member at `path`. */
  function without(body: unknown, path: string[]): unknown {
    const copy = structuredClone(body) as Record<string, unknown>;
    let at = copy;
    for (const name of path.slice(0, -1)) at = at[name] as Record<string, unknown>;
    delete at[path[path.length - 1]!];
    return copy;
  }

  const saleBody = () => ({ store_id: storeId, payment_method: 'cash', items: [{ sku_id: tea, quantity: 1, unit_price: 100 }] });

  it('a sale (POST /v1/sales) stored without void_client_created_at: 201, the stored sale, nothing written', async () => {
    const key = randomUUID();
    const body = saleBody();
    const first = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await storedWithout(key, ['void_client_created_at']);
    const before = await written();

    const again = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, without(first.body, ['void_client_created_at']));
    assert.deepEqual(await written(), before);
  });

  it('a sale synced by POST /v1/sync/sales, stored without void_client_created_at: its result is the stored sale, replayed, nothing written', async () => {
    const key = randomUUID();
    const body = saleBody();
    const first = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...body }] });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.results[0].status, 201, JSON.stringify(first.body));
    await storedWithout(key, ['void_client_created_at']);
    const before = await written();

    const again = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...body }] });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(again.body.results, [{ idempotency_key: key, status: 201, replayed: true, body: without(first.body.results[0].body, ['void_client_created_at']) }]);
    // The same sale sent online now: the same stored answer.
    const online = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.deepEqual([online.status, online.headers.get('idempotent-replayed'), online.body], [201, 'true', again.body.results[0].body]);
    assert.deepEqual(await written(), before);
  });

  it('a payment stored without business_date: 201, the stored payment, nothing written', async () => {
    const supplier = await owner.post('/v1/parties', { kind: 'supplier', name: 'Replay mill' });
    assert.equal(supplier.status, 201, JSON.stringify(supplier.body));
    const key = randomUUID();
    const body = { party_id: supplier.body.id, store_id: storeId, method: 'cash', amount: 500 };
    const first = await owner.post('/v1/payments', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await storedWithout(key, ['business_date']);
    const before = await written();

    const again = await owner.post('/v1/payments', body, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [201, 'true'], JSON.stringify(again.body));
    assert.deepEqual(again.body, without(first.body, ['business_date']));
    assert.deepEqual(await written(), before);
  });

  it('a visit completion stored without its visit\'s client_created_at: 200, the stored completion, nothing written', async () => {
    const agent = await owner.post('/v1/tokens', { name: 'agent-replay', role: 'field_agent', store_ids: [storeId] });
    const pos = await owner.post('/v1/points-of-sale', { name: 'Kiosk RPL', store_id: storeId, ...SHOP });
    assert.equal(pos.status, 201, JSON.stringify(pos.body));
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pos.body.id, agent_token_id: agent.body.id, scheduled_for: new Date().toISOString() });
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const key = randomUUID();
    const completion = { ...SHOP, lines: [{ sku_id: tea, quantity: 1 }] };
    const first = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await storedWithout(key, ['visit', 'client_created_at']);
    const before = await written();

    const again = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true'], JSON.stringify(again.body));
    assert.deepEqual(again.body, without(first.body, ['visit', 'client_created_at']));
    assert.deepEqual(await written(), before);
  });

  it('an action answered as already done from its audit event (a transfer approved), the event written without a field: 200, that answer', async () => {
    const south = await givenStore(owner, 'RPL2');
    const transfer = await owner.post('/v1/transfers', { source_store_id: storeId, destination_store_id: south, items: [{ sku_id: tea, quantity: 2 }] });
    assert.equal(transfer.status, 201, JSON.stringify(transfer.body));
    const first = await owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, { headers: { 'if-match': '"1"' } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    // Given the approval's audit event as older code wrote it (the already-done answer is read back from it;
    // events are append-only, so the test steps around that trigger for this one change)
    await t.admin.query(`BEGIN; SET LOCAL session_replication_role = replica`);
    const { rowCount } = await t.admin.query(
      `UPDATE events e SET after = e.after - 'approved_at' FROM stock_transfers r
       WHERE r.tenant_id = $1 AND r.id = $2 AND e.tenant_id = r.tenant_id AND e.op_id = r.approved_op
         AND e.subject_type = 'stock_transfer' AND e.subject_id = r.id::text AND e.after ? 'approved_at'`,
      [tenantId, transfer.body.id],
    );
    await t.admin.query('COMMIT');
    assert.equal(rowCount, 1, 'the approval\'s event holds its answer');
    const before = await written();

    const again = await owner.post(`/v1/transfers/${transfer.body.id}/approve`, undefined, { headers: { 'if-match': '"1"' } });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true'], JSON.stringify(again.body));
    assert.deepEqual(again.body, without(first.body, ['approved_at']));
    assert.deepEqual(await written(), before);
  });

  it('a stored answer holding a field its schema does not declare: the replay does not show it', async () => {
    const key = randomUUID();
    const body = saleBody();
    const first = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    // As an answer stored with an internal field (an order's is stored with its provider_key)
    await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body || '{"internal_note": "not for clients"}' WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);

    const again = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body], [201, 'true', first.body]);
    const synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...body }] });
    assert.deepEqual(synced.body.results[0].body, first.body);
  });
});
