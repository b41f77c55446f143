import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../test/support/app.js';
import type { ApiClient, ApiResponse } from '../../test/support/client.js';
import { findingsAfter, integrityFindings } from '../../test/support/integrity.js';
import { runCommand } from '../core/command.js';
import { AppError } from '../core/errors.js';
import { assertStockMatchesPieces } from '../pieces/testkit.js';
import { lineTotal } from './lineTotal.js';
import { recordReturn, SALE_RETURN_OP } from './returnSale.js';
import { recordVoid, SALE_VOID_OP } from './voidSale.js';
import { givenSku, givenStock, givenStore, givenToken, returnRowCounts, saleMoney as saleMoneyOf } from './testkit.js';

/**
 * Partial returns of workshop pieces (POST /v1/sales/{id}/returns naming
 * `piece_ids`): real HTTP, then the rows left behind — the pieces' status and
 * history, stock = Σ live pieces = ledger, the refunds by the cumulative rule
 * adding up to the line total, the money netting to zero after a void, and
 * every integrity check quiet.
 */
describe('returns of workshop pieces', () => {
  let t: TestApp;
  let owner: ApiClient;
  let tenantId: string;
  let storeId: string;
  /** Cloth by the metre (millimetres), tracking pieces, at 333 per metre. */
  let cloth: string;
  /** Another piece-tracked SKU (spare pieces). */
  let hooks: string;
  let milk: string;

  before(async () => {
    t = await startTestApp();
    ({ owner, tenantId } = await t.newTenant());
    storeId = await givenStore(owner, 'PR1');
    cloth = ok(await owner.post('/v1/skus', { code: 'CLOTH', name: 'Cloth', unit: 'metre', price: 333, tracks_pieces: true })).body.id;
    hooks = ok(await owner.post('/v1/skus', { code: 'HOOKS', name: 'Hooks', unit: 'piece', price: 7, tracks_pieces: true })).body.id;
    milk = await givenSku(owner, 'MILK', 'piece', 120);
    await givenStock(owner, storeId, [{ sku_id: milk, quantity: 1000 }]);
  });
  after(() => t.close());

  function ok<T extends ApiResponse>(response: T, status = 201): T {
    assert.equal(response.status, status, JSON.stringify(response.body));
    return response;
  }

  /** Receives rolls of cloth (millimetres) or spare hooks: their ids, in order. */
  const receive = async (sku: string, quantities: number[]): Promise<string[]> => {
    const kind = sku === cloth ? 'roll' : 'spare';
    const response = ok(await owner.post('/v1/pieces', { store_id: storeId, sku_id: sku, pieces: quantities.map((quantity) => ({ kind, quantity })) }, { idempotencyKey: randomUUID() }));
    return response.body.pieces.map((piece: { id: string }) => piece.id);
  };

  type SaleLine = { sku_id: string; unit_price: number; piece_ids?: string[]; quantity?: number };
  const sell = async (items: SaleLine[], client: ApiClient = owner) =>
    ok(await client.post('/v1/sales', { store_id: storeId, payment_method: 'cash', items }, { idempotencyKey: randomUUID() })).body as {
      id: string;
      op_id: string;
      total: number;
      items: Array<{ id: string; line_total: number; quantity: number }>;
    };

  type ReturnItem = { sku_id: string; quantity?: number; piece_ids?: string[] };
  const giveBack = (saleId: string, items: ReturnItem[], client: ApiClient = owner) =>
    client.post(`/v1/sales/${saleId}/returns`, { items, reason: 'customer brought it back' }, { idempotencyKey: randomUUID() });

  type PieceState = { status: string; sold_by_op: string | null; version: number };
  const pieceRows = async (ids: string[]): Promise<Record<string, PieceState>> =>
    Object.fromEntries(
      (await t.admin.query(`SELECT id, status, sold_by_op, version FROM pieces WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, [tenantId, ids])).rows.map((row) => [
        row.id,
        { status: row.status, sold_by_op: row.sold_by_op, version: row.version },
      ]),
    );

  /** Every row a return could write, for this tenant, and the pieces' state. */
  const rowsOf = async (pieceIds: string[]) => ({ ...(await returnRowCounts(t, tenantId)), pieces: await pieceRows(pieceIds) });
  /** The net of the sale's money entries (sale, its returns, its void) per account key. */
  const saleMoney = (saleId: string) => saleMoneyOf(t, tenantId, storeId, saleId);

  /** What the sale's returns recorded: their refunds, and the pieces of each (unnested, so a piece taken back twice shows twice). */
  const returnsOf = async (saleId: string) =>
    (
      await t.admin.query(
        `SELECT (SELECT coalesce(sum(refund), 0)::int FROM sale_return_items WHERE tenant_id = $1 AND sale_id = $2) AS refunds,
                (SELECT coalesce(sum(quantity), 0)::int FROM sale_return_items WHERE tenant_id = $1 AND sale_id = $2) AS quantity,
                (SELECT coalesce(array_agg(p.id ORDER BY p.id), '{}')::text[]
                 FROM sale_return_items ri CROSS JOIN LATERAL unnest(ri.piece_ids) AS p (id) WHERE ri.tenant_id = $1 AND ri.sale_id = $2) AS pieces,
                (SELECT returned_total::int FROM sales WHERE tenant_id = $1 AND id = $2) AS returned_total,
                (SELECT coalesce(sum(refund_total), 0)::int FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2) AS refund_totals`,
        [tenantId, saleId],
      )
    ).rows[0] as { refunds: number; quantity: number; pieces: string[]; returned_total: number; refund_totals: number };

  /** The stock ledger rows the operation wrote: kind and change per SKU. */
  const ledgerOf = async (opId: string) =>
    (await t.admin.query(`SELECT sku_id, kind, quantity_change::int AS change FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2 ORDER BY sku_id`, [tenantId, opId])).rows;

  const noFindings = async () => assert.deepEqual(await integrityFindings(t.admin, tenantId), []);
  const balancesMatch = async () => {
    await assertStockMatchesPieces(t.admin, tenantId, storeId, cloth);
    await assertStockMatchesPieces(t.admin, tenantId, storeId, hooks);
  };

  it('one of three pieces back, then another, then the void: pieces, stock and ledger, refunds by the cumulative rule', async () => {
    const [p1, p2, p3] = await receive(cloth, [1001, 1000, 1500]);
    const sale = await sell([{ sku_id: cloth, piece_ids: [p1!, p2!, p3!], unit_price: 333 }, { sku_id: milk, quantity: 2, unit_price: 120 }]);
    const line = sale.items[0]!;
    assert.equal(line.quantity, 3501);
    assert.equal(line.line_total, lineTotal('metre', 3501, 333)); // 1,165.833 → 1,166

    // one piece back: it is in stock again, its 1,000 mm come back, the refund is lineTotal(1000) − 0
    const first = ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [p2!] }]));
    assert.deepEqual(first.body.lines, [{ sale_item_id: line.id, line_number: 1, sku_id: cloth, quantity: 1000, refund: 333, piece_ids: [p2] }]);
    assert.equal(first.body.refund_total, 333);
    assert.deepEqual(first.body.remaining, [
      { sku_id: cloth, sold: 3501, returned: 1000, returnable: 2501, returnable_piece_ids: [p1!, p3!].sort() },
      { sku_id: milk, sold: 2, returned: 0, returnable: 2, returnable_piece_ids: [] },
    ]);
    const afterFirst = await pieceRows([p1!, p2!, p3!]);
    assert.deepEqual([afterFirst[p1!]!.status, afterFirst[p2!]!.status, afterFirst[p3!]!.status], ['sold', 'in_stock', 'sold']);
    assert.equal(afterFirst[p2!]!.sold_by_op, null);
    assert.deepEqual(await ledgerOf(first.body.op_id), [{ sku_id: cloth, kind: 'return', change: 1000 }]);
    const history = ok(await owner.get(`/v1/pieces/${p2}/history`), 200).body.items as Array<{ type: string; op_id: string; before: { status: string }; after: { status: string } }>;
    const returnedStep = history.find((step) => step.type === 'piece.returned');
    assert.ok(returnedStep, JSON.stringify(history));
    assert.equal(returnedStep.op_id, first.body.op_id);
    assert.deepEqual([returnedStep.before.status, returnedStep.after.status], ['sold', 'in_stock']);
    await balancesMatch();
    await noFindings();

    // another: lineTotal(2001) − lineTotal(1000) = 666 − 333
    const second = ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [p1!], quantity: 1001 }]));
    assert.equal(second.body.refund_total, lineTotal('metre', 2001, 333) - lineTotal('metre', 1000, 333));
    assert.equal(second.body.return_number, 2);
    assert.deepEqual(second.body.remaining[0], { sku_id: cloth, sold: 3501, returned: 2001, returnable: 1500, returnable_piece_ids: [p3] });
    assert.deepEqual(await ledgerOf(second.body.op_id), [{ sku_id: cloth, kind: 'return', change: 1001 }]);
    await balancesMatch();
    await noFindings();

    // GET shows the returns with their pieces
    const read = ok(await owner.get(`/v1/sales/${sale.id}`), 200).body;
    assert.equal(read.returned_total, 333 + second.body.refund_total);
    assert.deepEqual(read.returns.map((r: { lines: Array<{ piece_ids: string[]; quantity: number }> }) => r.lines.map((l) => [l.piece_ids, l.quantity])), [[[[p2], 1000]], [[[p1], 1001]]]);

    // the void brings back only the third piece and the milk; the money nets to nothing
    const voided = ok(await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'rest' }, { idempotencyKey: randomUUID() }), 200);
    assert.deepEqual(await ledgerOf(voided.body.voided_by_op), [
      { sku_id: cloth, kind: 'void', change: 1500 },
      { sku_id: milk, kind: 'void', change: 2 },
    ].sort((a, b) => a.sku_id.localeCompare(b.sku_id)));
    const afterVoid = await pieceRows([p1!, p2!, p3!]);
    assert.deepEqual(Object.values(afterVoid).map((piece) => [piece.status, piece.sold_by_op]), [['in_stock', null], ['in_stock', null], ['in_stock', null]]);
    // each piece came back once: one piece.returned step each
    for (const [piece, opId] of [[p1!, second.body.op_id], [p2!, first.body.op_id], [p3!, voided.body.voided_by_op]] as const) {
      const steps = (ok(await owner.get(`/v1/pieces/${piece}/history`), 200).body.items as Array<{ type: string; op_id: string }>).filter((step) => step.type === 'piece.returned');
      assert.deepEqual(steps.map((step) => step.op_id), [opId], piece);
    }
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    await balancesMatch();
    await noFindings();
  });

  it('every piece returned one by one refunds exactly the line total; the void then moves no stock', async () => {
    const ids = await receive(cloth, [333, 777, 1001, 3]);
    const sale = await sell([{ sku_id: cloth, piece_ids: ids, unit_price: 333 }]);
    let refunded = 0;
    for (const id of [ids[2]!, ids[0]!, ids[3]!, ids[1]!]) refunded += ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [id] }])).body.refund_total;
    assert.equal(refunded, sale.items[0]!.line_total);
    assert.deepEqual((await returnsOf(sale.id)).refunds, sale.total);
    // nothing left to return
    const more = await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [ids[0]!] }]);
    assert.equal(more.status, 409, JSON.stringify(more.body));
    assert.equal(more.body.code, 'piece_not_returnable');
    const voided = ok(await owner.post(`/v1/sales/${sale.id}/void`, { reason: 'all back' }, { idempotencyKey: randomUUID() }), 200);
    assert.deepEqual(await ledgerOf(voided.body.voided_by_op), []);
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    await balancesMatch();
    await noFindings();
  });

  it('refused, nothing written: a piece not in the sale, one already returned, a valid one mixed with either, a piece of another SKU of the sale; 400 for malformed ids, a piece twice, a wrong quantity', async () => {
    const [a, b, c, elsewhere] = await receive(cloth, [500, 600, 700, 800]);
    const [hook] = await receive(hooks, [4]);
    const sale = await sell([{ sku_id: cloth, piece_ids: [a!, b!, c!], unit_price: 333 }, { sku_id: hooks, piece_ids: [hook!], unit_price: 7 }]);
    ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [a!] }]));
    const unknown = randomUUID();
    const watched = [a!, b!, c!, elsewhere!, hook!];
    const before = await rowsOf(watched);
    assert.deepEqual(Object.values(await pieceRows(watched)).map((piece) => piece.status).sort(), ['in_stock', 'in_stock', 'sold', 'sold', 'sold']);

    const conflicts: Array<[ReturnItem[], Array<{ id: string; sku_id: string; reason: string }>]> = [
      [[{ sku_id: cloth, piece_ids: [elsewhere!] }], [{ id: elsewhere!, sku_id: cloth, reason: 'not_sold_by_sale' }]],
      [[{ sku_id: cloth, piece_ids: [unknown] }], [{ id: unknown, sku_id: cloth, reason: 'not_sold_by_sale' }]],
      [[{ sku_id: cloth, piece_ids: [a!] }], [{ id: a!, sku_id: cloth, reason: 'already_returned' }]],
      [[{ sku_id: cloth, piece_ids: [b!, a!, c!] }], [{ id: a!, sku_id: cloth, reason: 'already_returned' }]],
      [[{ sku_id: milk, quantity: 1 }, { sku_id: cloth, piece_ids: [c!, elsewhere!] }], [{ id: elsewhere!, sku_id: cloth, reason: 'not_sold_by_sale' }]],
      // the sale's own piece, named under its other piece-tracked SKU
      [[{ sku_id: hooks, piece_ids: [b!] }], [{ id: b!, sku_id: hooks, reason: 'not_sold_by_sale' }]],
    ];
    for (const [items, pieces] of conflicts) {
      const refused = await giveBack(sale.id, items);
      if (items.some((item) => item.sku_id === milk)) {
        // milk is not on this sale: the 400 comes first
        assert.equal(refused.status, 400, JSON.stringify(refused.body));
        continue;
      }
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'piece_not_returnable');
      assert.deepEqual(refused.body.pieces, pieces);
      assert.equal(refused.body.errors.length, pieces.length);
      assert.match(refused.body.detail, new RegExp(pieces[0]!.id));
    }
    const mixed = await giveBack(sale.id, [{ sku_id: hooks, piece_ids: [hook!] }, { sku_id: cloth, piece_ids: [c!, elsewhere!] }]);
    assert.equal(mixed.status, 409, JSON.stringify(mixed.body));
    assert.deepEqual(mixed.body.errors.map((error: { path: string }) => error.path), ['/body/items/1/piece_ids/1']);

    const bad: Array<[ReturnItem[], string]> = [
      [[{ sku_id: cloth, piece_ids: ['not-a-uuid'] }], '/body/items/0/piece_ids/0'],
      [[{ sku_id: cloth, piece_ids: [b!, c!, b!] }], '/body/items/0/piece_ids/2'],
      [[{ sku_id: cloth, piece_ids: [b!] }, { sku_id: cloth, piece_ids: [b!] }], '/body/items/1/piece_ids/0'],
      [[{ sku_id: cloth, piece_ids: [b!], quantity: 601 }], '/body/items/0/quantity'],
      [[{ sku_id: cloth, quantity: 600 }], '/body/items/0/piece_ids'],
      [[{ sku_id: cloth, piece_ids: [] }], '/body/items/0/piece_ids'],
    ];
    for (const [items, path] of bad) {
      const refused = await giveBack(sale.id, items);
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.ok(refused.body.errors.some((error: { path: string }) => error.path === path), `${path}: ${JSON.stringify(refused.body)}`);
    }
    assert.deepEqual(await rowsOf(watched), before);

    // the valid ones alone are taken back
    const taken = ok(await giveBack(sale.id, [{ sku_id: hooks, piece_ids: [hook!] }, { sku_id: cloth, piece_ids: [c!] }]));
    assert.deepEqual(taken.body.lines.map((l: { piece_ids: string[]; quantity: number }) => [l.piece_ids, l.quantity]), [[[c], 700], [[hook], 4]]);
    await balancesMatch();
    await noFindings();
  });

  it('a returned piece sold again by another sale: not returnable from the first (already returned), returnable from the second; the first\'s void leaves it sold', async () => {
    const [x, y] = await receive(cloth, [900, 1100]);
    const first = await sell([{ sku_id: cloth, piece_ids: [x!, y!], unit_price: 333 }]);
    ok(await giveBack(first.id, [{ sku_id: cloth, piece_ids: [x!] }]));
    const second = await sell([{ sku_id: cloth, piece_ids: [x!], unit_price: 400 }]);
    const fromFirst = await giveBack(first.id, [{ sku_id: cloth, piece_ids: [x!] }]);
    assert.equal(fromFirst.status, 409, JSON.stringify(fromFirst.body));
    assert.deepEqual(fromFirst.body.pieces, [{ id: x, sku_id: cloth, reason: 'already_returned' }]);
    ok(await owner.post(`/v1/sales/${first.id}/void`, { reason: 'rest' }, { idempotencyKey: randomUUID() }), 200);
    assert.deepEqual(Object.values(await pieceRows([x!])).map((piece) => [piece.status, piece.sold_by_op]), [['sold', second.op_id]]);
    const fromSecond = ok(await giveBack(second.id, [{ sku_id: cloth, piece_ids: [x!] }]));
    assert.equal(fromSecond.body.refund_total, lineTotal('metre', 900, 400));
    await balancesMatch();
    await noFindings();
  });

  it('four eyes: with require_second_approver_for_reversals the seller gets 403 (nothing written), another manager takes the piece back; a cashier has no sales.return', async () => {
    const seller = await givenToken(t, owner, 'manager');
    const other = await givenToken(t, owner, 'manager');
    const cashier = await givenToken(t, owner, 'cashier');
    const [piece] = await receive(cloth, [1200]);
    const sale = await sell([{ sku_id: cloth, piece_ids: [piece!], unit_price: 333 }], seller);
    ok(await owner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: true }), 200);
    try {
      const before = await rowsOf([piece!]);
      const own = await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [piece!] }], seller);
      assert.equal(own.status, 403, JSON.stringify(own.body));
      assert.equal(own.body.reason, 'second_approver_required');
      const noPermission = await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [piece!] }], cashier);
      assert.equal(noPermission.status, 403, JSON.stringify(noPermission.body));
      assert.deepEqual(await rowsOf([piece!]), before);
      ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [piece!] }], other));
      assert.equal((await pieceRows([piece!]))[piece!]!.status, 'in_stock');
    } finally {
      ok(await owner.patch('/v1/tenant/settings', { require_second_approver_for_reversals: null }), 200);
    }
    await balancesMatch();
    await noFindings();
  });

  it('concurrent returns of overlapping pieces of one sale: each piece is taken back at most once, stock and money agree', async () => {
    const ids = await receive(cloth, [101, 202, 303, 404, 505, 606]);
    const sale = await sell([{ sku_id: cloth, piece_ids: ids, unit_price: 333 }]);
    const sets = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [0, 3], [1, 4], [2, 5], [0]].map((set) => set.map((index) => ids[index]!));
    const responses = await Promise.all(sets.map((set) => giveBack(sale.id, [{ sku_id: cloth, piece_ids: set }])));
    const taken = responses.filter((response) => response.status === 201).flatMap((response) => response.body.lines[0].piece_ids as string[]);
    assert.ok(responses.every((response) => response.status === 201 || (response.status === 409 && response.body.code === 'piece_not_returnable')), JSON.stringify(responses.map((r) => r.body)));
    assert.equal(new Set(taken).size, taken.length, 'no piece taken back twice');
    assert.ok(taken.length >= 2);
    const recorded = await returnsOf(sale.id);
    assert.deepEqual(recorded.pieces, [...taken].sort());
    const sizes = new Map(ids.map((id, index) => [id, [101, 202, 303, 404, 505, 606][index]!]));
    assert.equal(recorded.quantity, taken.reduce((sum, id) => sum + sizes.get(id)!, 0));
    assert.equal(recorded.returned_total, recorded.refunds);
    assert.equal(recorded.refund_totals, recorded.refunds);
    const rows = await pieceRows(ids);
    for (const id of ids) assert.equal(rows[id]!.status, taken.includes(id) ? 'in_stock' : 'sold', id);
    await balancesMatch();
    await noFindings();
  });

  it('concurrent returns of overlapping pieces and a void of one sale: each piece comes back exactly once, the money nets to nothing', async () => {
    for (let round = 0; round < 3; round++) {
      const sizes = [150, 250, 350, 450, 550];
      const ids = await receive(cloth, sizes);
      const sale = await sell([{ sku_id: cloth, piece_ids: ids, unit_price: 333 }, { sku_id: milk, quantity: 3, unit_price: 120 }]);
      const sets = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 2], [1, 3]].map((set) => set.map((index) => ids[index]!));
      const [voided, ...returns] = await Promise.all([
        owner.post(`/v1/sales/${sale.id}/void`, { reason: 'race' }, { idempotencyKey: randomUUID() }),
        ...sets.map((set) => giveBack(sale.id, [{ sku_id: cloth, piece_ids: set }])),
      ]);
      assert.equal(voided!.status, 200, JSON.stringify(voided!.body));
      assert.ok(
        returns.every((response) => response.status === 201 || (response.status === 409 && ['piece_not_returnable', 'invalid_transition'].includes(response.body.code))),
        JSON.stringify(returns.map((r) => r.body)),
      );
      const taken = returns.filter((response) => response.status === 201).flatMap((response) => response.body.lines[0].piece_ids as string[]);
      assert.equal(new Set(taken).size, taken.length, 'no piece taken back twice');
      const recorded = await returnsOf(sale.id);
      assert.deepEqual(recorded.pieces, [...taken].sort());
      // the void brought back exactly what the returns did not: every piece in stock once, the milk too
      const voidRows = await ledgerOf(voided!.body.voided_by_op);
      const clothByVoid = voidRows.find((row) => row.sku_id === cloth)?.change ?? 0;
      assert.equal(clothByVoid + recorded.quantity, sizes.reduce((a, b) => a + b, 0));
      assert.deepEqual(voidRows.find((row) => row.sku_id === milk), { sku_id: milk, kind: 'void', change: 3 });
      const rows = await pieceRows(ids);
      assert.deepEqual(ids.map((id) => [rows[id]!.status, rows[id]!.sold_by_op]), ids.map(() => ['in_stock', null]));
      // one piece.returned step per piece: by a return or by the void
      const { rows: steps } = await t.admin.query(
        `SELECT subject_id::text AS id, count(*)::int AS n FROM events WHERE tenant_id = $1 AND type = 'piece.returned' AND subject_id::text = ANY($2::text[]) GROUP BY subject_id`,
        [tenantId, ids],
      );
      assert.deepEqual(steps.map((row) => row.n), ids.map(() => 1));
      assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
      assert.equal(recorded.returned_total, recorded.refunds);
      await balancesMatch();
    }
    await noFindings();
  });

  it('concurrent returns and a void each in its own transaction (as on two servers, outside the sale lane): they take turns on the sale row, no deadlock, each piece back once', async () => {
    const sizes = [120, 230, 340, 450];
    const ids = await receive(cloth, sizes);
    const sale = await sell([{ sku_id: cloth, piece_ids: ids, unit_price: 333 }]);
    const input = () => ({ tenantId, principal: { kind: 'operator' as const, name: 'test' }, correlationId: `race-${randomUUID()}`, fingerprint: randomUUID() });
    const returning = (set: string[]) =>
      runCommand(t.db, input(), { type: SALE_RETURN_OP, storeId }, async (cmd) => ({ status: 201, body: await recordReturn(cmd, sale.id, { items: [{ sku_id: cloth, piece_ids: set }], reason: 'race' }) }));
    const voiding = () => runCommand(t.db, input(), { type: SALE_VOID_OP, storeId }, async (cmd) => ({ status: 200, body: await recordVoid(cmd, sale.id, 'race') }));
    const sets = [[3, 0], [0, 1], [1, 2], [2, 3], [0, 2], [1, 3]].map((set) => set.map((index) => ids[index]!));
    const outcomes = await Promise.allSettled([...sets.map(returning), voiding()]);
    const refusals = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason] : []));
    assert.ok(
      refusals.every((error) => error instanceof AppError && ['piece_not_returnable', 'invalid_transition'].includes(error.code)),
      refusals.map((error) => String(error)).join('; '),
    );
    const done = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
    assert.ok(done.some((outcome) => outcome.status === 200), 'the void happened');
    const taken = done.filter((outcome) => outcome.status === 201).flatMap((outcome) => (outcome.body as { lines: Array<{ piece_ids: string[] }> }).lines[0]!.piece_ids);
    assert.equal(new Set(taken).size, taken.length, 'no piece taken back twice');
    const recorded = await returnsOf(sale.id);
    assert.deepEqual(recorded.pieces, [...taken].sort());
    const rows = await pieceRows(ids);
    assert.deepEqual(ids.map((id) => rows[id]!.status), ids.map(() => 'in_stock'));
    assert.deepEqual(await saleMoney(sale.id), { cash_drawer: 0, sales_revenue: 0 });
    await balancesMatch();
    await noFindings();
  });

  it('sale_return_matches_lines finds a piece return line that names a piece the sale still holds, or none, and nothing else reports it', async () => {
    // two pieces of one length, so swapping them moves no stock
    const [kept, back] = await receive(cloth, [1000, 1000]);
    const sale = await sell([{ sku_id: cloth, piece_ids: [kept!, back!], unit_price: 333 }]);
    const returned = ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [back!] }]));
    await noFindings();
    const corrupt = (statement: string, params: unknown[]) => async () => {
      const client = await t.admin.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL session_replication_role = replica');
        await client.query(statement, params);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const swap = await findingsAfter(t.admin, tenantId, corrupt(`UPDATE sale_return_items SET piece_ids = ARRAY[$2::uuid] WHERE tenant_id = $1 AND op_id = $3`, [tenantId, kept, returned.body.op_id]));
    assert.deepEqual(swap.map((finding) => finding.check), ['sale_return_matches_lines']);
    assert.deepEqual((swap[0]!.detail as { lines_off: Array<{ pieces_off: boolean; piece_ids: string[] }> }).lines_off.map((line) => [line.pieces_off, line.piece_ids]), [[true, [kept]]]);
    await corrupt(`UPDATE sale_return_items SET piece_ids = ARRAY[$2::uuid] WHERE tenant_id = $1 AND op_id = $3`, [tenantId, back, returned.body.op_id])();
    await noFindings();
    const none = await findingsAfter(t.admin, tenantId, corrupt(`UPDATE sale_return_items SET piece_ids = '{}' WHERE tenant_id = $1 AND op_id = $2`, [tenantId, returned.body.op_id]));
    assert.deepEqual(none.map((finding) => finding.check), ['sale_return_matches_lines']);
    await corrupt(`UPDATE sale_return_items SET piece_ids = ARRAY[$2::uuid] WHERE tenant_id = $1 AND op_id = $3`, [tenantId, back, returned.body.op_id])();
    await noFindings();
    // a piece taken back by two returns of the line: the second return (of the other piece, of the same length) names it again
    const again = ok(await giveBack(sale.id, [{ sku_id: cloth, piece_ids: [kept!] }]));
    const twice = await findingsAfter(t.admin, tenantId, corrupt(`UPDATE sale_return_items SET piece_ids = ARRAY[$2::uuid] WHERE tenant_id = $1 AND op_id = $3`, [tenantId, back, again.body.op_id]));
    // both returns of the line name it: each is reported
    assert.deepEqual([...new Set(twice.map((finding) => finding.check))], ['sale_return_matches_lines']);
    assert.deepEqual(twice.map((finding) => finding.subject).sort(), [returned.body.id, again.body.id].sort());
    await corrupt(`UPDATE sale_return_items SET piece_ids = ARRAY[$2::uuid] WHERE tenant_id = $1 AND op_id = $3`, [tenantId, kept, again.body.op_id])();
    await noFindings();
  });
});
