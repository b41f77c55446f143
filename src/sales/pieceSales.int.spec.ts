import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { integrityFindings } from '../../test/support/integrity.js';
import { givenSku, givenStock, givenStore, saleRowCounts } from './testkit.js';

interface Piece {
  id: string;
  quantity: number;
  status: string;
}

describe('selling workshop pieces (POST /v1/sales with piece_ids, void, sync; adjustments refused)', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  let otherStoreId: string;
  let cloth: string;
  let buttons: string;
  let plain: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'PS1');
    otherStoreId = await givenStore(owner, 'PS2');
    cloth = (await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 500, tracks_pieces: true })).body.id;
    buttons = (await owner.post('/v1/skus', { code: 'BTN', name: 'Buttons', unit: 'piece', price: 5, tracks_pieces: true })).body.id;
    plain = await givenSku(owner, 'PLAIN', 'piece', 100);
    await givenStock(owner, storeId, [{ sku_id: plain, quantity: 1000 }]);
  });
  after(() => t.close());

  const receive = async (skuId: string, pieces: Array<{ kind: string; quantity: number }>, store = storeId): Promise<Piece[]> => {
    const response = await owner.post('/v1/pieces', { store_id: store, sku_id: skuId, pieces }, { idempotencyKey: randomUUID() });
    assert.equal(response.status, 201, JSON.stringify(response.body));
    return response.body.pieces;
  };
  const sell = (items: unknown[], store = storeId) => owner.post('/v1/sales', { store_id: store, payment_method: 'cash', items }, { idempotencyKey: randomUUID() });
  const pieceRows = async (ids: string[]) =>
    (
      await t.admin.query(`SELECT id, status, sold_by_op, version FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`, [tenantId, ids])
    ).rows as Array<{ id: string; status: string; sold_by_op: string | null; version: number }>;
  const stockOf = async (skuId: string, store = storeId) =>
    Number((await t.admin.query('SELECT quantity FROM stock_balances WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3', [tenantId, store, skuId])).rows[0]?.quantity ?? 0);
  const livePieces = async (skuId: string, store = storeId) =>
    Number(
      (
        await t.admin.query(
          `SELECT coalesce(sum(quantity), 0)::bigint AS q FROM pieces
           WHERE tenant_id = $1 AND store_id = $2 AND sku_id = $3 AND deleted_by_op IS NULL AND status IN ('in_stock', 'reserved')`,
          [tenantId, store, skuId],
        )
      ).rows[0].q,
    );
  /** Every row a sale or its pieces could write, plus every piece's state. */
  const snapshot = async (): Promise<Record<string, unknown>> => ({
    ...(await saleRowCounts(t, tenantId)),
    pieces: (
      await t.admin.query(`SELECT string_agg(id || ':' || status || ':' || version, ',' ORDER BY id) AS s FROM pieces WHERE tenant_id = $1`, [tenantId])
    ).rows[0].s,
  });
  const history = async (pieceId: string) => (await owner.get(`/v1/pieces/${pieceId}/history?limit=500`)).body.items as Array<{ type: string; op_id: string; operation_type: string; before: any; after: any }>;
  function assertProblem(response: ApiResponse, status: number, code: string) {
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(response.body.code, code);
  }

  it('a sale naming pieces marks them sold by its operation and takes exactly their sum from stock; the void returns them', async () => {
    // Given three rolls (5 m, 3 m, 2 m)
    const [a, b, c] = await receive(cloth, [
      { kind: 'roll', quantity: 5000 },
      { kind: 'roll', quantity: 3000 },
      { kind: 'roll', quantity: 2000 },
    ]);
    assert.ok(a && b && c);
    const stockBefore = await stockOf(cloth);
    const plainBefore = await stockOf(plain);
    // When two of them are sold (quantity omitted), with a plain line
    const response = await sell([
      { sku_id: cloth, piece_ids: [a.id, b.id], unit_price: 500 },
      { sku_id: plain, quantity: 2, unit_price: 100 },
    ]);
    // Then
    assert.equal(response.status, 201, JSON.stringify(response.body));
    const sale = response.body;
    assert.deepEqual(
      sale.items.map((i: any) => [i.sku_id, i.quantity, i.line_total, i.piece_ids, i.shortfall_quantity]),
      [
        [cloth, 8000, 4000, [a.id, b.id], 0],
        [plain, 2, 200, [], 0],
      ],
    );
    assert.equal(sale.total, 4200);
    assert.deepEqual((await owner.get(`/v1/sales/${sale.id}`)).body, sale);
    const sold = await pieceRows([a.id, b.id, c.id]);
    assert.deepEqual(
      sold.map((p) => [p.id, p.status, p.sold_by_op, p.version]),
      [
        [a.id, 'sold', sale.op_id, 2],
        [b.id, 'sold', sale.op_id, 2],
        [c.id, 'in_stock', null, 1],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
    );
    assert.equal(await stockOf(cloth), stockBefore - 8000);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    assert.equal(await stockOf(plain), plainBefore - 2);
    const ledger = await t.admin.query(`SELECT sku_id, quantity_change::int, kind FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY sku_id`, [tenantId, sale.op_id]);
    assert.deepEqual(
      ledger.rows,
      [
        { sku_id: cloth, quantity_change: -8000, kind: 'sale' },
        { sku_id: plain, quantity_change: -2, kind: 'sale' },
      ].sort((x, y) => (x.sku_id < y.sku_id ? -1 : 1)),
    );
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
    // The piece's history shows the sale
    const soldStep = (await history(a.id)).at(-1);
    assert.ok(soldStep);
    assert.deepEqual(
      [soldStep.type, soldStep.op_id, soldStep.operation_type, soldStep.before.status, soldStep.after.status, soldStep.after.sold_by_op],
      ['piece.sold', sale.op_id, 'sale.create', 'in_stock', 'sold', sale.op_id],
    );

    // When the sale is voided
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'wrong cloth' }, { idempotencyKey: randomUUID() });
    // Then the pieces are back in stock with the stock
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.deepEqual(
      (await pieceRows([a.id, b.id])).map((p) => [p.status, p.sold_by_op, p.version]),
      [
        ['in_stock', null, 3],
        ['in_stock', null, 3],
      ],
    );
    assert.equal(await stockOf(cloth), stockBefore);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    assert.equal(await stockOf(plain), plainBefore);
    const returnedStep = (await history(b.id)).at(-1);
    assert.ok(returnedStep);
    assert.deepEqual(
      [returnedStep.type, returnedStep.op_id, returnedStep.operation_type, returnedStep.before.status, returnedStep.after.status],
      ['piece.returned', voided.body.voided_by_op, 'sale.void', 'sold', 'in_stock'],
    );
    // Voiding again returns nothing twice
    const again = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'again' }, { idempotencyKey: randomUUID() });
    assert.equal(again.status, 200);
    assert.equal(await stockOf(cloth), stockBefore);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);

    // A returned piece can be sold again, with its quantity stated
    const resold = await sell([{ sku_id: cloth, piece_ids: [b.id], quantity: 3000, unit_price: 500 }]);
    assert.equal(resold.status, 201, JSON.stringify(resold.body));
    assert.equal((await pieceRows([b.id]))[0]?.sold_by_op, resold.body.op_id);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
  });

  it('concurrent sales of one piece: exactly one wins, the others get 409 piece_unavailable; counts exact', async () => {
    const [piece] = await receive(buttons, [{ kind: 'spare', quantity: 7 }]);
    assert.ok(piece);
    const before = await snapshot();
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => sell([{ sku_id: buttons, piece_ids: [piece.id], unit_price: 5 }])),
    );
    const won = responses.filter((r) => r.status === 201);
    const lost = responses.filter((r) => r.status !== 201);
    assert.equal(won.length, 1, JSON.stringify(responses.map((r) => r.status)));
    for (const response of lost) {
      assertProblem(response, 409, 'piece_unavailable');
      assert.deepEqual(response.body.pieces, [{ id: piece.id, status: 'sold', held_by_op: won[0]!.body.op_id }]);
    }
    const after = await snapshot();
    assert.equal(after.sales, Number(before.sales) + 1);
    assert.equal(after.sale_items, Number(before.sale_items) + 1);
    assert.equal(Number(after.receipt_numbers), Number(before.receipt_numbers) + 1);
    assert.equal(Number(after.stock), Number(before.stock) - 7);
    assert.deepEqual((await pieceRows([piece.id])).map((p) => [p.status, p.sold_by_op, p.version]), [['sold', won[0]!.body.op_id, 2]]);
    assert.equal(await stockOf(buttons), await livePieces(buttons));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a sale and a cut of the same piece at once: exactly one of them uses it', async () => {
    for (let round = 0; round < 3; round++) {
      const [roll] = await receive(cloth, [{ kind: 'roll', quantity: 4000 }]);
      assert.ok(roll);
      const [sale, cut] = await Promise.all([
        sell([{ sku_id: cloth, piece_ids: [roll.id], unit_price: 500 }]),
        owner.post('/v1/pieces/cut', { piece_id: roll.id, parts: [1000] }, { idempotencyKey: randomUUID() }),
      ]);
      assert.deepEqual([sale.status, cut.status].sort(), [201, 409], JSON.stringify([sale.body, cut.body]));
      const [row] = await pieceRows([roll.id]);
      assert.equal(row?.status, sale.status === 201 ? 'sold' : 'consumed');
      assert.equal(await stockOf(cloth), await livePieces(cloth));
    }
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('pieces not available, of another store or SKU, missing or misnamed → 4xx and nothing written (no receipt number taken)', async () => {
    const [free, taken, reserved] = await receive(cloth, [
      { kind: 'roll', quantity: 1000 },
      { kind: 'roll', quantity: 1500 },
      { kind: 'roll', quantity: 1200 },
    ]);
    const [elsewhere] = await receive(cloth, [{ kind: 'roll', quantity: 900 }], otherStoreId);
    const [button] = await receive(buttons, [{ kind: 'spare', quantity: 3 }]);
    assert.ok(free && taken && reserved && elsewhere && button);
    const soldFirst = await sell([{ sku_id: cloth, piece_ids: [taken.id], unit_price: 500 }]);
    assert.equal(soldFirst.status, 201);
    const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [reserved.id], expires_in_seconds: 600 }, { idempotencyKey: randomUUID() });
    assert.equal(reservation.status, 201, JSON.stringify(reservation.body));

    const cases: Array<{ name: string; items: unknown[]; status: number; code: string; check?: (body: any) => void }> = [
      {
        name: 'a sold piece next to a free one',
        items: [{ sku_id: cloth, piece_ids: [free.id, taken.id], unit_price: 500 }, { sku_id: plain, quantity: 1, unit_price: 100 }],
        status: 409,
        code: 'piece_unavailable',
        check: (body) => assert.deepEqual(body.pieces, [{ id: taken.id, status: 'sold', held_by_op: soldFirst.body.op_id }]),
      },
      {
        name: 'a reserved piece',
        items: [{ sku_id: cloth, piece_ids: [reserved.id], unit_price: 500 }],
        status: 409,
        code: 'piece_unavailable',
        check: (body) => assert.deepEqual(body.pieces, [{ id: reserved.id, status: 'reserved', held_by_op: reservation.body.op_id }]),
      },
      {
        name: 'a piece of another store',
        items: [{ sku_id: cloth, piece_ids: [free.id, elsewhere.id], unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/piece_ids/1']),
      },
      {
        name: 'a piece of another SKU',
        items: [{ sku_id: cloth, piece_ids: [button.id], unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/piece_ids/0']),
      },
      {
        name: 'an unknown piece',
        items: [{ sku_id: cloth, piece_ids: [randomUUID()], unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
      },
      {
        name: 'a piece-tracked SKU without piece_ids',
        items: [{ sku_id: cloth, quantity: 1000, unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/piece_ids']),
      },
      {
        name: 'piece_ids on a SKU that does not track pieces',
        items: [{ sku_id: plain, quantity: 1, piece_ids: [free.id], unit_price: 100 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/piece_ids']),
      },
      {
        name: 'a quantity that is not the sum of the pieces',
        items: [{ sku_id: cloth, piece_ids: [free.id], quantity: 999, unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/quantity']),
      },
      {
        name: 'the same piece twice',
        items: [{ sku_id: cloth, piece_ids: [free.id], unit_price: 500 }, { sku_id: cloth, piece_ids: [free.id], unit_price: 400 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/1/piece_ids/0']),
      },
      {
        name: 'a plain line without quantity',
        items: [{ sku_id: plain, unit_price: 100 }],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items/0/quantity']),
      },
      {
        name: 'more than 500 pieces in one sale',
        items: [
          { sku_id: cloth, piece_ids: Array.from({ length: 300 }, () => randomUUID()), unit_price: 500 },
          { sku_id: cloth, piece_ids: Array.from({ length: 201 }, () => randomUUID()), unit_price: 500 },
        ],
        status: 400,
        code: 'validation_failed',
        check: (body) => assert.deepEqual(body.errors.map((e: any) => e.path), ['/body/items']),
      },
      {
        name: 'an empty piece_ids',
        items: [{ sku_id: cloth, piece_ids: [], unit_price: 500 }],
        status: 400,
        code: 'validation_failed',
      },
    ];
    for (const testCase of cases) {
      const before = await snapshot();
      const response = await sell(testCase.items);
      assertProblem(response, testCase.status, testCase.code);
      testCase.check?.(response.body);
      assert.deepEqual(await snapshot(), before, testCase.name);
    }
    // and the free piece is still sellable afterwards
    const ok = await sell([{ sku_id: cloth, piece_ids: [free.id], unit_price: 500 }]);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('a sale naming a reservation sells the pieces it holds straight from it (no release first); another reservation or none → 409', async () => {
    const [held, other, free] = await receive(cloth, [
      { kind: 'roll', quantity: 1100 },
      { kind: 'roll', quantity: 1300 },
      { kind: 'roll', quantity: 700 },
    ]);
    assert.ok(held && other && free);
    const reserve = (pieceIds: string[]) => owner.post('/v1/pieces/reservations', { piece_ids: pieceIds, expires_in_seconds: 600 }, { idempotencyKey: randomUUID() });
    const mine = await reserve([held.id]);
    const theirs = await reserve([other.id]);
    assert.equal(mine.status, 201, JSON.stringify(mine.body));
    assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
    const sellUnder = (reservation: string, items: unknown[], source: 'online' | 'offline' = 'online') => {
      const body = { store_id: storeId, payment_method: 'cash', reservation_op_id: reservation, items };
      return source === 'online'
        ? owner.post('/v1/sales', body, { idempotencyKey: randomUUID() })
        : owner.post('/v1/sync/sales', { sales: [{ idempotency_key: randomUUID(), ...body }] }, { idempotencyKey: randomUUID() });
    };

    // A piece held by another reservation, or a reservation on a sale that names no pieces: refused, nothing written
    let before = await snapshot();
    const wrong = await sellUnder(theirs.body.op_id, [{ sku_id: cloth, piece_ids: [held.id], unit_price: 500 }]);
    assertProblem(wrong, 409, 'piece_unavailable');
    assert.deepEqual(wrong.body.pieces, [{ id: held.id, status: 'reserved', held_by_op: mine.body.op_id }]);
    const noPieces = await sellUnder(mine.body.op_id, [{ sku_id: plain, quantity: 1, unit_price: 100 }]);
    assertProblem(noPieces, 400, 'validation_failed');
    assert.deepEqual(noPieces.body.errors.map((e: any) => e.path), ['/body/reservation_op_id']);
    assert.deepEqual(await snapshot(), before);

    // When the sale names its reservation, with a free piece and a plain line
    const stockBefore = await stockOf(cloth);
    const sale = await sellUnder(mine.body.op_id, [
      { sku_id: cloth, piece_ids: [held.id, free.id], unit_price: 500 },
      { sku_id: plain, quantity: 1, unit_price: 100 },
    ]);
    // Then the reserved piece is sold, out of its reservation, and stock = live pieces
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    const rows = (
      await t.admin.query(`SELECT id, status, sold_by_op, reserved_by_op, reserved_until FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`, [
        tenantId,
        [held.id, other.id, free.id],
      ])
    ).rows;
    assert.deepEqual(
      rows.map((row) => [row.id, row.status, row.sold_by_op, row.reserved_by_op, row.reserved_until === null]),
      [
        [held.id, 'sold', sale.body.op_id, null, true],
        [other.id, 'reserved', null, theirs.body.op_id, false],
        [free.id, 'sold', sale.body.op_id, null, true],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
    );
    assert.equal(await stockOf(cloth), stockBefore - 1800);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    const steps = await history(held.id);
    assert.deepEqual(
      steps.map((step) => [step.type, step.before?.status ?? null, step.after?.status ?? null]),
      [
        ['piece.created', null, 'in_stock'],
        ['piece.reserved', 'in_stock', 'reserved'],
        ['piece.sold', 'reserved', 'sold'],
      ],
    );
    // And the reservation holds nothing any more: its release releases nothing
    const release = await owner.post(`/v1/pieces/reservations/${mine.body.op_id}/release`, undefined, { idempotencyKey: randomUUID() });
    assert.equal(release.status, 200, JSON.stringify(release.body));
    assert.deepEqual(release.body.released, []);
    // And the void returns the piece to stock, not to the finished reservation
    const voided = await owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.deepEqual((await pieceRows([held.id])).map((p) => [p.status, p.sold_by_op]), [['in_stock', null]]);
    assert.equal(await stockOf(cloth), await livePieces(cloth));

    // Offline too: a synced sale naming the reservation sells what it holds, with no shortfall
    before = await snapshot();
    const synced = await sellUnder(theirs.body.op_id, [{ sku_id: cloth, piece_ids: [other.id], unit_price: 500 }], 'offline');
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const [result] = synced.body.results;
    assert.equal(result.status, 201, JSON.stringify(result));
    assert.equal(result.body.items[0].shortfall_quantity, 0);
    assert.deepEqual((await pieceRows([other.id])).map((p) => p.status), ['sold']);
    assert.equal(Number((await snapshot()).sales), Number(before.sales) + 1);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('sales naming one reservation at once: exactly one sells the reserved piece; a sale naming none never takes it', async () => {
    const [piece] = await receive(buttons, [{ kind: 'spare', quantity: 9 }]);
    assert.ok(piece);
    const reservation = await owner.post('/v1/pieces/reservations', { piece_ids: [piece.id], expires_in_seconds: 600 }, { idempotencyKey: randomUUID() });
    assert.equal(reservation.status, 201, JSON.stringify(reservation.body));
    const before = await snapshot();
    const line = [{ sku_id: buttons, piece_ids: [piece.id], unit_price: 5 }];
    const responses = await Promise.all([
      ...Array.from({ length: 6 }, () =>
        owner.post('/v1/sales', { store_id: storeId, payment_method: 'cash', reservation_op_id: reservation.body.op_id, items: line }, { idempotencyKey: randomUUID() }),
      ),
      ...Array.from({ length: 4 }, () => sell(line)),
    ]);
    const won = responses.filter((r) => r.status === 201);
    assert.equal(won.length, 1, JSON.stringify(responses.map((r) => r.status)));
    assert.ok(responses.indexOf(won[0]!) < 6, 'the winner named the reservation');
    for (const response of responses.filter((r) => r.status !== 201)) assertProblem(response, 409, 'piece_unavailable');
    const after = await snapshot();
    assert.equal(after.sales, Number(before.sales) + 1);
    assert.equal(Number(after.receipt_numbers), Number(before.receipt_numbers) + 1);
    assert.equal(Number(after.stock), Number(before.stock) - 9);
    assert.deepEqual((await pieceRows([piece.id])).map((p) => [p.status, p.sold_by_op]), [['sold', won[0]!.body.op_id]]);
    assert.equal(await stockOf(buttons), await livePieces(buttons));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('an offline sale naming a piece sold meanwhile is kept: the rest is sold, the missing piece is its shortfall and a review item', async () => {
    const [kept, gone] = await receive(cloth, [
      { kind: 'roll', quantity: 2500 },
      { kind: 'roll', quantity: 1700 },
    ]);
    assert.ok(kept && gone);
    const online = await sell([{ sku_id: cloth, piece_ids: [gone.id], unit_price: 500 }]);
    assert.equal(online.status, 201);
    const stockBefore = await stockOf(cloth);
    // When the till syncs a sale it made offline with both pieces
    const synced = await owner.post(
      '/v1/sync/sales',
      {
        sales: [
          { idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: cloth, piece_ids: [kept.id, gone.id], unit_price: 500 }] },
          { idempotency_key: randomUUID(), store_id: storeId, payment_method: 'cash', items: [{ sku_id: cloth, piece_ids: [randomUUID()], unit_price: 500 }] },
        ],
      },
      { idempotencyKey: randomUUID() },
    );
    // Then the first is recorded (201) and the malformed one refused (400)
    assert.equal(synced.status, 200, JSON.stringify(synced.body));
    const [first, second] = synced.body.results;
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.equal(second.status, 400, JSON.stringify(second.body));
    const sale = first.body;
    assert.deepEqual(
      sale.items.map((i: any) => [i.quantity, i.shortfall_quantity, i.piece_ids]),
      [[4200, 1700, [kept.id, gone.id]]],
    );
    assert.equal(sale.source, 'offline');
    const rows = await pieceRows([kept.id, gone.id]);
    assert.deepEqual(
      rows.map((p) => [p.id, p.status, p.sold_by_op]),
      [
        [kept.id, 'sold', sale.op_id],
        [gone.id, 'sold', online.body.op_id],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
    );
    assert.equal(await stockOf(cloth), stockBefore - 2500);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    const review = await t.admin.query(`SELECT kind, detail FROM review_items WHERE tenant_id = $1 AND subject_id = $2`, [tenantId, sale.id]);
    assert.equal(review.rows.length, 1);
    assert.equal(review.rows[0].kind, 'offline_sale_shortage');
    assert.deepEqual(review.rows[0].detail.shortages, [{ sku_id: cloth, requested: 4200, available: 2500, shortfall: 1700 }]);
    assert.deepEqual(review.rows[0].detail.unavailable_pieces, [{ id: gone.id, status: 'sold', held_by_op: online.body.op_id }]);
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);

    // Its void returns only the piece it actually sold
    const voided = await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'returned' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200, JSON.stringify(voided.body));
    assert.deepEqual(
      (await pieceRows([kept.id, gone.id])).map((p) => [p.id, p.status, p.sold_by_op]),
      [
        [kept.id, 'in_stock', null],
        [gone.id, 'sold', online.body.op_id],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
    );
    assert.equal(await stockOf(cloth), stockBefore);
    assert.equal(await stockOf(cloth), await livePieces(cloth));
    assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  });

  it('integrity: piece_sold_by_completed_sale finds a piece left sold by a voided sale or by an operation that is not a sale', async () => {
    // Given (its own tenant: the rows are corrupted on purpose)
    const other = await t.newTenant();
    const shop = (await other.owner.post('/v1/stores', { code: 'IC', name: 'Integrity' })).body.id;
    const roll = (await other.owner.post('/v1/skus', { code: 'ROLL', name: 'Roll', unit: 'metre', price: 100, tracks_pieces: true })).body.id;
    const received = await other.owner.post('/v1/pieces', { store_id: shop, sku_id: roll, pieces: [{ kind: 'roll', quantity: 1000 }, { kind: 'roll', quantity: 2000 }] }, { idempotencyKey: randomUUID() });
    assert.equal(received.status, 201, JSON.stringify(received.body));
    const [first, second] = received.body.pieces as Piece[];
    assert.ok(first && second);
    const sale = await other.owner.post('/v1/sales', { store_id: shop, payment_method: 'cash', items: [{ sku_id: roll, piece_ids: [first.id], unit_price: 100 }] }, { idempotencyKey: randomUUID() });
    assert.equal(sale.status, 201, JSON.stringify(sale.body));
    assert.deepEqual(await integrityFindings(t.admin, other.tenantId, ['piece_sold_by_completed_sale']), []);
    const voided = await other.owner.post(`/v1/sales/${sale.body.id}/void`, { reason: 'test' }, { idempotencyKey: randomUUID() });
    assert.equal(voided.status, 200);
    assert.deepEqual(await integrityFindings(t.admin, other.tenantId), []);
    // When the voided sale's piece is put back to sold, and another piece is marked sold by the receive
    await t.admin.query(`UPDATE pieces SET status = 'sold', sold_by_op = $2 WHERE id = $1`, [first.id, sale.body.op_id]);
    await t.admin.query(`UPDATE pieces SET status = 'sold', sold_by_op = $2 WHERE id = $1`, [second.id, received.body.op_id]);
    // Then
    const findings = await integrityFindings(t.admin, other.tenantId, ['piece_sold_by_completed_sale']);
    assert.deepEqual(findings.map((f) => f.subject).sort(), [`piece:${first.id}`, `piece:${second.id}`].sort());
    // and this tenant is untouched
    assert.deepEqual(await integrityFindings(t.admin, tenantId, ['piece_sold_by_completed_sale']), []);
  });

  it('a stock adjustment or bare stock receipt of a piece-tracked SKU → 422 unprocessable, nothing written; other SKUs still adjust', async () => {
    await receive(buttons, [{ kind: 'spare', quantity: 4 }]);
    const before = await snapshot();
    for (const quantity_change of [5, -1]) {
      const response = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: buttons, quantity_change, reason: 'count' }, { idempotencyKey: randomUUID() });
      assertProblem(response, 422, 'unprocessable');
      assert.deepEqual(response.body.errors, [{ path: '/body/sku_id', message: 'SKU is piece-tracked' }]);
    }
    assert.deepEqual(await snapshot(), before);
    assert.equal(await stockOf(buttons), await livePieces(buttons));
    // and a bare stock receipt of it likewise (pieces are received with POST /v1/pieces)
    const receipt = await owner.post(`/v1/stores/${storeId}/stock/receipts`, { items: [{ sku_id: plain, quantity: 1 }, { sku_id: buttons, quantity: 5 }] }, { idempotencyKey: randomUUID() });
    assertProblem(receipt, 422, 'unprocessable');
    assert.deepEqual(receipt.body.errors, [{ path: '/body/items/1/sku_id', message: 'SKU is piece-tracked' }]);
    assert.deepEqual(await snapshot(), before);
    const plainAdjust = await owner.post(`/v1/stores/${storeId}/stock/adjustments`, { sku_id: plain, quantity_change: -1, reason: 'damaged' }, { idempotencyKey: randomUUID() });
    assert.equal(plainAdjust.status, 201, JSON.stringify(plainAdjust.body));
  });
});
