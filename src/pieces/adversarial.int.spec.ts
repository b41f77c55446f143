import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenStore } from '../sales/testkit.js';
import { sweepExpiredPieceReservations } from './sweepExpiredReservations.js';
import { assertStockMatchesPieces } from './testkit.js';
import { commandRetries } from '../core/metrics.js';

/**
 * More workshop races over the same pieces, as real concurrent HTTP requests:
 * a combine against a reservation and a sale of its inputs, and a revert of a
 * combine whose outputs were used and given back, against new users of them.
 * Each round checks the rows left: stock = Σ live pieces = Σ ledger, every
 * piece's history a chain, and every integrity check clean.
 */
describe('workshop pieces: combines and reverts of partly used operations under races', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let buttons: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'ADV');
    buttons = (await owner.post('/v1/skus', { code: 'BTN', name: 'Buttons', unit: 'piece', price: 5, tracks_pieces: true })).body.id;
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const receive = async (pieces: Array<{ kind: string; quantity: number }>) => {
    const response = await owner.post('/v1/pieces', { store_id: storeId, sku_id: buttons, pieces }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { op_id: string; pieces: Array<{ id: string; quantity: number }> };
  };
  const sell = (pieceIds: string[]) => owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: buttons, piece_ids: pieceIds, unit_price: 5 }] }, k());
  const reserve = (pieceIds: string[]) => owner.post('/v1/pieces/reservations', { piece_ids: pieceIds, expires_in_seconds: 600 }, k());
  const combine = (pieceIds: string[], size: number, count: number) => owner.post('/v1/pieces/combine', { piece_ids: pieceIds, bundle_size: size, bundle_count: count }, k());
  const cut = (pieceId: string, parts: number[]) => owner.post('/v1/pieces/cut', { piece_id: pieceId, parts }, k());
  const revert = (opId: string) => owner.post(`/v1/operations/${opId}/revert`, undefined, k());
  const piece = async (id: string) =>
    (await t.admin.query(`SELECT status, consumed_by_op, sold_by_op, reserved_by_op, deleted_by_op FROM pieces WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
  const stockMatchesPieces = () => assertStockMatchesPieces(t.admin, tenantId, storeId, buttons);
  /** The piece's history, each step's before = the previous step's after; and its last after = the row as it is. */
  const historyMatchesRow = async (pieceId: string) => {
    const items = (await owner.get(`/v1/pieces/${pieceId}/history?limit=500`)).body.items as Array<{ type: string; before: any; after: any }>;
    for (let i = 1; i < items.length; i++) {
      assert.equal(items[i]!.before?.version, items[i - 1]!.after?.version, `history of ${pieceId} in order: ${items.map((item) => item.type).join(', ')}`);
    }
    const last = items.at(-1)!.after;
    const row = await piece(pieceId);
    for (const column of ['status', 'consumed_by_op', 'sold_by_op', 'reserved_by_op', 'deleted_by_op'] as const) {
      assert.equal(last[column], row[column], `history of ${pieceId} ends where the row is (${column})`);
    }
  };

  it('a combine racing a reservation of one of its inputs and a sale of another: the combine takes all its inputs or none', async () => {
    for (let round = 0; round < 6; round++) {
      const { pieces } = await receive([{ kind: 'spare', quantity: 5 }, { kind: 'spare', quantity: 5 }, { kind: 'spare', quantity: 5 }]);
      const [a, b, c] = pieces.map((p) => p.id) as [string, string, string];
      const [combining, reserving, sale] = await Promise.all([combine([a, b, c], 4, 3), reserve([b]), sell([c])]);
      const body = JSON.stringify([combining.body, reserving.body, sale.body]);
      for (const response of [combining, reserving, sale]) assert.ok([201, 409].includes(response.status), body);
      if (combining.status === 201) {
        assert.deepEqual([reserving.status, sale.status], [409, 409], body);
        for (const id of [a, b, c]) assert.equal((await piece(id)).consumed_by_op, combining.body.op_id);
        for (const made of [...combining.body.bundles, combining.body.remainder].filter(Boolean)) await historyMatchesRow(made.id);
      } else {
        assert.equal(combining.body.code, 'piece_unavailable', body);
        assert.deepEqual([reserving.status, sale.status], [201, 201], body);
        assert.equal((await piece(a)).status, 'in_stock');
        assert.equal((await piece(b)).reserved_by_op, reserving.body.op_id);
        assert.equal((await piece(c)).sold_by_op, sale.body.op_id);
      }
      for (const id of [a, b, c]) await historyMatchesRow(id);
      await stockMatchesPieces();
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a revert of a combine whose outputs were sold and voided, cut and un-cut, racing new users of each output: all or nothing', async () => {
    for (let round = 0; round < 6; round++) {
      const { pieces } = await receive([{ kind: 'spare', quantity: 7 }, { kind: 'spare', quantity: 6 }]);
      const combined = await combine(pieces.map((p) => p.id), 5, 2);
      assert.equal(combined.status, 201, JSON.stringify(combined.body));
      const [first, second] = combined.body.bundles.map((p: { id: string }) => p.id) as [string, string];
      const remainder = combined.body.remainder.id as string;
      // Used and given back: the first bundle sold then voided; the remainder cut, then the cut reverted.
      const sold = await sell([first]);
      assert.equal(sold.status, 201, JSON.stringify(sold.body));
      assert.equal((await owner.post(`/v1/sales/${sold.body.id}/void`, { reason: 'back' }, k())).status, 200);
      const split = await cut(remainder, [1]);
      assert.equal(split.status, 201, JSON.stringify(split.body));
      assert.equal((await revert(split.body.op_id)).status, 200);
      await stockMatchesPieces();

      const [undo, resale, recut, reserving] = await Promise.all([revert(combined.body.op_id), sell([first]), cut(remainder, [1, 1]), reserve([second])]);
      const body = JSON.stringify([undo.body, resale.body, recut.body, reserving.body]);
      if (undo.status === 200) {
        assert.deepEqual([resale.status, recut.status, reserving.status], [409, 409, 409], body);
        for (const id of [first, second, remainder]) assert.equal((await piece(id)).deleted_by_op, undo.body.op_id);
        for (const id of pieces.map((p) => p.id)) assert.equal((await piece(id)).status, 'in_stock');
      } else {
        assert.equal(undo.status, 409, body);
        assert.equal(undo.body.code, 'operation_already_used', body);
        assert.deepEqual([resale.status, recut.status, reserving.status], [201, 201, 201], body);
        for (const id of pieces.map((p) => p.id)) assert.equal((await piece(id)).consumed_by_op, combined.body.op_id);
      }
      for (const id of [first, second, remainder, ...pieces.map((p) => p.id)]) await historyMatchesRow(id);
      await stockMatchesPieces();
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('random workshop commands at once over a few pieces (cuts, combines, reservations, releases, sales, voids, reverts): no 5xx, and the rows agree', async () => {
    let seed = 12345;
    const retries = async () => (await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0);
    const retriesBefore = await retries();
    const rand = (n: number) => {
      // mulberry32: reproducible, and its low bits are not periodic
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n);
    };
    const ops: Array<{ id: string; kind: string }> = [];
    const sales: string[] = [];
    const received = await receive(Array.from({ length: 6 }, () => ({ kind: 'spare', quantity: 9 })));
    ops.push({ id: received.op_id, kind: 'receive' });
    const live = async () =>
      (
        await t.admin.query(
          `SELECT id, quantity, CASE WHEN reserved_until > now() THEN reserved_by_op END AS held_by FROM pieces
           WHERE tenant_id = $1 AND deleted_by_op IS NULL AND status IN ('in_stock', 'reserved') AND store_id = $2`,
          [tenantId, storeId],
        )
      ).rows as Array<{ id: string; quantity: number; held_by: string | null }>;
    const seen: number[] = [];
    for (let round = 0; round < 60; round++) {
      const pool = await live();
      if (pool.length < 3) {
        const more = await receive(Array.from({ length: 4 }, () => ({ kind: 'spare', quantity: 9 })));
        ops.push({ id: more.op_id, kind: 'receive' });
        continue;
      }
      const free = pool.filter((p) => p.held_by === null);
      const held = pool.filter((p) => p.held_by !== null);
      // mostly free pieces; now and then a held one, under its reservation (set below) or not
      const pick = () => (free.length > 0 && (held.length === 0 || rand(4) > 0) ? free[rand(free.length)]! : held[rand(held.length)]!);
      const reservations = [...new Set(held.map((p) => p.held_by as string))].map((id) => ({ id })).concat(ops.filter((op) => op.kind === 'reserve'));
      const requests = Array.from({ length: 12 }, () => {
        const choice = rand(10);
        const reservation = reservations.length > 0 && rand(2) === 0 ? reservations[rand(reservations.length)]!.id : undefined;
        switch (choice) {
          case 0: {
            const target = pick();
            return owner.post('/v1/pieces/cut', { piece_id: target.id, parts: [1], ...(reservation ? { reservation_op_id: reservation } : {}) }, k()).then((r) => ({ r, kind: 'cut' }));
          }
          case 1: {
            const ids = [...new Set([pick().id, pick().id, pick().id])];
            return owner.post('/v1/pieces/combine', { piece_ids: ids, bundle_size: 2, bundle_count: 1, ...(reservation ? { reservation_op_id: reservation } : {}) }, k()).then((r) => ({ r, kind: 'combine' }));
          }
          case 2:
            return owner.post('/v1/pieces/reservations', { piece_ids: [pick().id, pick().id], expires_in_seconds: 1 + rand(3) }, k()).then((r) => ({ r, kind: 'reserve' }));
          case 3:
            return reservations.length > 0
              ? owner.post(`/v1/pieces/reservations/${reservations[rand(reservations.length)]!.id}/release`, undefined, k()).then((r) => ({ r, kind: 'release' }))
              : sell([pick().id]).then((r) => ({ r, kind: 'sale' }));
          case 4:
            return owner
              .post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: buttons, piece_ids: [pick().id], unit_price: 5 }], ...(reservation ? { reservation_op_id: reservation } : {}) }, k())
              .then((r) => ({ r, kind: 'sale' }));
          case 5:
            return sales.length > 0
              ? owner.post(`/v1/sales/${sales[rand(sales.length)]}/void`, { reason: 'random' }, k()).then((r) => ({ r, kind: 'void' }))
              : sell([pick().id]).then((r) => ({ r, kind: 'sale' }));
          case 6:
            return sweepExpiredPieceReservations(t.db).then(() => ({ r: { status: 200, body: {} }, kind: 'sweep' }));
          case 7: {
            // two sales synced from a till in one batch, naming pieces that may overlap: what is gone is their shortfall
            const sale = () => ({
              idempotency_key: randomUUID(),
              store_id: storeId,
              payment_method: 'cash',
              client_created_at: new Date().toISOString(),
              items: [{ sku_id: buttons, piece_ids: [...new Set([pick().id, pick().id])], unit_price: 5 }],
            });
            return owner.post('/v1/sync/sales', { sales: [sale(), sale()] }, k()).then((r) => ({ r, kind: 'sync' }));
          }
          default: {
            const op = ops[rand(ops.length)]!;
            return revert(op.id).then((r) => ({ r, kind: 'revert' }));
          }
        }
      });
      for (const { r, kind } of await Promise.all(requests)) {
        seen.push(r.status);
        assert.ok([200, 201, 409, 422].includes(r.status), `${kind}: ${r.status} ${JSON.stringify(r.body)}`);
        if (r.status === 201 && ['cut', 'combine', 'reserve'].includes(kind)) ops.push({ id: r.body.op_id, kind });
        if (r.status === 201 && kind === 'sale') sales.push(r.body.id);
        if (kind === 'sync') {
          for (const result of r.body.results as Array<{ status: number; body: { id?: string } }>) {
            assert.ok([200, 201].includes(result.status), `synced sale: ${JSON.stringify(result)}`);
            if (result.body.id) sales.push(result.body.id);
          }
        }
      }
      await stockMatchesPieces();
    }
    const all = (await t.admin.query(`SELECT id FROM pieces WHERE tenant_id = $1`, [tenantId])).rows as Array<{ id: string }>;
    for (const { id } of all) await historyMatchesRow(id);
    assert.ok(seen.filter((status) => status < 300).length > 20, `enough commands took effect: ${seen.join(',')}`);
    // Commands over shared pieces queue up on their locks: none deadlocked and was run again (with the pieces
    // locked FOR UPDATE, a cut or combine making pieces descended from a piece a revert held did, 4 times here).
    assert.equal(await retries(), retriesBefore, 'a transaction was run again (a deadlock)');
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

});
