import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, andIf, maybeOne, one, readClientMoment, utcMicros, type Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeHeldStock, holdBalanceRows, touchStockMoves } from './changeStock.js';
import { assertSkusExist, assertStoreExists } from './receiveStock.js';

/**
 * Whether the stock ledger row `ledger` (an alias) is of an operation a till
 * made at or before `countedAt` (an SQL expression) and recorded after it: a
 * synced sale (its sale and count_correction rows), a void or a return
 * carrying the till's time (their void/return and count_correction rows).
 * Each row's operation is looked up by its kind only, through a partial index
 * of the till-timed ones (sales_offline_op_idx, sales_till_void_op_idx,
 * sale_returns_till_op_idx): an online operation's row is dismissed from the
 * index. The one rule of countStock's expected quantity and of the integrity
 * check stock_count_matches_ledger (src/inventory/integrity.ts).
 */
export function madeByTillThen(ledger: string, countedAt: string): string {
  const sale = `EXISTS (SELECT 1 FROM sales v WHERE v.tenant_id = ${ledger}.tenant_id AND v.op_id = ${ledger}.op_id AND v.source = 'offline' AND v.client_created_at <= ${countedAt})`;
  const voided = `EXISTS (SELECT 1 FROM sales v WHERE v.tenant_id = ${ledger}.tenant_id AND v.voided_by_op = ${ledger}.op_id AND v.void_client_created_at <= ${countedAt})`;
  const returned = `EXISTS (SELECT 1 FROM sale_returns r WHERE r.tenant_id = ${ledger}.tenant_id AND r.op_id = ${ledger}.op_id AND r.client_created_at <= ${countedAt})`;
  return `CASE ${ledger}.kind WHEN 'sale' THEN ${sale} WHEN 'void' THEN ${voided} WHEN 'return' THEN ${returned}
            WHEN 'count_correction' THEN ${sale} OR ${voided} OR ${returned} ELSE false END`;
}

/** How far ahead of the server's clock a `counted_at` may be (a handheld's clock running fast); such a count is taken as counted now. */
export const COUNT_CLOCK_SKEW = '2 minutes';
/**
 * How old a `counted_at` may be. The variance of an old count is applied to
 * today's balance on the word of every ledger row since: the longer that is,
 * the likelier a move the shelf saw was never recorded (and the count would
 * put it in, or take it out, a second time), and the less the count says
 * about today's shelf. A week covers a count posted after a long weekend or
 * by a handheld that was offline; an older count should be taken again.
 */
export const COUNT_MAX_AGE_DAYS = 7;

export interface CountInput {
  items: Array<{ sku_id: string; counted_quantity: number }>;
  counted_at?: string | undefined;
  reference?: string | undefined;
}

export interface CountLine {
  sku_id: string;
  counted_quantity: number;
  expected_quantity: number;
  variance: number;
  quantity_after: number;
  ledger_id: number | null;
}

export interface CountView {
  id: string;
  op_id: string;
  store_id: string;
  counted_at: Date;
  counted_at_exact: string;
  reference: string | null;
  created_at: Date;
  items: CountLine[];
}

/**
 * A stock count (stocktake) of some SKUs of a store, taken while the shop
 * stays open: each line says what was on the shelf at `counted_at`; the
 * balance is moved by the variance between that and what the ledger held at
 * that moment, so sales and receipts recorded after `counted_at` are kept.
 * One transaction for every line; nothing is written on a refusal.
 *
 * WHY THE VARIANCE IS RIGHT WHILE SALES GO ON. Every balance is locked
 * (FOR UPDATE, in sku_id order as every stock writer locks) BEFORE its
 * expected quantity is read, and `counted_at` is then capped at the moment
 * the locks were held, less a microsecond (`locked`). Every stock ledger row
 * is written by the statement that moves its balance row (changeStock's
 * CTE, and changeHeldStock's, which moves this count's rows once it holds
 * them; writeSales' statement after loadSaleStates locked the row), so under
 * that row's lock, and is stamped then: its `created_at` defaults to
 * clock_timestamp(), the moment the row is written, not the transaction's
 * start (migration 0816). So for the ledger rows of a locked pair:
 *   - a row whose writer committed before our lock was granted is visible to
 *     the statements that follow it (READ COMMITTED: each statement takes a
 *     new snapshot, and a row lock is released only after its holder's
 *     commit is visible);
 *   - a row written by a transaction still running when we asked for the lock
 *     is committed before we get the lock (we wait for it) — or rolled back,
 *     and then never counts;
 *   - a row written after our lock was granted can only be written after we
 *     commit (its writer waits for the row), so it is stamped after `locked`
 *     was read: its created_at ≥ locked > counted_at.
 * Hence the rows with created_at ≤ counted_at are exactly visible, committed
 * rows, and no row committed later can join them: the expected quantity read
 * under the lock is final, and the variance applied to the current balance
 * (with the relative, conditional update of changeStock) leaves exactly
 * counted − (what moved after counted_at).
 *
 * Earlier counts of the same SKU are read under the same lock, so two counts
 * of one SKU take turns and the second sees the first. A count's correction
 * holds from its counted_at: a later count adds to what the ledger held at
 * its own counted_at the variances of earlier counts recorded after that
 * moment (else an earlier count posted late would be applied twice), and a
 * count at or before the counted_at of one already recorded is refused
 * (409 conflict: the later count set the stock; the same count posted twice
 * under two keys is refused too).
 */
