import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';

/**
 * Answers stored for replay before a release added fields to them (a sale's
 * void_client_created_at, a payment's client_created_at and business_date,
 * migration 0843) are replayed after it — sales' and payments' keys are kept
 * for good (0833, 0840): a replay must not fail because the stored answer
 * lacks what the answer now carries (it was a 500 on every retry): migration
 * 0850 fills them in as the answer would have carried them (0862: a visit's
 * client_created_at, added by 0861).
 */
describe('an answer stored before its fields grew is replayed', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let tea: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'OLD1');
    tea = await givenSku(owner, 'TEA', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: tea, quantity: 100 }]);
  });
  after(() => t.close());

  /** The stored answer of `key` as an earlier release wrote it (without `fields`), then the upgrade's migrations. */
  async function storedWithout(key: string, fields: string[]): Promise<void> {
    const { rowCount } = await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body - $3::text[] WHERE tenant_id = $1 AND key = $2`, [tenantId, key, fields]);
    assert.equal(rowCount, 1);
    const migration = await readFile(new URL('../../migrations/0850_stored_answers_with_till_time_fields.sql', import.meta.url), 'utf8');
    await t.admin.query(migration);
  }

  it('a sale stored without void_client_created_at', async () => {
    const key = randomUUID();
    const body = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: tea, quantity: 1, unit_price: 100 }] };
    const first = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await storedWithout(key, ['void_client_created_at']);
    const again = await owner.post('/v1/sales', body, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id], JSON.stringify(again.body));
    const synced = await owner.post('/v1/sync/sales', { sales: [{ idempotency_key: key, ...body }] });
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    assert.deepEqual([synced.body.results[0].status, synced.body.results[0].body.id], [201, first.body.id]);
  });

  it('a void stored without void_client_created_at', async () => {
    const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: tea, quantity: 1, unit_price: 100 }] });
    assert.equal(sale.status, 201);
    const key = randomUUID();
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'wrong item' }, { idempotencyKey: key });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    await storedWithout(key, ['void_client_created_at']);
    const again = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'wrong item' }, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.status], [200, 'true', 'voided'], JSON.stringify(again.body));
  });

  it('a payment stored without client_created_at and business_date', async () => {
    const supplier = await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' });
    const key = randomUUID();
    const body = { party_id: supplier.body.id, store_id: storeId, method: 'cash', amount: 500 };
    const first = await owner.post('/v1/payments', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await storedWithout(key, ['client_created_at', 'business_date']);
    const again = await owner.post('/v1/payments', body, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id], JSON.stringify(again.body));
    assert.deepEqual([again.body.client_created_at, again.body.business_date], [null, first.body.business_date]);
  });

  it('a scheduled visit and a visit completion stored without client_created_at (added by 0861)', async () => {
    const SHOP = { latitude: -1.286389, longitude: 36.817223 };
    const agent = await owner.post('/v1/tokens', { name: 'agent-old', role: 'field_agent', store_ids: [storeId] });
    const pos = await owner.post('/v1/points-of-sale', { name: 'Kiosk OLD', store_id: storeId, ...SHOP });
    assert.equal(pos.status, 201, JSON.stringify(pos.body));
    const scheduleKey = randomUUID();
    const schedule = { point_of_sale_id: pos.body.id, agent_token_id: agent.body.id, scheduled_for: new Date().toISOString() };
    const visit = await owner.post('/v1/visits', schedule, { idempotencyKey: scheduleKey });
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const completeKey = randomUUID();
    const completion = { ...SHOP, lines: [{ sku_id: tea, quantity: 1 }] };
    const completed = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: completeKey });
    assert.equal(completed.status, 200, JSON.stringify(completed.body));

    // Given both answers as the release before 0861 stored them
    await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body - 'client_created_at' WHERE tenant_id = $1 AND key = $2`, [tenantId, scheduleKey]);
    const { rowCount } = await t.admin.query(
      `UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{visit}', (response_body -> 'visit') - 'client_created_at') WHERE tenant_id = $1 AND key = $2 AND response_body ? 'visit'`,
      [tenantId, completeKey],
    );
    assert.equal(rowCount, 1, 'a completion answer holds its visit');
    await t.admin.query(await readFile(new URL('../../migrations/0862_stored_visit_answers_with_client_time.sql', import.meta.url), 'utf8'));

    // Then both replay as first answered, with the field the answer now carries
    const scheduledAgain = await owner.post('/v1/visits', schedule, { idempotencyKey: scheduleKey });
    assert.deepEqual([scheduledAgain.status, scheduledAgain.headers.get('idempotent-replayed'), scheduledAgain.body.id, scheduledAgain.body.client_created_at], [201, 'true', visit.body.id, null], JSON.stringify(scheduledAgain.body));
    const completedAgain = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: completeKey });
    assert.deepEqual([completedAgain.status, completedAgain.headers.get('idempotent-replayed'), completedAgain.body.visit.id, completedAgain.body.visit.client_created_at], [200, 'true', visit.body.id, null], JSON.stringify(completedAgain.body));
  });
  it("a visit completion stored without its consignment lines' shortfall_quantity (added by 1071): filled in as 0, replayed as the first answer", async () => {
    const pos = await owner.post('/v1/points-of-sale', { name: 'Old kiosk', store_id: storeId, latitude: 0, longitude: 0 });
    assert.equal(pos.status, 201, JSON.stringify(pos.body));
    const agent = await owner.post('/v1/tokens', { name: `agent-${randomUUID().slice(0, 6)}`, role: 'field_agent', store_ids: [storeId] });
    const visit = await owner.post('/v1/visits', { point_of_sale_id: pos.body.id, agent_token_id: agent.body.id, scheduled_for: new Date().toISOString() });
    assert.equal(visit.status, 201, JSON.stringify(visit.body));
    const key = randomUUID();
    const completion = { latitude: 0, longitude: 0, lines: [{ sku_id: tea, quantity: 2 }] };
    const first = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: key });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.consignment.lines[0].shortfall_quantity, 0);
    const { rowCount } = await t.admin.query(
      `UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{consignment,lines,0}', (response_body #> '{consignment,lines,0}') - 'shortfall_quantity')
       WHERE tenant_id = $1 AND key = $2`,
      [tenantId, key],
    );
    assert.equal(rowCount, 1);
    await t.admin.query(await readFile(new URL('../../migrations/1071_consignment_lines_shortfall.sql', import.meta.url), 'utf8').then((text) => text.replace(/^ALTER TABLE[\s\S]*?;$/gm, '')));
    const stored = (await t.admin.query(`SELECT response_body #> '{consignment,lines}' AS lines FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key])).rows[0].lines;
    assert.deepEqual(stored, first.body.consignment.lines);
    const again = await owner.post(`/v1/visits/${visit.body.id}/complete`, completion, { idempotencyKey: key });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [200, 'true']);
    assert.deepEqual(again.body, first.body);
  });
  // SKUs (1400) and stores (1410) gained a version: their stored answers had none.
  const versioned = [
    { record: 'SKU', migration: '1400_sku_versions.sql', path: '/v1/skus', table: 'skus', createBody: { code: 'OLD-SKU', name: 'Old', unit: 'piece', price: 10 }, change: { price: 11 } },
    { record: 'store', migration: '1410_store_versions.sql', path: '/v1/stores', table: 'stores', createBody: { code: 'OLD-STORE', name: 'Old' }, change: { name: 'Older' } },
  ];
  for (const { record, migration, path, table, createBody, change } of versioned) {
    it(`${record} answers stored without version (added by ${migration.slice(0, 4)}): filled in as 1, the version every ${record} then is at; replayed with ETag "1"`, async () => {
      const createKey = randomUUID();
      const created = await owner.post(path, createBody, { idempotencyKey: createKey });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const changeKey = randomUUID();
      const changed = await owner.patch(`${path}/${created.body.id}`, change, { idempotencyKey: changeKey });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
      // as an earlier release stored them and left the row: no version
      const { rowCount } = await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body - 'version' WHERE tenant_id = $1 AND key = ANY($2::text[])`, [tenantId, [createKey, changeKey]]);
      assert.equal(rowCount, 2);
      await t.admin.query(`UPDATE ${table} SET version = 1 WHERE tenant_id = $1 AND id = $2`, [tenantId, created.body.id]);
      await t.admin.query(await readFile(new URL(`../../migrations/${migration}`, import.meta.url), 'utf8').then((text) => text.replace(/^ALTER TABLE[\s\S]*?;$/gm, '')));
      const createdAgain = await owner.post(path, createBody, { idempotencyKey: createKey });
      assert.deepEqual([createdAgain.status, createdAgain.headers.get('idempotent-replayed'), createdAgain.headers.get('etag')], [201, 'true', '"1"']);
      assert.deepEqual(createdAgain.body, created.body);
      const changedAgain = await owner.patch(`${path}/${created.body.id}`, change, { idempotencyKey: changeKey });
      assert.deepEqual([changedAgain.status, changedAgain.headers.get('idempotent-replayed'), changedAgain.headers.get('etag')], [200, 'true', '"1"']);
      assert.deepEqual(changedAgain.body, { ...changed.body, version: 1 });
    });
  }

  it("a return's answer, and a void's answer with the sale's returns, stored without after_void (added by 1340): filled in as false, replayed as the first answer", async () => {
    const sale = await owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: tea, quantity: 3, unit_price: 100 }] });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    const returnKey = randomUUID();
    const returnBody = { items: [{ sku_id: tea, quantity: 1 }], reason: 'back' };
    const returned = await owner.post(`/v1/sales/${sale.body.id}/returns`, returnBody, { idempotencyKey: returnKey });
    assert.equal(returned.status, 201, JSON.stringify(returned.body));
    assert.equal(returned.body.after_void, false);
    const voidKey = randomUUID();
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'rest' }, { idempotencyKey: voidKey });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.equal(voided.body.returns[0].after_void, false);
    // as an earlier release stored them
    const { rowCount: returns } = await t.admin.query(`UPDATE idempotency_keys SET response_body = response_body - 'after_void' WHERE tenant_id = $1 AND key = $2`, [tenantId, returnKey]);
    const { rowCount: voids } = await t.admin.query(
      `UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{returns,0}', (response_body #> '{returns,0}') - 'after_void') WHERE tenant_id = $1 AND key = $2`,
      [tenantId, voidKey],
    );
    assert.deepEqual([returns, voids], [1, 1]);
    await t.admin.query(await readFile(new URL('../../migrations/1340_sale_returns_after_void.sql', import.meta.url), 'utf8').then((text) => text.replace(/^ALTER TABLE[\s\S]*?;$/gm, '')));
    const stored = (await t.admin.query(`SELECT key, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = ANY($2::text[])`, [tenantId, [returnKey, voidKey]])).rows;
    assert.deepEqual(stored.find((row) => row.key === returnKey).response_body.after_void, false);
    assert.deepEqual(stored.find((row) => row.key === voidKey).response_body.returns[0].after_void, false);
    const returnedAgain = await owner.post(`/v1/sales/${sale.body.id}/returns`, returnBody, { idempotencyKey: returnKey });
    assert.deepEqual([returnedAgain.status, returnedAgain.headers.get('idempotent-replayed')], [201, 'true']);
    assert.deepEqual(returnedAgain.body, returned.body);
    const voidedAgain = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'rest' }, { idempotencyKey: voidKey });
    assert.deepEqual([voidedAgain.status, voidedAgain.headers.get('idempotent-replayed')], [200, 'true']);
    assert.deepEqual(voidedAgain.body, voided.body);
  });

  it("return answers stored without remaining[].returnable_piece_ids (added with returns of short lines): filled in as the return answered them then, replayed as the first answer", async () => {
    // Given: cloth sold as three pieces with tea; two returns, one of a piece, one of tea
    const cloth = (await owner.post('/v1/skus', { code: 'CLOTH-OLD', name: 'Cloth', unit: 'metre', price: 300, tracks_pieces: true })).body.id as string;
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [1000, 2000, 3000].map((quantity) => ({ kind: 'roll', quantity })) });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const pieces = (received.body.pieces as Array<{ id: string }>).map((piece) => piece.id);
    const sale = await owner.post('/v1/sales', {
      store_id: storeId,
      payment_method: 'cash',
      items: [{ sku_id: cloth, piece_ids: pieces, unit_price: 300 }, { sku_id: tea, quantity: 2, unit_price: 100 }],
    });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    const sent = [
      { key: randomUUID(), body: { items: [{ sku_id: cloth, piece_ids: [pieces[1]] }], reason: 'one roll back' } },
      { key: randomUUID(), body: { items: [{ sku_id: tea, quantity: 1 }], reason: 'one tea back' } },
    ];
    const first = [];
    for (const { key, body } of sent) {
      const returned = await owner.post(`/v1/sales/${sale.body.id}/returns`, body, { idempotencyKey: key });
      assert.equal(returned.status, 201, JSON.stringify(returned.body));
      first.push(returned.body);
    }
    const left = [...pieces].filter((id) => id !== pieces[1]).sort();
    assert.deepEqual(first.map((answer) => answer.remaining.map((entry: { returnable_piece_ids: string[] }) => entry.returnable_piece_ids)), [[left, []], [left, []]]);
    // as an earlier release stored them: no returnable_piece_ids
    for (const { key } of sent) {
      const { rowCount } = await t.admin.query(
        `UPDATE idempotency_keys SET response_body = jsonb_set(response_body, '{remaining}',
           (SELECT jsonb_agg(e - 'returnable_piece_ids' ORDER BY n) FROM jsonb_array_elements(response_body -> 'remaining') WITH ORDINALITY AS x(e, n)))
         WHERE tenant_id = $1 AND key = $2`,
        [tenantId, key],
      );
      assert.equal(rowCount, 1);
    }
    // When: the upgrade's migration, then the replays
    await t.admin.query(await readFile(new URL('../../migrations/1350_stored_returns_returnable_piece_ids.sql', import.meta.url), 'utf8'));
    // Then
    for (const [index, { key, body }] of sent.entries()) {
      const again = await owner.post(`/v1/sales/${sale.body.id}/returns`, body, { idempotencyKey: key });
      assert.deepEqual([again.status, again.headers.get('idempotent-replayed')], [201, 'true'], JSON.stringify(again.body));
      assert.deepEqual(again.body, first[index]);
    }
  });
});
