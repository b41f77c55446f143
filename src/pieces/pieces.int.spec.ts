import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { sql } from 'kysely';
import { runCommand } from '../core/command.js';
import { all } from '../core/db.js';
import { pieceChecks } from './integrity.js';
import { lockPiecesForUpdate, releaseExpiredReservations } from './pieceRows.js';
import { sweepExpiredPieceReservations } from './sweepExpiredReservations.js';

interface Piece {
  id: string;
  kind: string;
  quantity: number;
  status: string;
  version: number;
  original_piece_id: string;
  created_by_op: string;
  consumed_by_op: string | null;
  deleted_by_op: string | null;
  reserved_by_op: string | null;
}

describe('workshop pieces: cut, combine, reserve, revert by operation', () => {
  let t: TestApp;
  let tenantId: string;
  let owner: ApiClient;
  let store: { id: string };
  let cloth: { id: string };
  let buttons: { id: string };
  let plain: { id: string };
  let keys = 0;
  const key = () => ({ idempotencyKey: `pieces-${++keys}` });

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    store = (await owner.post('/v1/stores', { code: 'WS', name: 'Workshop' })).body;
    cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body;
    buttons = (await owner.post('/v1/skus', { code: 'BTN', name: 'Buttons', unit: 'piece', price: 5, tracks_pieces: true })).body;
    plain = (await owner.post('/v1/skus', { code: 'PLAIN', name: 'Plain', unit: 'piece', price: 5 })).body;
  });
  after(() => t.close());

  const snapshot = async () =>
    (
      await t.admin.query(
        `SELECT (SELECT count(*) FROM operations WHERE tenant_id = $1)::int AS operations,
                (SELECT count(*) FROM events WHERE tenant_id = $1)::int AS events,
                (SELECT count(*) FROM pieces WHERE tenant_id = $1)::int AS pieces,
                (SELECT string_agg(id || ':' || status || ':' || version || ':' || coalesce(deleted_by_op::text, '-'), ',' ORDER BY id) FROM pieces WHERE tenant_id = $1) AS piece_states,
                (SELECT count(*) FROM stock_ledger WHERE tenant_id = $1)::int AS ledger,
                (SELECT coalesce(sum(quantity), 0)::int FROM stock_balances WHERE tenant_id = $1) AS stock,
                (SELECT count(*) FROM operations WHERE tenant_id = $1 AND reverted_by IS NOT NULL)::int AS reverted`,
        [tenantId],
      )
    ).rows[0];

  const stockOf = async (skuId: string) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE store_id = $1 AND sku_id = $2', [store.id, skuId])).rows[0]?.quantity ?? 0);
  const livePieces = async (skuId: string) =>
    (
      await t.admin.query(
        `SELECT id, kind, quantity::int, status, version, original_piece_id FROM pieces
         WHERE sku_id = $1 AND deleted_by_op IS NULL AND status IN ('in_stock', 'reserved') ORDER BY id`,
        [skuId],
      )
    ).rows;
  const runChecks = async () => {
    const findings: Array<{ check: string; subject: string }> = [];
    for (const check of pieceChecks) for (const row of (await t.admin.query(check.sql, [tenantId])).rows) findings.push({ check: check.name, subject: row.subject });
    return findings;
  };
  const receive = async (skuId: string, pieces: Array<{ kind: string; quantity: number }>): Promise<Piece[]> => {
    const response = await owner.post('/v1/pieces', { store_id: store.id, sku_id: skuId, pieces }, key());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.pieces;
  };
  function assertProblem(response: ApiResponse, status: number, code: string) {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, code);
  }

  it('receives rolls and spare pieces; stock rises by their sum through the ledger', async () => {
    const clothBefore = await stockOf(cloth.id);
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 50_000 }]);
    assert.ok(roll);
    assert.equal(roll.status, 'in_stock');
    assert.equal(roll.version, 1);
    assert.equal(roll.original_piece_id, roll.id);
    assert.equal(await stockOf(cloth.id), clothBefore + 50_000);
    const ledger = (await t.admin.query('SELECT kind, quantity_change FROM stock_ledger WHERE op_id = $1', [roll.created_by_op])).rows;
    assert.deepEqual(ledger.map((row) => [row.kind, Number(row.quantity_change)]), [['piece_receipt', 50_000]]);
    assert.deepEqual(await runChecks(), []);
  });

  it('cuts a roll into lengths: input consumed, parts and remainder created, stock unchanged', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 10_000 }]);
    assert.ok(roll);
    const before = await stockOf(cloth.id);
    const response = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [2500, 3000] }, key());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const { consumed, pieces, remainder, op_id } = response.body;
    assert.equal(consumed.status, 'consumed');
    assert.equal(consumed.consumed_by_op, op_id);
    assert.equal(consumed.version, 2);
    assert.deepEqual(pieces.map((p: Piece) => [p.kind, p.quantity]), [['cut', 2500], ['cut', 3000]]);
    assert.deepEqual([remainder.kind, remainder.quantity], ['roll', 4500]);
    for (const piece of [...pieces, remainder]) {
      assert.equal(piece.original_piece_id, roll.id);
      assert.equal(piece.created_by_op, op_id);
    }
    assert.equal(await stockOf(cloth.id), before);
    assert.equal(Number((await t.admin.query('SELECT count(*) FROM stock_ledger WHERE op_id = $1', [op_id])).rows[0].count), 0);
    assert.deepEqual(await runChecks(), []);
  });

  it("an Idempotency-Key replays only to a caller who may see the operation's store: another store's manager gets 404", async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 5_000 }]);
    const body = { piece_id: roll!.id, parts: [1000] };
    const shared = key();
    const cut = await owner.post('/v1/pieces/cut', body, shared);
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    const elsewhere = (await owner.post('/v1/stores', { code: `WS-${keys}`, name: 'Elsewhere' })).body;
    const tokenFor = async (storeIds: string[]) =>
      t.client((await owner.post('/v1/tokens', { name: `m-${storeIds[0]}`, role: 'manager', store_ids: storeIds })).body.token);
    const outsider = await tokenFor([elsewhere.id]);
    const insider = await tokenFor([store.id]);
    const before = await snapshot();
    const refused = await outsider.post('/v1/pieces/cut', body, shared);
    assert.equal(refused.status, 404, JSON.stringify(refused.body));
    assert.equal(refused.headers.get('idempotent-replayed'), null);
    assert.ok(!JSON.stringify(refused.body).includes(roll!.id), 'nothing of the cut leaks');
    for (const caller of [owner, insider]) {
      const replay = await caller.post('/v1/pieces/cut', body, shared);
      assert.equal(replay.status, 201, JSON.stringify(replay.body));
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(replay.body, cut.body);
    }
    assert.deepEqual(await snapshot(), before);
  });

  it('bad input is refused with problem+json and nothing is written', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 1000 }]);
    const [spare] = await receive(buttons.id, [{ kind: 'spare', quantity: 10 }]);
    const [bundle] = await receive(buttons.id, [{ kind: 'bundle', quantity: 5 }]);
    assert.ok(roll && spare && bundle);
    const cases: Array<[string, () => Promise<ApiResponse>, number, string]> = [
      ['SKU that does not track pieces', () => owner.post('/v1/pieces', { store_id: store.id, sku_id: plain.id, pieces: [{ kind: 'spare', quantity: 1 }] }), 400, 'validation_failed'],
      ['spare piece of a metre SKU', () => owner.post('/v1/pieces', { store_id: store.id, sku_id: cloth.id, pieces: [{ kind: 'spare', quantity: 1 }] }), 400, 'validation_failed'],
      ['zero length', () => owner.post('/v1/pieces', { store_id: store.id, sku_id: cloth.id, pieces: [{ kind: 'roll', quantity: 0 }] }), 400, 'validation_failed'],
      ['unknown kind', () => owner.post('/v1/pieces', { store_id: store.id, sku_id: cloth.id, pieces: [{ kind: 'sheet', quantity: 1 }] }), 400, 'validation_failed'],
      ['lengths that do not fit', () => owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [600, 401] }), 422, 'unprocessable'],
      ['fractional length', () => owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1.5] }), 400, 'validation_failed'],
      ['cutting a bundle', () => owner.post('/v1/pieces/cut', { piece_id: bundle.id, parts: [1] }), 422, 'unprocessable'],
      ['cutting an unknown piece', () => owner.post('/v1/pieces/cut', { piece_id: '00000000-0000-4000-8000-000000000009', parts: [1] }), 404, 'not_found'],
      ['combining a roll', () => owner.post('/v1/pieces/combine', { piece_ids: [roll.id, spare.id], bundle_size: 1, bundle_count: 1 }), 422, 'unprocessable'],
      ['bundles that do not fit', () => owner.post('/v1/pieces/combine', { piece_ids: [spare.id], bundle_size: 4, bundle_count: 3 }), 422, 'unprocessable'],
      ['a piece listed twice', () => owner.post('/v1/pieces/combine', { piece_ids: [spare.id, spare.id], bundle_size: 1, bundle_count: 1 }), 400, 'validation_failed'],
      ['reservation without expiry', () => owner.post('/v1/pieces/reservations', { piece_ids: [spare.id], expires_in_seconds: 0 }), 400, 'validation_failed'],
      ['revert of an unknown operation', () => owner.post('/v1/operations/00000000-0000-4000-8000-000000000009/revert'), 404, 'not_found'],
    ];
    for (const [name, send, status, code] of cases) {
      const before = await snapshot();
      const response = await send();
      assert.equal(response.status, status, `${name}: ${JSON.stringify(response.body)}`);
      assertProblem(response, status, code);
      assert.deepEqual(await snapshot(), before, name);
    }
  });

  it('revert and release take no body: anything but none, {} or null is 400 validation_failed and nothing is written', async () => {
    const [spare] = await receive(buttons.id, [{ kind: 'spare', quantity: 3 }]);
    assert.ok(spare);
    const reserve = await owner.post('/v1/pieces/reservations', { piece_ids: [spare.id], expires_in_seconds: 600 }, key());
    assert.equal(reserve.status, 201, JSON.stringify(reserve.body));
    const before = await snapshot();
    const release = await owner.post(`/v1/pieces/reservations/${reserve.body.op_id}/release`, { keep_consumed: false }, key());
    assertProblem(release, 400, 'validation_failed');
    assert.ok(release.body.errors.some((e: { path: string; message: string }) => e.path === '/body/keep_consumed' && e.message === 'is not a known field'), JSON.stringify(release.body.errors));
    const revert = await owner.post(`/v1/operations/${reserve.body.op_id}/revert`, { reason: 'mistake', cascade: true }, key());
    assertProblem(revert, 400, 'validation_failed');
    assertProblem(await owner.post(`/v1/operations/${reserve.body.op_id}/revert`, []), 400, 'validation_failed');
    assert.deepEqual(await snapshot(), before);
    assert.equal((await owner.get(`/v1/pieces/${spare.id}`)).body.status, 'reserved');
    // the accepted forms
    assert.equal((await owner.post(`/v1/pieces/reservations/${reserve.body.op_id}/release`, null, key())).status, 200);
    assert.equal((await owner.get(`/v1/pieces/${spare.id}`)).body.status, 'in_stock');
  });

  it('an operation type without a revert handler is 422, nothing written', async () => {
    const created = await owner.post('/v1/stores', { code: 'NOREV', name: 'No revert' });
    const before = await snapshot();
    assertProblem(await owner.post(`/v1/operations/${created.body.op_id}/revert`), 422, 'unprocessable');
    assert.deepEqual(await snapshot(), before);
  });

  it('two concurrent combines over overlapping spare pieces: one wins, the other is a conflict, counts exact', async () => {
    for (let round = 0; round < 5; round++) {
      const pieces = await receive(buttons.id, Array.from({ length: 6 }, () => ({ kind: 'spare', quantity: 10 })));
      const ids = pieces.map((p) => p.id);
      const stockBefore = await stockOf(buttons.id);
      const liveBefore = await livePieces(buttons.id);
      // Overlap on pieces 2 and 3; opposite order in the body to tempt a deadlock.
      const [a, b] = await Promise.all([
        owner.post('/v1/pieces/combine', { piece_ids: ids.slice(0, 4), bundle_size: 15, bundle_count: 2 }, key()),
        owner.post('/v1/pieces/combine', { piece_ids: ids.slice(2, 6).reverse(), bundle_size: 15, bundle_count: 2 }, key()),
      ]);
      const statuses = [a.status, b.status].sort();
      assert.deepEqual(statuses, [201, 409], JSON.stringify([a.body, b.body]));
      const winner = a.status === 201 ? a : b;
      const loser = a.status === 201 ? b : a;
      assert.equal(loser.body.code, 'piece_unavailable');
      // Then: exactly the winner's inputs are consumed, its 2 bundles + remainder exist, stock unchanged
      assert.equal(await stockOf(buttons.id), stockBefore);
      const consumed = (await t.admin.query(`SELECT id, consumed_by_op FROM pieces WHERE id = ANY($1::uuid[]) AND status = 'consumed'`, [ids])).rows;
      assert.equal(consumed.length, 4);
      assert.ok(consumed.every((row) => row.consumed_by_op === winner.body.op_id));
      const created = (await t.admin.query(`SELECT kind, quantity::int FROM pieces WHERE created_by_op = $1 ORDER BY kind`, [winner.body.op_id])).rows;
      assert.deepEqual(created.map((r) => [r.kind, r.quantity]), [['bundle', 15], ['bundle', 15], ['spare', 10]]);
      const liveAfter = await livePieces(buttons.id);
      assert.equal(liveAfter.length, liveBefore.length - 4 + 3);
      assert.equal(liveAfter.reduce((sum, p) => sum + p.quantity, 0), stockBefore);
      assert.equal(Number((await t.admin.query(`SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'piece.combine' AND id = $2`, [tenantId, loser.body.op_id ?? '00000000-0000-4000-8000-000000000000'])).rows[0].count), 0);
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('cut → combine → revert the combine → revert the cut gives back the exact original piece and stock', async () => {
    const [original] = await receive(buttons.id, [{ kind: 'spare', quantity: 100 }]);
    assert.ok(original);
    const liveBefore = await livePieces(buttons.id);
    const stockBefore = await stockOf(buttons.id);

    const cut = await owner.post('/v1/pieces/cut', { piece_id: original.id, parts: [30, 30] }, key());
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    const [a, b] = cut.body.pieces as Piece[];
    assert.ok(a && b);
    assert.equal(cut.body.remainder.quantity, 40);
    const combine = await owner.post('/v1/pieces/combine', { piece_ids: [a.id, b.id], bundle_size: 10, bundle_count: 5 }, key());
    assert.equal(combine.status, 201, JSON.stringify(combine.body));
    assert.equal(combine.body.bundles.length, 5);
    assert.equal(combine.body.remainder.quantity, 10);
    assert.equal(await stockOf(buttons.id), stockBefore);

    // Reverting the cut first is refused: its outputs were used by the combine
    const blockedBefore = await snapshot();
    const blocked = await owner.post(`/v1/operations/${cut.body.op_id}/revert`);
    assertProblem(blocked, 409, 'operation_already_used');
    assert.equal(blocked.body.used_by_op_id, combine.body.op_id);
    assert.equal(blocked.body.used_by_op_type, 'piece.combine');
    assert.match(blocked.body.detail, new RegExp(combine.body.op_id));
    assert.deepEqual(await snapshot(), blockedBefore);

    const revertCombine = await owner.post(`/v1/operations/${combine.body.op_id}/revert`, undefined, key());
    assert.equal(revertCombine.status, 200, JSON.stringify(revertCombine.body));
    assert.equal(revertCombine.body.reverted_op_id, combine.body.op_id);
    const afterCombineRevert = await t.admin.query(`SELECT id, status, consumed_by_op FROM pieces WHERE id = ANY($1::uuid[]) ORDER BY id`, [[a.id, b.id]]);
    assert.ok(afterCombineRevert.rows.every((row) => row.status === 'in_stock' && row.consumed_by_op === null));
    const outputs = (await t.admin.query(`SELECT deleted_by_op FROM pieces WHERE created_by_op = $1`, [combine.body.op_id])).rows;
    assert.equal(outputs.length, 6);
    assert.ok(outputs.every((row) => row.deleted_by_op === revertCombine.body.op_id));

    const revertCut = await owner.post(`/v1/operations/${cut.body.op_id}/revert`, undefined, key());
    assert.equal(revertCut.status, 200, JSON.stringify(revertCut.body));

    // Then: the live pieces are exactly those before the cut, the original back in stock
    const liveAfter = await livePieces(buttons.id);
    assert.deepEqual(
      liveAfter.map(({ version: _v, ...rest }) => rest),
      liveBefore.map(({ version: _v, ...rest }) => rest),
    );
    const restored = (await owner.get(`/v1/pieces/${original.id}`)).body;
    assert.equal(restored.status, 'in_stock');
    assert.equal(restored.quantity, 100);
    assert.equal(restored.consumed_by_op, null);
    assert.equal(restored.deleted_by_op, null);
    assert.equal(restored.version, 3); // received (1), cut (2), restored (3)
    assert.equal(await stockOf(buttons.id), stockBefore);
    const reverted = (await t.admin.query(`SELECT id, reverted_by FROM operations WHERE id = ANY($1::uuid[]) ORDER BY id`, [[cut.body.op_id, combine.body.op_id]])).rows;
    assert.deepEqual(
      Object.fromEntries(reverted.map((row) => [row.id, row.reverted_by])),
      { [cut.body.op_id]: revertCut.body.op_id, [combine.body.op_id]: revertCombine.body.op_id },
    );
    assert.deepEqual(await runChecks(), []);

    // Reverting twice is a replay: same result, nothing new
    const before = await snapshot();
    const again = await owner.post(`/v1/operations/${cut.body.op_id}/revert`, undefined, key());
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.body, revertCut.body);
    assert.deepEqual(await snapshot(), before);

    // History of a cut part: created by the cut, combined, restored by the first revert, deleted by the second
    const history = await owner.get(`/v1/pieces/${a.id}/history`);
    assert.equal(history.status, 200);
    assert.deepEqual(
      history.body.items.map((item: { type: string; op_id: string; operation_type: string }) => [item.type, item.op_id, item.operation_type]),
      [
        ['piece.created', cut.body.op_id, 'piece.cut'],
        ['piece.combined', combine.body.op_id, 'piece.combine'],
        ['piece.reverted', revertCombine.body.op_id, 'operation.revert'],
        ['piece.reverted', revertCut.body.op_id, 'operation.revert'],
      ],
    );
    const [created, combined, restoredStep, deleted] = history.body.items;
    assert.equal(created.before, null);
    assert.equal(created.after.status, 'in_stock');
    assert.deepEqual([combined.before.status, combined.after.status, combined.after.consumed_by_op], ['in_stock', 'consumed', combine.body.op_id]);
    assert.deepEqual([restoredStep.before.status, restoredStep.after.status], ['consumed', 'in_stock']);
    assert.deepEqual([deleted.before.deleted_by_op, deleted.after.deleted_by_op], [null, revertCut.body.op_id]);
    assert.ok(history.body.items.every((item: { actor: string }) => item.actor.startsWith('owner:')));
    // And the original's: received, cut, restored
    const originalHistory = await owner.get(`/v1/pieces/${original.id}/history`);
    assert.deepEqual(
      originalHistory.body.items.map((item: { type: string; op_id: string }) => [item.type, item.op_id]),
      [['piece.created', original.created_by_op], ['piece.cut', cut.body.op_id], ['piece.reverted', revertCut.body.op_id]],
    );
  });

  it('reservations: reserved pieces are held for their operation; expired ones are released lazily and by the sweep', async () => {
    const [p1, p2, p3] = await receive(buttons.id, [{ kind: 'spare', quantity: 5 }, { kind: 'spare', quantity: 5 }, { kind: 'spare', quantity: 5 }]);
    assert.ok(p1 && p2 && p3);
    const reserve = await owner.post('/v1/pieces/reservations', { piece_ids: [p1.id, p2.id], expires_in_seconds: 600 }, key());
    assert.equal(reserve.status, 201, JSON.stringify(reserve.body));
    assert.ok(reserve.body.pieces.every((p: Piece) => p.status === 'reserved' && p.reserved_by_op === reserve.body.op_id));

    // Another operation cannot use them
    const before = await snapshot();
    const refused = await owner.post('/v1/pieces/combine', { piece_ids: [p1.id, p3.id], bundle_size: 10, bundle_count: 1 });
    assertProblem(refused, 409, 'piece_unavailable');
    assert.deepEqual(refused.body.pieces, [{ id: p1.id, status: 'reserved', held_by_op: reserve.body.op_id }]);
    assertProblem(await owner.post('/v1/pieces/reservations', { piece_ids: [p2.id], expires_in_seconds: 60 }), 409, 'piece_unavailable');
    assert.deepEqual(await snapshot(), before);

    // The reservation's own use: a cut naming it (its pieces stay held by the reservation)
    const cut = await owner.post('/v1/pieces/cut', { piece_id: p1.id, parts: [2], reservation_op_id: reserve.body.op_id }, key());
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    const made = [cut.body.pieces[0].id, cut.body.remainder.id];

    // Release frees what is still held (p2 and the cut's pieces), the consumed p1 stays consumed
    const release = await owner.post(`/v1/pieces/reservations/${reserve.body.op_id}/release`, undefined, key());
    assert.equal(release.status, 200);
    assert.deepEqual(
      release.body.released.map((p: Piece) => [p.id, p.status]).sort(),
      [p2.id, ...made].map((id) => [id, 'in_stock']).sort(),
    );
    assert.equal((await owner.get(`/v1/pieces/${p1.id}`)).body.status, 'consumed');

    // Lazy expiry: a reservation past its time no longer holds the piece
    const short = await owner.post('/v1/pieces/reservations', { piece_ids: [p2.id], expires_in_seconds: 60 }, key());
    assert.equal(short.status, 201);
    await t.admin.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE id = $1`, [p2.id]);
    assert.equal((await owner.get(`/v1/pieces/${p2.id}`)).body.status, 'in_stock');
    const used = await owner.post('/v1/pieces/combine', { piece_ids: [p2.id, p3.id], bundle_size: 10, bundle_count: 1 }, key());
    assert.equal(used.status, 201, JSON.stringify(used.body));
    const p2History = (await owner.get(`/v1/pieces/${p2.id}/history`)).body.items.map((item: { type: string }) => item.type);
    assert.deepEqual(p2History, ['piece.created', 'piece.reserved', 'piece.released', 'piece.reserved', 'piece.reservation_expired', 'piece.combined']);

    // The sweep releases expired reservations of every tenant, as its own operation
    const [p4] = await receive(buttons.id, [{ kind: 'spare', quantity: 7 }]);
    assert.ok(p4);
    const held = await owner.post('/v1/pieces/reservations', { piece_ids: [p4.id], expires_in_seconds: 60 }, key());
    assert.equal(held.status, 201);
    await t.admin.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE id = $1`, [p4.id]);
    assert.equal(await sweepExpiredPieceReservations(t.db), 1);
    const swept = (await t.admin.query(`SELECT status, reserved_by_op FROM pieces WHERE id = $1`, [p4.id])).rows[0];
    assert.deepEqual(swept, { status: 'in_stock', reserved_by_op: null });
    assert.equal(await sweepExpiredPieceReservations(t.db), 0);
    const sweepEvent = (await t.admin.query(`SELECT e.type, o.type AS op_type FROM events e JOIN operations o ON o.id = e.op_id WHERE e.subject_id = $1 ORDER BY e.id DESC LIMIT 1`, [p4.id])).rows[0];
    assert.deepEqual(sweepEvent, { type: 'piece.reservation_expired', op_type: 'piece.reservations.expire' });
    assert.deepEqual(await runChecks(), []);
  });

  it('what a cut or combine makes of reserved pieces under their reservation stays held by it, until the same time; a sale naming it sells it', async () => {
    // Given a roll reserved for a customer
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 10_000 }]);
    assert.ok(roll);
    const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [roll.id], expires_in_seconds: 900 }, key());
    assert.equal(reservation.status, 201, JSON.stringify(reservation.body));
    // (an expiry to the microsecond, as the database keeps it)
    await t.admin.query(`UPDATE pieces SET reserved_until = date_trunc('second', now()) + interval '900.123456 seconds' WHERE id = $1`, [roll.id]);
    const exact = (await t.admin.query(`SELECT reserved_until::text AS until FROM pieces WHERE id = $1`, [roll.id])).rows[0].until;
    const until = new Date(exact).toISOString();
    // When the workshop cuts the customer's length under the reservation
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [3000], reservation_op_id: reservation.body.op_id }, key());
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    // Then the length and the remainder are held by the same reservation, until the same time (to the microsecond)
    const [length] = cut.body.pieces;
    const remainder = cut.body.remainder;
    for (const piece of [length, remainder]) {
      assert.deepEqual([piece.status, piece.reserved_by_op, piece.reserved_until], ['reserved', reservation.body.op_id, until]);
    }
    const kept = (await t.admin.query(`SELECT reserved_until::text AS until FROM pieces WHERE id = ANY($1::uuid[])`, [[length.id, remainder.id]])).rows;
    assert.deepEqual(kept, [{ until: exact }, { until: exact }]);
    // And nothing else may take them: a sale or cut that does not name the reservation is refused, nothing written
    let before = await snapshot();
    const sell = (extra: Record<string, unknown>) =>
      owner.post('/v1/sales', { store_id: store.id, payment_method: 'cash', items: [{ sku_id: cloth.id, piece_ids: [length.id], unit_price: 500 }], ...extra }, key());
    assertProblem(await sell({}), 409, 'piece_unavailable');
    assertProblem(await owner.post('/v1/pieces/cut', { piece_id: remainder.id, parts: [100] }, key()), 409, 'piece_unavailable');
    assert.deepEqual(await snapshot(), before);
    // And reverting the cut is refused while the reservation holds what it made, naming the reservation
    const refused = await owner.post(`/v1/operations/${cut.body.op_id}/revert`);
    assertProblem(refused, 409, 'operation_already_used');
    assert.equal(refused.body.used_by_op_id, reservation.body.op_id);
    assert.match(refused.body.detail, /is held by operation/);
    assert.deepEqual(await snapshot(), before);
    // And the customer's sale naming the reservation sells the length; the remainder stays held
    const sale = await sell({ reservation_op_id: reservation.body.op_id });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    assert.deepEqual(
      [(await owner.get(`/v1/pieces/${length.id}`)).body.status, (await owner.get(`/v1/pieces/${remainder.id}`)).body.status],
      ['sold', 'reserved'],
    );
    const remainderHistory = (await owner.get(`/v1/pieces/${remainder.id}/history`)).body.items;
    assert.deepEqual(
      remainderHistory.map((item: { type: string; after: { status: string } }) => [item.type, item.after.status]),
      [['piece.created', 'reserved']],
    );

    // Combine: spare pieces of which one is reserved, combined under that reservation → bundles and remainder held by it
    const [s1, s2] = await receive(buttons.id, [{ kind: 'spare', quantity: 6 }, { kind: 'spare', quantity: 5 }]);
    assert.ok(s1 && s2);
    const spareHold = await owner.post('/v1/pieces/reservations', { piece_ids: [s1.id], expires_in_seconds: 600 }, key());
    assert.equal(spareHold.status, 201);
    const combined = await owner.post('/v1/pieces/combine', { piece_ids: [s1.id, s2.id], bundle_size: 5, bundle_count: 2, reservation_op_id: spareHold.body.op_id }, key());
    assert.equal(combined.status, 201, JSON.stringify(combined.body));
    for (const piece of [...combined.body.bundles, combined.body.remainder]) {
      assert.deepEqual([piece.status, piece.reserved_by_op, piece.reserved_until], ['reserved', spareHold.body.op_id, spareHold.body.reserved_until]);
    }
    // A combine naming a reservation that holds none of its inputs makes pieces in stock
    const [s3, s4] = await receive(buttons.id, [{ kind: 'spare', quantity: 2 }, { kind: 'spare', quantity: 3 }]);
    assert.ok(s3 && s4);
    const free = await owner.post('/v1/pieces/combine', { piece_ids: [s3.id, s4.id], bundle_size: 5, bundle_count: 1, reservation_op_id: spareHold.body.op_id }, key());
    assert.equal(free.status, 201, JSON.stringify(free.body));
    assert.deepEqual([free.body.bundles[0].status, free.body.bundles[0].reserved_by_op], ['in_stock', null]);

    // An expired reservation holds nothing: a cut under it makes pieces in stock
    const [late] = await receive(cloth.id, [{ kind: 'roll', quantity: 2000 }]);
    assert.ok(late);
    const lapsed = await owner.post('/v1/pieces/reservations', { piece_ids: [late.id], expires_in_seconds: 60 }, key());
    assert.equal(lapsed.status, 201);
    await t.admin.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE id = $1`, [late.id]);
    const lateCut = await owner.post('/v1/pieces/cut', { piece_id: late.id, parts: [500], reservation_op_id: lapsed.body.op_id }, key());
    assert.equal(lateCut.status, 201, JSON.stringify(lateCut.body));
    assert.deepEqual([lateCut.body.pieces[0].status, lateCut.body.remainder.status], ['in_stock', 'in_stock']);

    // Releasing the first reservation frees the remainder; then the cut's revert is refused only for the sold length
    const release = await owner.post(`/v1/pieces/reservations/${reservation.body.op_id}/release`, undefined, key());
    assert.deepEqual(release.body.released.map((p: Piece) => [p.id, p.status]), [[remainder.id, 'in_stock']]);
    before = await snapshot();
    const stillRefused = await owner.post(`/v1/operations/${cut.body.op_id}/revert`);
    assertProblem(stillRefused, 409, 'operation_already_used');
    assert.equal(stillRefused.body.used_by_op_id, sale.body.op_id);
    assert.deepEqual(await snapshot(), before);
    assert.equal(await stockOf(cloth.id), (await livePieces(cloth.id)).reduce((sum: number, p: { quantity: number }) => sum + p.quantity, 0));
    assert.deepEqual(await runChecks(), []);
  });

  it('releasing or reverting a reservation that already expired releases nothing: its pieces are recorded as expired, as reads showed them', async () => {
    // Given two reservations whose time is over (not yet released by any command or the sweep)
    const [p1, p2] = await receive(buttons.id, [{ kind: 'spare', quantity: 2 }, { kind: 'spare', quantity: 3 }]);
    assert.ok(p1 && p2);
    const first = await owner.post('/v1/pieces/reservations', { piece_ids: [p1.id], expires_in_seconds: 60 }, key());
    const second = await owner.post('/v1/pieces/reservations', { piece_ids: [p2.id], expires_in_seconds: 60 }, key());
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    await t.admin.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE id = ANY($1::uuid[])`, [[p1.id, p2.id]]);
    assert.equal((await owner.get(`/v1/pieces/${p1.id}`)).body.status, 'in_stock');

    // When the first is released and the second reverted
    const release = await owner.post(`/v1/pieces/reservations/${first.body.op_id}/release`, undefined, key());
    assert.equal(release.status, 200, JSON.stringify(release.body));
    const revert = await owner.post(`/v1/operations/${second.body.op_id}/revert`, undefined, key());
    assert.equal(revert.status, 200, JSON.stringify(revert.body));

    // Then neither claims to have released what the reservation no longer held; the pieces' history says they expired
    assert.deepEqual(release.body.released, []);
    assert.deepEqual(revert.body.changes.map((c: { type: string; subject_id: string }) => [c.type, c.subject_id]), [
      ['piece.reservation_expired', p2.id],
      ['operation.reverted', second.body.op_id],
    ]);
    for (const piece of [p1, p2]) {
      const types = (await owner.get(`/v1/pieces/${piece.id}/history`)).body.items.map((item: { type: string }) => item.type);
      assert.deepEqual(types, ['piece.created', 'piece.reserved', 'piece.reservation_expired']);
    }
    const rows = (await t.admin.query(`SELECT status, reserved_by_op FROM pieces WHERE id = ANY($1::uuid[])`, [[p1.id, p2.id]])).rows;
    assert.deepEqual(rows, [{ status: 'in_stock', reserved_by_op: null }, { status: 'in_stock', reserved_by_op: null }]);
    assert.deepEqual(await runChecks(), []);
  });

  it('a reservation is over when the command decides, to the microsecond, not when its transaction began: one that ended a microsecond after the transaction began is released, one still running is held', async () => {
    // Given two pieces reserved, whose reservations are then set to end one
    // microsecond after the command's transaction began (over before the
    // command decides) and a minute after the command's clock (JavaScript
    // dates have milliseconds: compared there, a reservation counted as over
    // up to a millisecond early; compared with the transaction's start, a
    // reservation over by the time the command locked its piece still held it)
    const [ended, running] = await receive(buttons.id, [{ kind: 'spare', quantity: 1 }, { kind: 'spare', quantity: 1 }]);
    assert.ok(ended && running);
    const reserve = await owner.post('/v1/pieces/reservations', { piece_ids: [ended.id, running.id], expires_in_seconds: 60 }, key());
    assert.equal(reserve.status, 201);
    const outcome = await runCommand(
      t.db,
      { tenantId, principal: { kind: 'operator', name: 'test' }, correlationId: `expiry-edge-${keys}`, fingerprint: 'expiry-edge' },
      { type: 'test.expiry_edge' },
      async (cmd) => {
        await sql`UPDATE pieces SET reserved_until = now() + interval '1 microsecond' WHERE tenant_id = ${tenantId} AND id = ${ended.id}`.execute(cmd.tx);
        await sql`UPDATE pieces SET reserved_until = clock_timestamp() + interval '1 minute' WHERE tenant_id = ${tenantId} AND id = ${running.id}`.execute(cmd.tx);
        const after = await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, tenantId, [ended.id, running.id]));
        const read = await all(
          cmd.tx,
          sql<{ id: string; held: boolean }>`SELECT id, status = 'reserved' AND reserved_until > statement_timestamp() AS held FROM pieces WHERE tenant_id = ${tenantId} AND id IN (${ended.id}, ${running.id})`,
        );
        const held = new Map(read.map((row) => [row.id, row.held]));
        return {
          status: 200,
          body: after.map((piece) => ({ status: piece.status, reserved_by_op: piece.reserved_by_op, held_by_the_database_clock: held.get(piece.id) })),
        };
      },
    );
    // Then the command released the one that was over and kept the other, as the database clock says
    const byId = new Map([[ended.id, 'ended'], [running.id, 'running']]);
    const sorted = [ended.id, running.id].sort();
    assert.deepEqual(
      Object.fromEntries((outcome.body as Array<unknown>).map((state, index) => [byId.get(sorted[index]!), state])),
      {
        ended: { status: 'in_stock', reserved_by_op: null, held_by_the_database_clock: false },
        running: { status: 'reserved', reserved_by_op: reserve.body.op_id, held_by_the_database_clock: true },
      },
    );
    const history = async (id: string) => (await owner.get(`/v1/pieces/${id}/history`)).body.items.map((item: { type: string }) => item.type);
    assert.deepEqual(await history(ended.id), ['piece.created', 'piece.reserved', 'piece.reservation_expired']);
    assert.deepEqual(await history(running.id), ['piece.created', 'piece.reserved']);
  });

  it('revert is refused while an output is reserved by another operation, naming it', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 3000 }]);
    assert.ok(roll);
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, key());
    assert.equal(cut.status, 201);
    const reserve = await owner.post('/v1/pieces/reservations', { piece_ids: [cut.body.pieces[0].id], expires_in_seconds: 600 }, key());
    assert.equal(reserve.status, 201);
    const before = await snapshot();
    const refused = await owner.post(`/v1/operations/${cut.body.op_id}/revert`);
    assertProblem(refused, 409, 'operation_already_used');
    assert.equal(refused.body.used_by_op_id, reserve.body.op_id);
    assert.deepEqual(await snapshot(), before);
    // Reverting the reservation releases it; then the cut reverts
    assert.equal((await owner.post(`/v1/operations/${reserve.body.op_id}/revert`)).status, 200);
    assert.equal((await owner.post(`/v1/operations/${cut.body.op_id}/revert`)).status, 200);
    assert.equal((await owner.get(`/v1/pieces/${roll.id}`)).body.status, 'in_stock');
  });

  it('reverting a receive removes its pieces and their stock', async () => {
    const stockBefore = await stockOf(cloth.id);
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 777 }]);
    assert.ok(roll);
    const revert = await owner.post(`/v1/operations/${roll.created_by_op}/revert`, undefined, key());
    assert.equal(revert.status, 200, JSON.stringify(revert.body));
    assert.equal(await stockOf(cloth.id), stockBefore);
    const row = (await t.admin.query('SELECT deleted_by_op, status FROM pieces WHERE id = $1', [roll.id])).rows[0];
    assert.deepEqual(row, { deleted_by_op: revert.body.op_id, status: 'in_stock' });
    assertProblem(await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1] }), 409, 'piece_unavailable');
  });

  it('pieces are never hard-deleted and their identity never changes (database triggers)', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 500 }]);
    assert.ok(roll);
    const client = await t.appPool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenantId]);
      for (const statement of [
        `UPDATE pieces SET original_piece_id = '${cloth.id}' WHERE id = '${roll.id}'`,
        `UPDATE pieces SET created_by_op = op_id WHERE false; UPDATE pieces SET quantity = 1 WHERE id = '${roll.id}'`,
        `DELETE FROM pieces WHERE id = '${roll.id}'`,
      ]) {
        await client.query('SAVEPOINT s');
        await assert.rejects(client.query(statement));
        await client.query('ROLLBACK TO SAVEPOINT s');
      }
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    await assert.rejects(t.admin.query(`UPDATE pieces SET created_by_op = $2 WHERE id = $1`, [roll.id, cloth.id]));
  });

  it('integrity: a stock balance that differs from the live pieces is reported by that check only', async () => {
    assert.deepEqual(await runChecks(), []);
    await t.admin.query(`UPDATE stock_balances SET quantity = quantity + 1 WHERE store_id = $1 AND sku_id = $2`, [store.id, buttons.id]);
    try {
      assert.deepEqual(await runChecks(), [{ check: 'piece_stock_matches_balance', subject: `stock:${store.id}/${buttons.id}` }]);
    } finally {
      await t.admin.query(`UPDATE stock_balances SET quantity = quantity - 1 WHERE store_id = $1 AND sku_id = $2`, [store.id, buttons.id]);
    }
    assert.deepEqual(await runChecks(), []);
  });

  it("integrity: that finding names its store and SKU in its detail (its review item is filed under the store, so the store's staff see it)", async () => {
    await t.admin.query(`UPDATE stock_balances SET quantity = quantity + 1 WHERE store_id = $1 AND sku_id = $2`, [store.id, buttons.id]);
    try {
      const response = await owner.get('/v1/integrity');
      assert.equal(response.status, 200);
      const findings = response.body.findings.filter((finding: { check: string }) => finding.check === 'piece_stock_matches_balance');
      assert.equal(findings.length, 1, JSON.stringify(response.body.findings));
      assert.equal(findings[0].detail.store_id, store.id);
      assert.equal(findings[0].detail.sku_id, buttons.id);
    } finally {
      await t.admin.query(`UPDATE stock_balances SET quantity = quantity - 1 WHERE store_id = $1 AND sku_id = $2`, [store.id, buttons.id]);
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('concurrent reverts of one operation: one takes effect, the others replay it; stock exact', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 4000 }]);
    assert.ok(roll);
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000, 1000] }, key());
    assert.equal(cut.status, 201);
    const stockBefore = await stockOf(cloth.id);
    const keys = [key(), key(), key()];
    const responses = await Promise.all(keys.map((k) => owner.post(`/v1/operations/${cut.body.op_id}/revert`, undefined, k)));
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(responses.filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 2);
    assert.equal(new Set(responses.map((r) => r.body.op_id)).size, 1);
    assert.equal(Number((await t.admin.query(`SELECT count(*) FROM operations WHERE tenant_id = $1 AND type = 'operation.revert' AND id = $2`, [tenantId, responses[0]?.body.op_id])).rows[0].count), 1);
    assert.equal(await stockOf(cloth.id), stockBefore);
    assert.deepEqual((await livePieces(cloth.id)).filter((p) => p.original_piece_id === roll.id).map((p) => p.id), [roll.id]);
    // Every key is kept with its answer, the replays' too: the same key for another request is refused.
    const replayedKey = keys[responses.findIndex((r) => r.headers.get('idempotent-replayed') === 'true')]!;
    const again = await owner.post(`/v1/operations/${cut.body.op_id}/revert`, undefined, replayedKey);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, responses[0]!.body);
    const other = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [500] }, key());
    assert.equal(other.status, 201, JSON.stringify(other.body));
    const reused = await owner.post(`/v1/operations/${other.body.op_id}/revert`, undefined, replayedKey);
    assert.equal(reused.status, 422);
    assert.equal(reused.body.code, 'idempotency_key_reused');
  });

  it('pieces outside a token\'s stores are 404 for reads, commands and reverts', async () => {
    const elsewhere = (await owner.post('/v1/stores', { code: 'WS2', name: 'Other workshop' })).body;
    const scoped = (await owner.post('/v1/tokens', { name: 'ws2 manager', role: 'manager', store_ids: [elsewhere.id] })).body;
    const other = t.client(scoped.token);
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 900 }]);
    assert.ok(roll);
    const before = await snapshot();
    assertProblem(await other.get(`/v1/pieces/${roll.id}`), 404, 'not_found');
    assertProblem(await other.get(`/v1/pieces/${roll.id}/history`), 404, 'not_found');
    assertProblem(await other.post('/v1/pieces/cut', { piece_id: roll.id, parts: [100] }), 404, 'not_found');
    assertProblem(await other.post(`/v1/operations/${roll.created_by_op}/revert`), 404, 'not_found');
    assertProblem(await other.post('/v1/pieces', { store_id: store.id, sku_id: cloth.id, pieces: [{ kind: 'roll', quantity: 1 }] }), 404, 'not_found');
    assert.deepEqual((await other.get('/v1/pieces')).body.items, []);
    assert.deepEqual(await snapshot(), before);
  });

  it('integrity: a piece left alive from a reverted operation is reported by that check only', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 2000 }]);
    assert.ok(roll);
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [500] }, key());
    assert.equal(cut.status, 201);
    const revert = await owner.post(`/v1/operations/${cut.body.op_id}/revert`, undefined, key());
    assert.equal(revert.status, 200);
    assert.deepEqual(await runChecks(), []);
    const part = cut.body.pieces[0].id;
    const client = await t.admin.connect();
    try {
      await client.query(`SET session_replication_role = replica`);
      // Undelete the part and take the same length from the restored roll's balance accounting: stock stays equal to live pieces
      await client.query(`UPDATE pieces SET deleted_by_op = NULL WHERE id = $1`, [part]);
      await client.query(`UPDATE stock_balances SET quantity = quantity + 500 WHERE store_id = $1 AND sku_id = $2`, [store.id, cloth.id]);
      assert.deepEqual(await runChecks(), [{ check: 'piece_consumed_by_reverted_or_live_operation', subject: `piece:${part}` }]);
      await client.query(`UPDATE pieces SET deleted_by_op = $2 WHERE id = $1`, [part, revert.body.op_id]);
      await client.query(`UPDATE stock_balances SET quantity = quantity - 500 WHERE store_id = $1 AND sku_id = $2`, [store.id, cloth.id]);
    } finally {
      await client.query(`SET session_replication_role = origin`);
      client.release();
    }
    assert.deepEqual(await runChecks(), []);
  });

  it('If-Match on a cut: a stale ETag is 412 version_conflict and nothing is written', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 5000 }]);
    assert.ok(roll);
    const seen = await owner.get(`/v1/pieces/${roll.id}`);
    assert.equal(seen.headers.get('etag'), '"1"');
    const reserve = await owner.post('/v1/pieces/reservations', { piece_ids: [roll.id], expires_in_seconds: 60 }, key());
    assert.equal(reserve.status, 201);
    const release = await owner.post(`/v1/pieces/reservations/${reserve.body.op_id}/release`, undefined, key());
    assert.equal(release.status, 200);
    const before = await snapshot();
    const stale = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { headers: { 'if-match': '"1"' } });
    assertProblem(stale, 412, 'version_conflict');
    assert.equal(stale.body.version, 3);
    const staleList = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { headers: { 'if-match': '"1", "2"' } });
    assertProblem(staleList, 412, 'version_conflict');
    assert.deepEqual(await snapshot(), before);
    const current = (await owner.get(`/v1/pieces/${roll.id}`)).headers.get('etag') ?? '';
    const fresh = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { headers: { 'if-match': `"1", ${current}` } });
    assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
  });

  it('If-Match: * on a cut matches the piece whatever its version (RFC 9110); on a piece that does not exist it is 404', async () => {
    const [roll] = await receive(cloth.id, [{ kind: 'roll', quantity: 5000 }]);
    assert.ok(roll);
    const cut = await owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { headers: { 'if-match': '*' }, ...key() });
    assert.equal(cut.status, 201, JSON.stringify(cut.body));
    assert.equal(cut.body.consumed.id, roll.id);
    const before = await snapshot();
    const missing = await owner.post('/v1/pieces/cut', { piece_id: '01a243c6-0000-7000-8000-000000000000', parts: [1000] }, { headers: { 'if-match': '*' } });
    assertProblem(missing, 404, 'not_found');
    assert.deepEqual(await snapshot(), before);
  });
});