export async function countStock(cmd: Command, storeId: string, input: CountInput): Promise<CountView> {
  const { tx, tenantId } = cmd;
  const seen = new Map<string, number>();
  const twice = input.items.flatMap((item, index) => {
    const key = item.sku_id.toLowerCase();
    if (seen.has(key)) return [{ path: `/body/items/${index}/sku_id`, message: `SKU ${item.sku_id} is counted on line ${seen.get(key)} already: count each SKU once` }];
    seen.set(key, index);
    return [];
  });
  if (twice.length > 0) throw new AppError('validation_failed', 'a count names each SKU once', { errors: twice });

  let requested: string | null = null;
  if (input.counted_at !== undefined) {
    requested = await readClientMoment(tx, input.counted_at, { name: 'counted_at', path: '/body/counted_at' });
    const bounds = await one(
      tx,
      sql<{ future: boolean; too_old: boolean }>`
        SELECT ${requested}::timestamptz > clock_timestamp() + ${COUNT_CLOCK_SKEW}::interval AS future,
               ${requested}::timestamptz < clock_timestamp() - make_interval(days => ${COUNT_MAX_AGE_DAYS}) AS too_old`,
    );
    if (bounds.future) throw new AppError('validation_failed', 'counted_at is in the future', { errors: [{ path: '/body/counted_at', message: `must not be more than ${COUNT_CLOCK_SKEW} ahead of the server's clock` }] });
    if (bounds.too_old) throw new AppError('validation_failed', `counted_at is more than ${COUNT_MAX_AGE_DAYS} days ago`, { errors: [{ path: '/body/counted_at', message: `must be within the last ${COUNT_MAX_AGE_DAYS} days: count the shelf again` }] });
  }

  await assertStoreExists(tx, tenantId, storeId);
  const skus = await assertSkusExist(tx, tenantId, input.items.map((item) => item.sku_id));
  // Stock of a piece-tracked SKU is the sum of its workshop pieces: it moves
  // only through pieces commands and sales naming pieces.
  const pieceTracked = input.items.flatMap((item, index) => (skus.get(item.sku_id)?.tracks_pieces ? [index] : []));
  if (pieceTracked.length > 0) {
    throw new AppError('unprocessable', 'the stock of a piece-tracked SKU moves only through its pieces (POST /v1/pieces, sales naming piece_ids)', {
      errors: pieceTracked.map((index) => ({ path: `/body/items/${index}/sku_id`, message: 'SKU is piece-tracked' })),
    });
  }

  const lines = input.items.map((item) => ({ sku_id: item.sku_id.toLowerCase(), counted_quantity: item.counted_quantity })).sort((a, b) => (a.sku_id < b.sku_id ? -1 : a.sku_id > b.sku_id ? 1 : 0));
  const skuIds = lines.map((line) => line.sku_id);

  // A SKU the store never held has no balance row to lock: it gets one (at
  // 0) first, so that a receipt of it committing meanwhile waits for this
  // count, or this count for it (ON CONFLICT waits for an insert in flight).
  // Even one counted 0: else a receipt stamped before counted_at could
  // commit after the expected quantity was read. Such a row stays at 0 (the
  // store counted none) with no ledger row, which is what its sum says.
  // Created AND locked row by row in sku_id order, in one statement: ON
  // CONFLICT DO UPDATE … WHERE false locks an existing row (without writing
  // it) and RETURNING names only the rows made. A count that made its new
  // rows first and locked the existing ones after held a higher row before
  // a lower one, and deadlocked with a receipt (which creates or locks in
  // sku_id order too, with the same statement: holdBalanceRows) holding the
  // lower one and waiting for the higher: stockCountRowCreation.int.spec.ts.
  const created = await holdBalanceRows(tx, tenantId, skuIds.map((skuId) => ({ storeId, skuId })));
  // The locks, in sku_id order (rows are locked after the sort), as changeStock
  // and the sales lock them, so a count and a sale never deadlock. Every row
  // is held already (above, FOR NO KEY UPDATE); this makes it FOR UPDATE,
  // which waits only for a foreign-key check in flight (FOR KEY SHARE), never
  // for a holder of a balance row.
  await all(
    tx,
    sql<{ sku_id: string }>`
      SELECT sku_id FROM stock_balances
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])
      ORDER BY sku_id FOR UPDATE`,
  );
  // From here every pair is ours until commit; a new statement, so a new
  // snapshot: every ledger row committed before the locks were granted.
  // `held_at`: the clock now that every row is held — a ledger row of these
  // pairs stamped before it was written before the count, one stamped after
  // it after the count (its writer waited for our commit). Kept on the count
  // (stock_counts.held_at) for the integrity check covered_sale_has_count_correction.
  const moment = await one(
    tx,
    sql<{ counted_at: string; held_at: string }>`
      SELECT ${utcMicros(sql`least(${requested}::timestamptz, h.at - interval '1 microsecond')`)} AS counted_at, ${utcMicros(sql.ref('h.at'))} AS held_at
      FROM (SELECT clock_timestamp() AS at) h`,
  );
  const countedAt = moment.counted_at;
  const id = newId();
  // A count at or before the counted_at of a count of the same SKU already
  // recorded is refused: that count said what the shelf held later, and the
  // balance has followed it since; an older count cannot correct it.
  const later = await all(
    tx,
    sql<{ sku_id: string; count_id: string; counted_at: Date }>`
      SELECT DISTINCT ON (y.sku_id) y.sku_id, z.id AS count_id, z.counted_at
      FROM stock_count_lines y
      JOIN stock_counts z ON z.tenant_id = y.tenant_id AND z.id = y.count_id
      WHERE y.tenant_id = ${tenantId} AND y.sku_id = ANY(${skuIds}::uuid[]) AND z.store_id = ${storeId}
        AND z.counted_at >= ${countedAt}::timestamptz
      ORDER BY y.sku_id, z.counted_at DESC`,
  );
  if (later.length > 0) {
    const at = new Map(input.items.map((item, index) => [item.sku_id, index]));
    throw new AppError('conflict', 'a later count of these SKUs is already recorded: it set the stock, and this count is older', {
      errors: later.map((row) => ({ path: `/body/items/${at.get(row.sku_id)}/sku_id`, message: `counted again at ${row.counted_at.toISOString()} (count ${row.count_id})` })),
      extra: { counted_at: countedAt, later_counts: later.map((row) => ({ sku_id: row.sku_id, count_id: row.count_id, counted_at: row.counted_at })) },
    });
  }
  // The stock of each pair at counted_at: the quantity_after of its last
  // ledger row stamped at or before it (stock_ledger_history_idx, backwards;
  // rows of one statement may share a microsecond: the later id is the later
  // row), plus the variances of the earlier counts of the pair (all counted
  // before counted_at: see above) whose ledger rows were stamped after it —
  // their correction holds from their own counted_at on, so the shelf this
  // count saw already had it — plus what the synced sales the tills made at
  // or before counted_at, recorded after it, moved (their `sale` rows and
  // `count_correction` rows stamped after counted_at): those goods had left
  // the shelf this count saw, though the ledger took them out later — and
  // likewise what the voids and returns a till made at or before counted_at
  // (their till time, `client_created_at`), recorded after it, moved (their
  // `void`/`return` rows and `count_correction` rows): those goods were back
  // on the shelf this count saw, though the ledger put them back later. A sale
  // an earlier count already covered moved the balance by 0 (its correction
  // gave back what it took: see planSale), so it is not taken out again; one
  // written after this count commits will see this count on its balance row
  // (counted_through) and move it by 0 too; so will such a void or return
  // (correctCountedGiveBacks).
  const expectedRows = await all(
    tx,
    sql<{ sku_id: string; expected: number; current: number }>`
      SELECT s.sku_id,
             (coalesce((SELECT l.quantity_after FROM stock_ledger l
                        WHERE l.tenant_id = ${tenantId} AND l.store_id = ${storeId} AND l.sku_id = s.sku_id
                          AND l.created_at <= ${countedAt}::timestamptz
                        ORDER BY l.created_at DESC, l.id DESC LIMIT 1), 0)
              + coalesce((SELECT sum(y.variance) FROM stock_count_lines y
                          JOIN stock_counts z ON z.tenant_id = y.tenant_id AND z.id = y.count_id
                          WHERE y.tenant_id = ${tenantId} AND y.sku_id = s.sku_id AND z.store_id = ${storeId}
                            -- whose count row of the pair was stamped after counted_at: found from the pair's count rows
                            -- stamped since (stock_ledger_count_history_idx), so this reads the counts since counted_at,
                            -- not every count the SKU ever had (bench/countHold.ts)
                            AND z.op_id IN (SELECT r.op_id FROM stock_ledger r
                                            WHERE r.tenant_id = ${tenantId} AND r.store_id = ${storeId} AND r.sku_id = s.sku_id
                                              AND r.created_at > ${countedAt}::timestamptz AND r.kind = 'count')), 0)
              -- the pair's rows from counted_at on (stock_ledger_history_idx), in one pass, of the operations a till
              -- made at or before counted_at: synced sales (which write only sale and count_correction rows), voids
              -- and returns with the till's time (void or return rows, and count_correction rows). Each row's
              -- operation is looked up by its kind only, each through a partial index of the till-timed ones
              -- (migrations 1280, 1300): an online sale's, void's or return's row is dismissed without its row.
              + coalesce((SELECT sum(l.quantity_change) FROM stock_ledger l
                          WHERE l.tenant_id = ${tenantId} AND l.store_id = ${storeId} AND l.sku_id = s.sku_id
                            AND l.created_at > ${countedAt}::timestamptz
                            AND ${sql.raw(madeByTillThen('l', 'at.counted_at'))}), 0))::bigint AS expected,
             coalesce(b.quantity, 0)::bigint AS current
      FROM unnest(${skuIds}::uuid[]) AS s(sku_id)
      CROSS JOIN (SELECT ${countedAt}::timestamptz AS counted_at) at
      LEFT JOIN stock_balances b ON b.tenant_id = ${tenantId} AND b.store_id = ${storeId} AND b.sku_id = s.sku_id`,
  );
  const expectedOf = new Map(expectedRows.map((row) => [row.sku_id, row]));
  // Below 0: an earlier count found less than the ledger then took out
  // before this counted_at (an offline sale synced late, a miscount), or a
  // till sold before counted_at more than the ledger held then (its sale,
  // synced after, took goods received since). No stock at this moment agrees
  // with both; the shelf is counted now instead.
  const belowZero = expectedRows.filter((row) => row.expected < 0);
  if (belowZero.length > 0) {
    const at = new Map(input.items.map((item, index) => [item.sku_id, index]));
    throw new AppError('conflict', 'the stock at counted_at comes out below 0: an earlier count found less than the ledger took out before this counted_at, or tills sold before it more than the ledger held; count these SKUs as of now', {
      errors: belowZero.map((row) => ({ path: `/body/items/${at.get(row.sku_id)}/sku_id`, message: `the stock at counted_at would be ${row.expected}` })),
      extra: { counted_at: countedAt, lines: belowZero.map((row) => ({ sku_id: row.sku_id, expected_quantity: row.expected })) },
    });
  }
  const planned = lines.map((line) => {
    const found = expectedOf.get(line.sku_id)!;
    return { ...line, expected_quantity: found.expected, variance: line.counted_quantity - found.expected, current: found.current };
  });

  // Every row is held (above): the variances move them in one statement, not
  // one round trip per line while the tills wait for them.
  const result = await changeHeldStock(
    tx,
    tenantId,
    cmd.opId,
    planned.map((line) => ({ storeId, skuId: line.sku_id, quantityChange: line.variance, kind: 'count', reason: input.reference ?? null })),
  );
  if (!result.ok) {
    const short = new Set(result.shortages.map((shortage) => shortage.sku_id));
    throw new AppError('insufficient_stock', 'the count would make stock negative: less was counted than has been sold since counted_at', {
      extra: {
        counted_at: countedAt,
        shortages: result.shortages.map(({ sku_id, requested: take, available }) => ({ sku_id, requested: take, available })),
        lines: planned
          .filter((line) => short.has(line.sku_id))
          .map((line) => ({ sku_id: line.sku_id, counted_quantity: line.counted_quantity, expected_quantity: line.expected_quantity, variance: line.variance, available: line.current })),
      },
    });
  }
  const moved = new Map(result.balances.map((balance) => [balance.sku_id, balance]));
  const items: CountLine[] = planned.map((line) => {
    const balance = moved.get(line.sku_id);
    return {
      sku_id: line.sku_id,
      counted_quantity: line.counted_quantity,
      expected_quantity: line.expected_quantity,
      variance: line.variance,
      quantity_after: balance ? balance.quantity_after : line.current,
      ledger_id: balance ? balance.ledger_id : null,
    };
  });

  // The balance rows carry their latest count, for the synced sales made
  // before its counted_at that arrive after it (planSale): under the locks.
  await sql`
    UPDATE stock_balances SET counted_through = ${countedAt}::timestamptz, counted_by = ${id}
    WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])`.execute(tx);
  const header = await one(
    tx,
    sql<{ created_at: Date }>`
      INSERT INTO stock_counts (tenant_id, id, store_id, counted_at, reference, op_id, held_at)
      VALUES (${tenantId}, ${id}, ${storeId}, ${countedAt}::timestamptz, ${input.reference ?? null}, ${cmd.opId}, ${moment.held_at}::timestamptz)
      RETURNING created_at`,
  );
  await sql`
    INSERT INTO stock_count_lines (tenant_id, count_id, sku_id, counted_quantity, expected_quantity, variance, quantity_after, ledger_id, op_id)
    SELECT ${tenantId}, ${id}, l.sku_id, l.counted_quantity, l.expected_quantity, l.variance, l.quantity_after, l.ledger_id, ${cmd.opId}
    FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb)
         AS l(sku_id uuid, counted_quantity bigint, expected_quantity bigint, variance bigint, quantity_after bigint, ledger_id bigint)`.execute(tx);

  cmd.storeId = storeId;
  cmd.touch('stock_counts', id, 'created');
  // A balance row the count made is named once, as created (moved by the variance or left at 0).
  const moves = new Set(result.balances.map((balance) => balance.sku_id));
  for (const row of created) if (!moves.has(row.sku_id)) cmd.touch('stock_balances', `${storeId}/${row.sku_id}`, 'created');
  touchStockMoves(cmd, result.balances, created);
  const view: CountView = { id, op_id: cmd.opId, store_id: storeId, counted_at: new Date(countedAt), counted_at_exact: countedAt, reference: input.reference ?? null, created_at: header.created_at, items };
  // Before: each SKU's balance as the count found it (locked); after: the count as answered.
  cmd.audit({ subjectType: 'stock_count', subjectId: id, payload: input, before: { store_id: storeId, balances: planned.map((line) => ({ sku_id: line.sku_id, quantity: line.current })) }, after: view });
  return view;
}

