import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { sweepExpiredPieceReservations } from '../pieces/sweepExpiredReservations.js';
import { givenSku, givenStock, givenStore } from '../sales/testkit.js';
import { aWeekendLater as aWeekendPasses } from '../../test/support/idempotency.js';

/**
 * Commands that record a new fact with nothing in the request to recognise
 * it by (no natural key: a payment, a receipt of goods, a stock correction,
 * an order, goods received as pieces, a transfer request) are made once only
 * by their Idempotency-Key. A client that never got the answer (the network
 * dropped it after the commit) and sends the request again from its offline
 * queue after a weekend — past IDEMPOTENCY_TTL_HOURS and the hourly purge —
 * must get the first answer replayed, not a second payment or receipt.
 */
describe('a command sent again days after an answer that never arrived', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let otherStoreId: string;
  let rice: string;
  let cloth: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'LATE1');
    otherStoreId = await givenStore(owner, 'LATE2');
    rice = await givenSku(owner, 'RICE', 'kg', 250);
    const roll = await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 900, tracks_pieces: true });
    assert.equal(roll.status, 201, JSON.stringify(roll.body));
    cloth = roll.body.id;
    await givenStock(owner, storeId, [{ sku_id: rice, quantity: 50_000 }]);
  });
  after(() => t.close());

  /** A weekend passes: the key's record is past its TTL and the hourly purge ran. */
  async function aWeekendLater(key: string): Promise<void> {
    await aWeekendPasses(t, tenantId, key);
  }

  async function count(table: string): Promise<number> {
    const { rows } = await t.admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [tenantId]);
    return rows[0]!.n;
  }

  async function stockOf(store: string, sku: string): Promise<number> {
    const { rows } = await t.admin.query<{ q: number }>(
      `SELECT coalesce((SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3), 0)::int AS q`,
      [tenantId, store, sku],
    );
    return rows[0]!.q;
  }

  /** Sends the request, loses the answer, sends it again a weekend later: the second must be a replay of the first. */
  async function sentAgainAWeekendLater(path: string, body: unknown) {
    const key = randomUUID();
    const first = await owner.post(path, body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await aWeekendLater(key);
    const operations = await count('operations');
    const again = await owner.post(path, body, { idempotencyKey: key });
    return { key, first, again, newOperations: (await count('operations')) - operations };
  }

  /** As sentAgainAWeekendLater, with what happened meanwhile; counts the operations and events the repeat wrote. */
  async function sentAgainAWeekendLaterAfter(path: string, body: unknown, meanwhile: (first: { body: any }) => Promise<void>) {
    const key = randomUUID();
    const first = await owner.post(path, body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    await meanwhile(first);
    await aWeekendLater(key);
    const operations = await count('operations');
    const events = await count('events');
    const again = await owner.post(path, body, { idempotencyKey: key });
    return { key, first, again, newOperations: (await count('operations')) - operations, newEvents: (await count('events')) - events };
  }

  it('a payment is not paid twice', async () => {
    const supplier = await owner.post('/v1/parties', { kind: 'supplier', name: 'Mill' });
    assert.equal(supplier.status, 201);
    const payments = await count('payments');
    const { first, again, newOperations } = await sentAgainAWeekendLater('/v1/payments', { party_id: supplier.body.id, store_id: storeId, method: 'cash', amount: 12_500 });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id]);
    assert.equal(newOperations, 0);
    assert.equal((await count('payments')) - payments, 1);
    const balances = await owner.get('/v1/ledger/suppliers');
    assert.equal(balances.body.items.find((item: { party_id: string }) => item.party_id === supplier.body.id).debit_total, 12_500);
  });

  it('a receipt of goods is not received twice', async () => {
    const before = await stockOf(otherStoreId, rice);
    const { first, again, newOperations } = await sentAgainAWeekendLater(`/v1/stores/${otherStoreId}/stock/receipts`, { items: [{ sku_id: rice, quantity: 10_000 }], reference: 'delivery note 77' });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.op_id], [201, 'true', first.body.op_id]);
    assert.equal(newOperations, 0);
    assert.equal((await stockOf(otherStoreId, rice)) - before, 10_000);
  });

  it('a stock correction is not applied twice', async () => {
    const before = await stockOf(storeId, rice);
    const { first, again, newOperations } = await sentAgainAWeekendLater(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: rice, quantity_change: -1_500, reason: 'spilt bag' });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.op_id], [201, 'true', first.body.op_id]);
    assert.equal(newOperations, 0);
    assert.equal((await stockOf(storeId, rice)) - before, -1_500);
  });

  it('an order is not sent to the provider twice', async () => {
    const orders = await count('orders');
    const { first, again, newOperations } = await sentAgainAWeekendLater('/v1/orders', {
      store_id: storeId,
      lines: [{ sku_id: rice, quantity: 1_500 }],
      shipping_address: { name: 'Ada', line1: '1 Quay St', city: 'Lisbon', postal_code: '1100-001', country: 'PT' },
      payment_reference: 'pay_late_1',
    });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id]);
    assert.equal(newOperations, 0);
    assert.equal((await count('orders')) - orders, 1);
  });

  it('pieces are not received twice', async () => {
    const before = await stockOf(storeId, cloth);
    const { first, again, newOperations } = await sentAgainAWeekendLater('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 40_000 }] });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.op_id], [201, 'true', first.body.op_id]);
    assert.equal(newOperations, 0);
    assert.equal((await stockOf(storeId, cloth)) - before, 40_000);
  });

  it('a count the manager rejected is not submitted again by its late repeat', async () => {
    // Given: a till's count whose answer was lost; the manager rejected it (recount!)
    const key = randomUUID();
    const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const body = { store_id: otherStoreId, business_date: day, declared_cash: 4_000 };
    const first = await owner.post('/v1/settlements', body, { idempotencyKey: key });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const rejected = await owner.post(`/v1/settlements/${first.body.id}/reject`, { note: 'recount' }, { headers: { 'if-match': '"1"' } });
    assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
    await aWeekendLater(key);
    const settlements = await count('settlements');

    // When: the till's queue sends the first count again
    const again = await owner.post('/v1/settlements', body, { idempotencyKey: key });

    // Then: it is that count's answer again, not a new count waiting for approval that would refuse the real recount
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id]);
    assert.equal(await count('settlements'), settlements);
    const recount = await owner.post('/v1/settlements', { ...body, declared_cash: 4_100 }, { idempotencyKey: randomUUID() });
    assert.equal(recount.status, 201, JSON.stringify(recount.body));
  });

  it('a point of sale, its visit and a customer are not created twice', async () => {
    const pointsOfSale = await count('points_of_sale');
    const parties = await count('parties');
    const pos = await sentAgainAWeekendLater('/v1/points-of-sale', { name: 'Kiosk by the station', store_id: storeId, latitude: 38.7139, longitude: -9.1394 });
    assert.deepEqual([pos.again.status, pos.again.headers.get('idempotent-replayed'), pos.again.body.id], [201, 'true', pos.first.body.id]);
    assert.equal(pos.newOperations, 0);
    assert.equal((await count('points_of_sale')) - pointsOfSale, 1);
    const customer = await sentAgainAWeekendLater('/v1/parties', { kind: 'customer', name: 'Walk-in account' });
    assert.deepEqual([customer.again.status, customer.again.headers.get('idempotent-replayed'), customer.again.body.id], [201, 'true', customer.first.body.id]);
    // the kiosk's own customer and the walk-in account: one each
    assert.equal((await count('parties')) - parties, 2);

    const agent = await owner.post('/v1/tokens', { name: 'agent-late', role: 'field_agent', store_ids: [storeId] });
    assert.equal(agent.status, 201);
    const visits = await count('visits');
    const visit = await sentAgainAWeekendLater('/v1/visits', { point_of_sale_id: pos.first.body.id, agent_token_id: agent.body.id, scheduled_for: '2026-12-07T09:00:00.000Z' });
    assert.deepEqual([visit.again.status, visit.again.headers.get('idempotent-replayed'), visit.again.body.id], [201, 'true', visit.first.body.id]);
    assert.equal((await count('visits')) - visits, 1);
  });

  it('a piece reservation is not made again, whether it expired or still holds the pieces', async () => {
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 10_000 }, { kind: 'roll', quantity: 12_000 }] });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const [expiredRoll, heldRoll] = received.body.pieces.map((piece: { id: string }) => piece.id) as [string, string];
    const pieceRow = async (id: string) =>
      (await t.admin.query(`SELECT status, reserved_by_op, reserved_until FROM pieces WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
    const eventsOf = async (id: string) =>
      (await t.admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM events WHERE tenant_id = $1 AND subject_type = 'piece' AND subject_id = $2`, [tenantId, id])).rows[0]!.n;

    // A reservation for the customer at the counter (an hour); the answer is lost.
    // The customer left, the hour passed, the reservation expired (the sweep released it).
    const expired = await sentAgainAWeekendLaterAfter('/v1/pieces/reservations', { piece_ids: [expiredRoll], expires_in_seconds: 3_600 }, async () => {
      await t.admin.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE tenant_id = $1 AND id = $2`, [tenantId, expiredRoll]);
      assert.equal(await sweepExpiredPieceReservations(t.db), 1);
    });
    // The late repeat is the first answer again, not a second reservation holding the roll from sale for another hour
    assert.deepEqual([expired.again.status, expired.again.headers.get('idempotent-replayed'), expired.again.body.op_id], [201, 'true', expired.first.body.op_id]);
    assert.equal(expired.newOperations, 0);
    assert.equal(expired.newEvents, 0);
    assert.deepEqual(await pieceRow(expiredRoll), { status: 'in_stock', reserved_by_op: null, reserved_until: null }, 'the roll is free for sale');

    // A reservation for a week that still holds its pieces: its late repeat is its answer, not 409 piece_unavailable held by itself
    const events = await eventsOf(heldRoll);
    const held = await sentAgainAWeekendLaterAfter('/v1/pieces/reservations', { piece_ids: [heldRoll], expires_in_seconds: 7 * 24 * 3600 }, async () => undefined);
    assert.deepEqual([held.again.status, held.again.headers.get('idempotent-replayed'), held.again.body.op_id], [201, 'true', held.first.body.op_id], JSON.stringify(held.again.body));
    assert.equal(held.newOperations, 0);
    assert.equal(held.newEvents, 0);
    assert.deepEqual({ ...(await pieceRow(heldRoll)), reserved_until: undefined }, { status: 'reserved', reserved_by_op: held.first.body.op_id, reserved_until: undefined });
    assert.equal(await eventsOf(heldRoll), events + 1, 'the first reservation only');
    // its key still names the reservation for good
    const { rows: keys } = await t.admin.query(`SELECT expires_at = 'infinity' AS kept FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, held.key]);
    assert.deepEqual(keys, [{ kept: true }]);
  });

  it('a cut or a combine sent again is its first answer — not 409 piece_unavailable read as "not recorded", nor, after a revert, a second cut', async () => {
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 9_000 }, { kind: 'roll', quantity: 8_000 }] });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const [roll, reverted] = received.body.pieces.map((piece: { id: string }) => piece.id) as [string, string];
    const live = async () => (await t.admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pieces WHERE tenant_id = $1 AND status = 'in_stock'`, [tenantId])).rows[0]!.n;

    // A cut whose answer was lost: its late repeat finds the roll consumed
    const cut = await sentAgainAWeekendLaterAfter('/v1/pieces/cut', { piece_id: roll, parts: [2_000] }, async () => undefined);
    assert.deepEqual([cut.again.status, cut.again.headers.get('idempotent-replayed'), cut.again.body.op_id], [201, 'true', cut.first.body.op_id], JSON.stringify(cut.again.body));
    assert.deepEqual([cut.newOperations, cut.newEvents], [0, 0]);

    // A cut reverted meanwhile (its roll back in stock): its late repeat does not cut it again
    let pieces = 0;
    const again = await sentAgainAWeekendLaterAfter('/v1/pieces/cut', { piece_id: reverted, parts: [1_000, 1_000] }, async (first) => {
      const undo = await owner.post(`/v1/operations/${first.body.op_id}/revert`, {});
      assert.equal(undo.status, 200, JSON.stringify(undo.body));
      pieces = await live();
    });
    assert.deepEqual([again.again.status, again.again.headers.get('idempotent-replayed'), again.again.body.op_id], [201, 'true', again.first.body.op_id], JSON.stringify(again.again.body));
    assert.deepEqual([again.newOperations, again.newEvents], [0, 0]);
    assert.equal(await live(), pieces, 'the roll was not cut again');
    assert.equal((await t.admin.query(`SELECT status FROM pieces WHERE tenant_id = $1 AND id = $2`, [tenantId, reverted])).rows[0].status, 'in_stock');

    // A combine whose answer was lost
    const spares = await owner.post('/v1/skus', { code: 'BTN', name: 'Buttons', unit: 'piece', price: 5, tracks_pieces: true });
    assert.equal(spares.status, 201, JSON.stringify(spares.body));
    const loose = await owner.post('/v1/pieces', { store_id: storeId, sku_id: spares.body.id, pieces: [{ kind: 'spare', quantity: 30 }, { kind: 'spare', quantity: 20 }] });
    assert.equal(loose.status, 201, JSON.stringify(loose.body));
    const combined = await sentAgainAWeekendLaterAfter('/v1/pieces/combine', { piece_ids: loose.body.pieces.map((piece: { id: string }) => piece.id), bundle_size: 10, bundle_count: 5 }, async () => undefined);
    assert.deepEqual([combined.again.status, combined.again.headers.get('idempotent-replayed'), combined.again.body.op_id], [201, 'true', combined.first.body.op_id], JSON.stringify(combined.again.body));
    assert.deepEqual([combined.newOperations, combined.newEvents], [0, 0]);
  });

  it('migration 0860 keeps the reservation records stored before it, and only those', async () => {
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 5_000 }] });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const roll = received.body.pieces[0].id;
    const [reserveKey, releaseKey] = [randomUUID(), randomUUID()];
    const reserved = await owner.post('/v1/pieces/reservations', { piece_ids: [roll], expires_in_seconds: 600 }, { idempotencyKey: reserveKey });
    assert.equal(reserved.status, 201, JSON.stringify(reserved.body));
    assert.equal((await owner.post(`/v1/pieces/reservations/${reserved.body.op_id}/release`, undefined, { idempotencyKey: releaseKey })).status, 200);
    // As the code before it stored them: for IDEMPOTENCY_TTL_HOURS
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = created_at + interval '24 hours' WHERE tenant_id = $1 AND key = ANY($2)`, [tenantId, [reserveKey, releaseKey]]);
    const migration = readFileSync(new URL('../../migrations/0860_piece_reservation_idempotency_keys_kept.sql', import.meta.url), 'utf8');
    await t.admin.query(migration);
    const { rows } = await t.admin.query(`SELECT key, expires_at = 'infinity' AS kept FROM idempotency_keys WHERE tenant_id = $1 AND key = ANY($2) ORDER BY key = $3 DESC`, [tenantId, [reserveKey, releaseKey], reserveKey]);
    assert.deepEqual(rows, [{ key: reserveKey, kept: true }, { key: releaseKey, kept: false }]);
  });

  it('migration 0863 keeps the cut records stored before it', async () => {
    const received = await owner.post('/v1/pieces', { store_id: storeId, sku_id: cloth, pieces: [{ kind: 'roll', quantity: 4_000 }] });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const key = randomUUID();
    assert.equal((await owner.post('/v1/pieces/cut', { piece_id: received.body.pieces[0].id, parts: [1_000] }, { idempotencyKey: key })).status, 201);
    await t.admin.query(`UPDATE idempotency_keys SET expires_at = created_at + interval '24 hours' WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    await t.admin.query(readFileSync(new URL('../../migrations/0863_piece_cut_combine_idempotency_keys_kept.sql', import.meta.url), 'utf8'));
    const { rows } = await t.admin.query(`SELECT expires_at = 'infinity' AS kept FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
    assert.deepEqual(rows, [{ kept: true }]);
  });

  it('a transfer is not requested twice', async () => {
    const transfers = await count('stock_transfers');
    const { first, again, newOperations } = await sentAgainAWeekendLater('/v1/transfers', { source_store_id: storeId, destination_store_id: otherStoreId, items: [{ sku_id: rice, quantity: 2_000 }] });
    assert.deepEqual([again.status, again.headers.get('idempotent-replayed'), again.body.id], [201, 'true', first.body.id]);
    assert.equal(newOperations, 0);
    assert.equal((await count('stock_transfers')) - transfers, 1);
  });
});
