import type { Command, CommandFn } from '../core/command.js';
import { lockPiecesForSale, markPiecesSold, type PieceSaleLineResult } from '../pieces/sellPieces.js';
import type { SaleInput, SaleSource, SaleView } from './sale.table.js';
import { planSale, saleEffects, validateSale, type SaleRequest } from './salePlan.js';
import { balanceKey, loadSaleState, saleAccountKeys, writeSales } from './saleRows.js';

/**
 * One sale inside its command's transaction (`cmd.tx`): POST /v1/sales with
 * workshop pieces, and any sale run through runCommand. Sales without pieces
 * posted to the API are written in batches by group commit
 * (src/sales/groupCommit.ts); both go through the same planner
 * (src/sales/salePlan.ts) and writer (src/sales/saleRows.ts), this one with a
 * batch of one.
 *
 * Piece-tracked SKUs (workshop pieces): their stock is the sum of their live
 * pieces, so a line of such a SKU names the pieces it sells (`piece_ids`).
 * The pieces are locked in id order — before any balance, like every pieces
 * command — and checked (lockPiecesForSale); pieces reserved under the
 * sale's `reservation_op_id` are sellable. The sold pieces get status
 * `sold`, `sold_by_op` = this operation and a `piece.sold` event, and their
 * sum leaves stock through the sale's ledger rows, so stock stays = Σ live pieces.
 *
 * Throws the refusal (404, 400, 403, 409 insufficient_stock or
 * piece_unavailable); the caller rolls back.
 */
export async function recordSale(cmd: Command, input: SaleInput, source: SaleSource = 'online'): Promise<SaleView> {
  const { tx, tenantId, opId } = cmd;
  const storeId = input.store_id;
  const request: SaleRequest = { input: cmd.input, sale: input, source };

  const pieceLines = input.items.flatMap((item, index) =>
    item.piece_ids ? [{ index, skuId: item.sku_id, pieceIds: item.piece_ids, quantity: item.quantity }] : [],
  );
  const pieces = new Map<number, PieceSaleLineResult>();
  if (pieceLines.length > 0) {
    // Validate before locking pieces (their checks assume known SKUs of this store).
    const invalid = validateSale(await loadSaleState(tx, tenantId, storeId, [input], { lock: false }), request);
    if (invalid) throw invalid;
    // In the tenant's sale lane: a balance or the receipt counter it locks after its pieces that the lane found held
    // by another transaction, and still held, refuses it at once (503, nothing written) — not after the lock wait.
    await cmd.beforeLocking({ balances: input.items.map((item) => balanceKey(storeId, item.sku_id)), counters: [storeId.toLowerCase()] });
    for (const result of await lockPiecesForSale(cmd, storeId, pieceLines, input.reservation_op_id)) pieces.set(result.index, result);
  }

  const state = await loadSaleState(tx, tenantId, storeId, [input], { lock: true });
  const invalid = validateSale(state, request);
  if (invalid) throw invalid;
  const locked = new Map([[storeId, state.lastReceipt]]);
  const planned = planSale(state, request, opId, pieces);
  if (!planned.ok) throw planned.error;
  const { plan } = planned;
  // …and so does a journal account its entry posts to (none for a sale of total 0), locked last.
  if (pieceLines.length > 0 && plan.entry) await cmd.beforeLocking({ accounts: saleAccountKeys(input) });

  const [ledgerIds] = await writeSales(tx, tenantId, [plan], locked);
  const sold = [...pieces.values()].flatMap((result) => result.available);
  if (sold.length > 0) await markPiecesSold(cmd, sold);

  const { effects, events } = saleEffects(plan, ledgerIds!);
  for (const effect of effects) cmd.touch(effect.table, effect.id, effect.action);
  for (const event of events) cmd.audit(event);
  cmd.storeId = storeId;
  return plan.sale;
}

/**
 * The command function of one sale: the sale (201), or a thrown refusal
 * that rolls it back (its savepoint, under group commit).
 */
export function saleCommand(body: SaleInput, source: SaleSource): CommandFn {
  return async (cmd) => ({ status: 201, body: await recordSale(cmd, body, source) });
}