const COUNT_COLUMNS = sql`c.id, c.op_id, c.store_id, c.counted_at, ${utcMicros(sql.ref('c.counted_at'))} AS counted_at_exact, c.reference, c.created_at`;

/** The lines of counts, by count id, in sku_id order. */
async function linesOf(tx: Tx, tenantId: string, countIds: string[]): Promise<Map<string, CountLine[]>> {
  const rows = await all(
    tx,
    sql<CountLine & { count_id: string }>`
      SELECT count_id, sku_id, counted_quantity, expected_quantity, variance, quantity_after, ledger_id
      FROM stock_count_lines WHERE tenant_id = ${tenantId} AND count_id = ANY(${countIds}::uuid[])
      ORDER BY count_id, sku_id`,
  );
  const byCount = new Map<string, CountLine[]>();
  for (const { count_id, ...line } of rows) byCount.set(count_id, [...(byCount.get(count_id) ?? []), line]);
  return byCount;
}

/** A store's counts, newest first (by id, time-ordered), after the cursor's id; each with its lines. */
export async function listStockCounts(tx: Tx, tenantId: string, storeId: string, before: string | undefined, limit: number): Promise<CountView[]> {
  const counts = await all(
    tx,
    sql<Omit<CountView, 'items'>>`
      SELECT ${COUNT_COLUMNS} FROM stock_counts c
      WHERE c.tenant_id = ${tenantId} AND c.store_id = ${storeId} ${andIf(before, (id) => sql`c.id < ${id}::uuid`)}
      ORDER BY c.id DESC LIMIT ${limit}`,
  );
  const lines = await linesOf(tx, tenantId, counts.map((count) => count.id));
  return counts.map((count) => ({ ...count, items: lines.get(count.id) ?? [] }));
}

export async function findStockCount(tx: Tx, tenantId: string, storeId: string, id: string): Promise<CountView | undefined> {
  const count = await maybeOne(tx, sql<Omit<CountView, 'items'>>`SELECT ${COUNT_COLUMNS} FROM stock_counts c WHERE c.tenant_id = ${tenantId} AND c.store_id = ${storeId} AND c.id = ${id}`);
  if (!count) return undefined;
  return { ...count, items: (await linesOf(tx, tenantId, [count.id])).get(count.id) ?? [] };
}
