import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenStore } from '../sales/testkit.js';
import { commandRetries } from '../core/metrics.js';
import { sweepExpiredPieceReservations } from './sweepExpiredReservations.js';
import { assertStockMatchesPieces } from './testkit.js';

/**
 * Workshop commands racing each other over the same pieces, sent as real
 * concurrent HTTP requests; each test then checks the rows left behind:
 * stock = Σ live pieces, ledger = balance, every piece used by exactly one
 * operation, its history in order, and every integrity check clean.
 */
describe('workshop pieces under races: reverts, sales, voids, cuts and expiring reservations over the same pieces', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let cloth: string;
  let buttons: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'RACE');
    cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id;
    buttons = (await owner.post('/v1/skus', { code: 'BTN', name: 'Buttons', unit: 'piece', price: 5, tracks_pieces: true })).body.id;
  });
  after(() => t.close());

  const k = () => ({ idempotencyKey: randomUUID() });
  const receive = async (skuId: string, pieces: Array<{ kind: string; quantity: number }>) => {
    const response = await owner.post('/v1/pieces', { store_id: storeId, sku_id: skuId, pieces }, k());
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body as { op_id: string; pieces: Array<{ id: string; quantity: number }> };
  };
  const cut = (pieceId: string, parts: number[], extra: Record<string, unknown> = {}) => owner.post('/v1/pieces/cut', { piece_id: pieceId, parts, ...extra }, k());
  const sell = (skuId: string, pieceIds: string[], price = 500) =>
    owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items: [{ sku_id: skuId, piece_ids: pieceIds, unit_price: price }] }, k());
  const revert = (opId: string) => owner.post(`/v1/operations/${opId}/revert`, undefined, k());
  /** Until a session of this test's database waits for a lock in a statement LIKE `pattern`. */
  const untilWaitingForLock = async (pattern: string) => {
    for (;;) {
      const { rows } = await t.admin.query(
        `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE NOT l.granted AND a.datname = current_database() AND a.query LIKE $1`,
        [pattern],
      );
      if (rows[0].n > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  const piece = async (id: string) =>
    (await t.admin.query(`SELECT status, consumed_by_op, sold_by_op, reserved_by_op, deleted_by_op, version FROM pieces WHERE tenant_id = $1 AND id = $2`, [tenantId, id])).rows[0];
  const stockMatchesPieces = (skuId: string) => assertStockMatchesPieces(t.admin, tenantId, storeId, skuId);
  /** Moves a reservation's end into the past as time would (no trigger: the piece's version stays as its history left it). */
  const expire = async (pieceId: string) => {
    const client = await t.admin.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL session_replication_role = replica`);
      await client.query(`UPDATE pieces SET reserved_until = now() - interval '1 second' WHERE id = $1`, [pieceId]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  };
  /** The piece's history as its event types, checked to follow one another (each step's before = the previous after). */
  const historyChain = async (pieceId: string) => {
    const items = (await owner.get(`/v1/pieces/${pieceId}/history?limit=500`)).body.items as Array<{ type: string; before: any; after: any }>;
    for (let i = 1; i < items.length; i++) {
      assert.equal(items[i]!.before?.version, items[i - 1]!.after?.version, `history of ${pieceId} is in order: ${items.map((item) => item.type).join(', ')}`);
    }
    return items.map((item) => item.type);
  };

  it('a revert of a cut racing a sale of one of its outputs: exactly one of them takes effect', async () => {
    for (let round = 0; round < 4; round++) {
      const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 5000 }]);
      const cutting = await cut(roll!.id, [1000]);
      assert.equal(cutting.status, 201, JSON.stringify(cutting.body));
      const part = cutting.body.pieces[0].id as string;
      const [undo, sale] = await Promise.all([revert(cutting.body.op_id), sell(cloth, [part])]);
      assert.deepEqual([undo.status, sale.status].sort(), sale.status === 201 ? [201, 409] : [200, 409], JSON.stringify([undo.body, sale.body]));
      if (sale.status === 201) {
        assert.equal(undo.body.code, 'operation_already_used');
        assert.equal(undo.body.used_by_op_id, sale.body.op_id);
        assert.equal((await piece(part)).status, 'sold');
        assert.equal((await piece(roll!.id)).status, 'consumed');
      } else {
        assert.equal(sale.body.code, 'piece_unavailable');
        assert.equal((await piece(part)).deleted_by_op, undo.body.op_id);
        assert.equal((await piece(roll!.id)).status, 'in_stock');
      }
      await stockMatchesPieces(cloth);
      await historyChain(part);
      await historyChain(roll!.id);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a revert of a receive racing a cut, a reservation and a sale of its piece: one of them wins, the rest are refused', async () => {
    for (let round = 0; round < 4; round++) {
      const received = await receive(cloth, [{ kind: 'roll', quantity: 3000 }]);
      const roll = received.pieces[0]!.id;
      const [undo, cutting, reserving, sale] = await Promise.all([
        revert(received.op_id),
        cut(roll, [500]),
        owner.post('/v1/pieces/reservations', { piece_ids: [roll], expires_in_seconds: 600 }, k()),
        sell(cloth, [roll]),
      ]);
      const statuses = [undo.status, cutting.status, reserving.status, sale.status];
      assert.equal(statuses.filter((s) => s === 200 || s === 201).length, 1, JSON.stringify(statuses));
      assert.ok(statuses.every((s) => s === 200 || s === 201 || s === 409), JSON.stringify([undo.body, cutting.body, reserving.body, sale.body]));
      await stockMatchesPieces(cloth);
      await historyChain(roll);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a void of a piece sale racing a revert of the receive and a new sale of the piece: stock = live pieces whatever the order', async () => {
    for (let round = 0; round < 4; round++) {
      const received = await receive(buttons, [{ kind: 'spare', quantity: 6 }]);
      const spare = received.pieces[0]!.id;
      const first = await sell(buttons, [spare], 5);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      const [voiding, undo, again] = await Promise.all([
        owner.post(`/v1/sales/${first.body.id}/void`, { reason: 'race' }, k()),
        revert(received.op_id),
        sell(buttons, [spare], 5),
      ]);
      assert.equal(voiding.status, 200, JSON.stringify(voiding.body));
      assert.ok([200, 409].includes(undo.status), JSON.stringify(undo.body));
      assert.ok([201, 409].includes(again.status), JSON.stringify(again.body));
      assert.ok(!(undo.status === 200 && again.status === 201), 'the piece was not both deleted and sold again');
      const row = await piece(spare);
      if (again.status === 201) assert.equal(row.sold_by_op, again.body.op_id);
      else if (undo.status === 200) assert.equal(row.deleted_by_op, undo.body.op_id);
      else assert.equal(row.status, 'in_stock');
      await stockMatchesPieces(buttons);
      await historyChain(spare);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a reservation past its expiry raced by the sweep, a sale, a cut, a new reservation and its own release: one user, one expiry event', async () => {
    for (let round = 0; round < 4; round++) {
      const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 2000 }]);
      const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [roll!.id], expires_in_seconds: 60 }, k());
      assert.equal(reservation.status, 201);
      await expire(roll!.id);
      const [swept, sale, cutting, reserving, release, usingOld] = await Promise.all([
        sweepExpiredPieceReservations(t.db),
        sell(cloth, [roll!.id]),
        cut(roll!.id, [100]),
        owner.post('/v1/pieces/reservations', { piece_ids: [roll!.id], expires_in_seconds: 600 }, k()),
        owner.post(`/v1/pieces/reservations/${reservation.body.op_id}/release`, undefined, k()),
        cut(roll!.id, [200], { reservation_op_id: reservation.body.op_id }),
      ]);
      assert.ok(swept === 0 || swept === 1);
      assert.equal(release.status, 200, JSON.stringify(release.body));
      assert.deepEqual(release.body.released, [], 'an expired reservation holds nothing to release');
      const users = [sale, cutting, reserving, usingOld].filter((r) => r.status === 201);
      assert.equal(users.length, 1, JSON.stringify([sale.body, cutting.body, reserving.body, usingOld.body]));
      for (const r of [sale, cutting, reserving, usingOld]) assert.ok([201, 409].includes(r.status), JSON.stringify(r.body));
      const types = await historyChain(roll!.id);
      assert.equal(types.filter((type) => type === 'piece.reservation_expired').length, 1, types.join(', '));
      await stockMatchesPieces(cloth);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a piece\'s history is dated in its order: a revert whose transaction began before a reservation and release of its output is dated after them', async () => {
    // Given a cut whose output is then reserved and released by other commands
    // while a revert of the cut has already begun (its transaction started, held
    // at the cut's operation row — here by a test transaction, in life by
    // anything that makes it wait)
    const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 3000 }]);
    const cutting = await cut(roll!.id, [700]);
    assert.equal(cutting.status, 201);
    const part = cutting.body.pieces[0].id as string;
    const holder = await t.admin.connect();
    let undo: Promise<{ status: number; body: any }>;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM operations WHERE id = $1 FOR UPDATE', [cutting.body.op_id]);
      undo = revert(cutting.body.op_id);
      // the revert's transaction has begun and waits for the operation row
      await untilWaitingForLock('%FROM operations%FOR NO KEY UPDATE%');
      const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [part], expires_in_seconds: 600 }, k());
      assert.equal(reservation.status, 201, JSON.stringify(reservation.body));
      const release = await owner.post(`/v1/pieces/reservations/${reservation.body.op_id}/release`, undefined, k());
      assert.equal(release.status, 200, JSON.stringify(release.body));
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    const done = await undo!;
    assert.equal(done.status, 200, JSON.stringify(done.body));

    // Then the part's history lists created, reserved, released, reverted — and
    // dates them in that order; the piece's updated_at is the revert's, the last
    const items = (await owner.get(`/v1/pieces/${part}/history?limit=500`)).body.items as Array<{ type: string; created_at: string }>;
    assert.deepEqual(items.map((item) => item.type), ['piece.created', 'piece.reserved', 'piece.released', 'piece.reverted']);
    const micros = (
      await t.admin.query(
        `SELECT (extract(epoch FROM created_at) * 1000000)::bigint AS at FROM events WHERE tenant_id = $1 AND subject_type = 'piece' AND subject_id = $2 ORDER BY id`,
        [tenantId, part],
      )
    ).rows.map((row) => Number(row.at));
    assert.equal(micros.length, items.length);
    for (let i = 1; i < micros.length; i++) {
      assert.ok(micros[i]! >= micros[i - 1]!, `${items[i]!.type} is dated ${items[i]!.created_at}, before ${items[i - 1]!.type} at ${items[i - 1]!.created_at}`);
    }
    const row = (await t.admin.query(`SELECT updated_at FROM pieces WHERE id = $1`, [part])).rows[0];
    const releasedAt = (await t.admin.query(`SELECT max(created_at) AS at FROM events WHERE subject_id = $1 AND type = 'piece.released'`, [part])).rows[0].at as Date;
    assert.ok((row.updated_at as Date).getTime() >= releasedAt.getTime(), 'the revert, the last change, is the piece\'s updated_at');
    await stockMatchesPieces(cloth);
  });

  it('a release or revert of a reservation racing a cut under it: whatever the order, the released reservation holds nothing afterwards', async () => {
    // The cut takes the reserved roll first (it was waiting on the roll's lock
    // when the release began); the release, which listed the reservation's
    // pieces before the cut committed, then finds the roll consumed. The parts
    // the cut made under the reservation are held by it: the release, which
    // takes effect after the cut, must free them too.
    const waiting = async () =>
      Number(
        (
          await t.admin.query(
            `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()`,
          )
        ).rows[0].n,
      );
    for (const how of ['release', 'revert'] as const) {
      const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 4000 }]);
      const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [roll!.id], expires_in_seconds: 600 }, k());
      assert.equal(reservation.status, 201, JSON.stringify(reservation.body));
      const reservationOp = reservation.body.op_id as string;
      const retriesBefore = (await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0);
      const holder = await t.admin.connect();
      let cutting: Promise<{ status: number; body: any }>;
      let freeing: Promise<{ status: number; body: any }>;
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM pieces WHERE id = $1 FOR UPDATE', [roll!.id]);
        cutting = cut(roll!.id, [1000], { reservation_op_id: reservationOp });
        while ((await waiting()) < 1) await new Promise((resolve) => setTimeout(resolve, 10));
        freeing =
          how === 'release' ? owner.post(`/v1/pieces/reservations/${reservationOp}/release`, undefined, k()) : revert(reservationOp);
        while ((await waiting()) < 2) await new Promise((resolve) => setTimeout(resolve, 10));
        await holder.query('COMMIT');
      } finally {
        holder.release();
      }
      const [cutDone, freed] = await Promise.all([cutting!, freeing!]);
      assert.equal(cutDone.status, 201, JSON.stringify(cutDone.body));
      assert.equal(freed.status, 200, JSON.stringify(freed.body));
      // They queued up on the roll: neither was rolled back and run again
      // (a deadlock, found after deadlock_timeout, would have been).
      assert.equal((await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0), retriesBefore, `${how}: a transaction was run again`);
      const held = await t.admin.query(`SELECT id FROM pieces WHERE tenant_id = $1 AND reserved_by_op = $2`, [tenantId, reservationOp]);
      assert.deepEqual(held.rows, [], `${how}: pieces still held by a reservation that was ${how}d after the cut`);
      // and the cut can be reverted now (nothing holds its outputs)
      const undo = await revert(cutDone.body.op_id);
      assert.equal(undo.status, 200, JSON.stringify(undo.body));
      // and the roll, reserved before it was cut, comes back in stock (README: a restored input is in_stock)
      const restored = await piece(roll!.id);
      assert.deepEqual([restored.status, restored.reserved_by_op, restored.consumed_by_op], ['in_stock', null, null]);
      await stockMatchesPieces(cloth);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a reservation that ends while a sale waits for its piece no longer holds it: the sale, begun before the end, sells it (online, and offline without a shortfall)', async () => {
    // Given a piece reserved for a short while, and a sale of it — online, or
    // synced from a till — whose transaction began before the reservation's
    // end and waited for the piece's lock past it (held here by a test
    // transaction, in life by any command that locks the piece, e.g. the sweep)
    for (const source of ['online', 'offline'] as const) {
      const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 1500 }]);
      const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [roll!.id], expires_in_seconds: 3 }, k());
      assert.equal(reservation.status, 201, JSON.stringify(reservation.body));
      const holder = await t.admin.connect();
      let selling: Promise<{ status: number; body: any }>;
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM pieces WHERE id = $1 FOR UPDATE', [roll!.id]);
        const body = { store_id: storeId, payment_method: 'cash', items: [{ sku_id: cloth, piece_ids: [roll!.id], unit_price: 500 }] };
        selling =
          source === 'online'
            ? owner.post('/v1/sales', body, k())
            : owner.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), ...body, client_created_at: new Date().toISOString() }] }, k());
        // the sale's transaction has begun and waits for the piece, before the reservation ends
        for (;;) {
          const { rows } = await t.admin.query(
            `SELECT count(*)::int AS n, bool_and(p.reserved_until > now()) AS before_end FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             CROSS JOIN pieces p WHERE p.id = $1 AND NOT l.granted AND a.datname = current_database() AND a.query LIKE '%FROM pieces%FOR NO KEY UPDATE%'`,
            [roll!.id],
          );
          if (rows[0].n > 0) {
            assert.equal(rows[0].before_end, true, 'the sale began waiting before the reservation ended');
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        // the reservation ends while the sale waits: reads show the piece in stock
        for (;;) {
          const { rows } = await t.admin.query('SELECT reserved_until < clock_timestamp() AS over FROM pieces WHERE id = $1', [roll!.id]);
          if (rows[0].over) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const seen = await owner.get(`/v1/pieces/${roll!.id}`);
        assert.equal(seen.body.status, 'in_stock');
        await holder.query('COMMIT');
      } finally {
        holder.release();
      }
      // Then the sale sells the piece: the reservation it waited behind was over
      const sold = await selling!;
      if (source === 'online') {
        assert.equal(sold.status, 201, JSON.stringify(sold.body));
      } else {
        assert.equal(sold.status, 200, JSON.stringify(sold.body));
        const result = sold.body.results[0];
        assert.equal(result.status, 201, JSON.stringify(result.body));
        assert.equal(result.body.items[0].shortfall_quantity, 0, `the synced sale recorded an available piece as its shortfall: ${JSON.stringify(result.body.items[0])}`);
      }
      const row = await piece(roll!.id);
      assert.equal(row.status, 'sold', `${source}: the piece is sold`);
      assert.deepEqual((await historyChain(roll!.id)).slice(-2), ['piece.reservation_expired', 'piece.sold']);
      await stockMatchesPieces(cloth);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a reservation that waited for its piece\'s lock holds it for its whole time from when it took it, not from when its transaction began', async () => {
    // Given a reservation for one second whose transaction began, then waited
    // for the piece's lock longer than that (held by a test transaction, in
    // life by any command that locks the piece, e.g. the sweep)
    const { pieces: [roll] } = await receive(cloth, [{ kind: 'roll', quantity: 1200 }]);
    const holder = await t.admin.connect();
    let reserving: Promise<{ status: number; body: any }>;
    let lockReleasedAt: Date;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM pieces WHERE id = $1 FOR UPDATE', [roll!.id]);
      reserving = owner.post('/v1/pieces/reservations', { piece_ids: [roll!.id], expires_in_seconds: 1 }, k());
      await untilWaitingForLock('%FROM pieces%FOR NO KEY UPDATE%');
      await new Promise((resolve) => setTimeout(resolve, 1200));
      lockReleasedAt = (await holder.query('SELECT clock_timestamp() AS at')).rows[0].at as Date;
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    // Then it holds the piece until a second after it took it: it was not born expired
    const reserved = await reserving!;
    assert.equal(reserved.status, 201, JSON.stringify(reserved.body));
    assert.ok(new Date(reserved.body.reserved_until).getTime() > lockReleasedAt!.getTime(), `reserved until ${reserved.body.reserved_until}, before it took the piece at ${lockReleasedAt!.toISOString()}`);
    const seen = await owner.get(`/v1/pieces/${roll!.id}`);
    assert.equal(seen.body.status, 'reserved', 'the piece is held by the reservation just made');
    assert.equal(seen.body.reserved_by_op, reserved.body.op_id);
    await stockMatchesPieces(cloth);
  });

  it('a cut or combine of an output of a cut, queued before a revert of that cut: they queue up on the pieces, no deadlock — the first wins, the revert is refused', async () => {
    // The cut or combine makes pieces whose original_piece_id is the roll the
    // first cut consumed: inserting them checks that foreign key, a KEY SHARE
    // lock on the roll. The revert locks the roll and then waits for the
    // output the other holds. With the pieces locked FOR UPDATE (which blocks
    // KEY SHARE) the two deadlocked: after deadlock_timeout one was rolled
    // back and run again — a second's stall, and the winner was whichever the
    // deadlock detector chose, not the command that came first.
    const waiting = async () =>
      Number(
        (await t.admin.query(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()`)).rows[0].n,
      );
    for (const how of ['cut', 'combine'] as const) {
      const skuId = how === 'cut' ? cloth : buttons;
      const { pieces: [roll] } = await receive(skuId, [{ kind: how === 'cut' ? 'roll' : 'spare', quantity: 4000 }]);
      const first = await cut(roll!.id, [1000]);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      const part = first.body.pieces[0].id as string;
      const retriesBefore = (await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0);
      const holder = await t.admin.connect();
      let using: Promise<{ status: number; body: any }>;
      let undoing: Promise<{ status: number; body: any }>;
      try {
        // the output is busy (held here by a test transaction, in life by any command that locks it)
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM pieces WHERE id = $1 FOR UPDATE', [part]);
        using = how === 'cut' ? cut(part, [100]) : owner.post('/v1/pieces/combine', { piece_ids: [part], bundle_size: 10, bundle_count: 1 }, k());
        while ((await waiting()) < 1) await new Promise((resolve) => setTimeout(resolve, 10));
        undoing = revert(first.body.op_id);
        while ((await waiting()) < 2) await new Promise((resolve) => setTimeout(resolve, 10));
        await holder.query('COMMIT');
      } finally {
        holder.release();
      }
      const [used, undone] = await Promise.all([using!, undoing!]);
      assert.equal(used.status, 201, `${how}: ${JSON.stringify(used.body)}`);
      assert.equal(undone.status, 409, `${how}: ${JSON.stringify(undone.body)}`);
      assert.equal(undone.body.code, 'operation_already_used');
      assert.equal(undone.body.used_by_op_id, used.body.op_id);
      assert.equal((await commandRetries.get()).values.reduce((sum, value) => sum + value.value, 0), retriesBefore, `${how}: a transaction was run again (deadlock)`);
      assert.equal((await piece(part)).consumed_by_op, used.body.op_id);
      assert.equal((await piece(roll!.id)).status, 'consumed');
      await stockMatchesPieces(skuId);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('reverts of a cut and of the combine that used its outputs, at once: the combine first or the cut refused — never both half-done', async () => {
    for (let round = 0; round < 4; round++) {
      const { pieces: [spare] } = await receive(buttons, [{ kind: 'spare', quantity: 20 }]);
      const split = await cut(spare!.id, [5, 5]);
      assert.equal(split.status, 201);
      const combine = await owner.post('/v1/pieces/combine', { piece_ids: split.body.pieces.map((p: { id: string }) => p.id), bundle_size: 10, bundle_count: 1 }, k());
      assert.equal(combine.status, 201, JSON.stringify(combine.body));
      const [undoCut, undoCombine] = await Promise.all([revert(split.body.op_id), revert(combine.body.op_id)]);
      assert.equal(undoCombine.status, 200, JSON.stringify(undoCombine.body));
      assert.ok([200, 409].includes(undoCut.status), JSON.stringify(undoCut.body));
      if (undoCut.status === 200) assert.equal((await piece(spare!.id)).status, 'in_stock');
      else assert.equal(undoCut.body.used_by_op_id, combine.body.op_id);
      await stockMatchesPieces(buttons);
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });
});
