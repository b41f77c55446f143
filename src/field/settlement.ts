import type { Unit } from '../inventory/inventory.table.js';
import { amountErrors, lineTotal } from '../sales/lineTotal.js';

/**
 * Settling a consignment: every unit left at the point of sale is accounted
 * for as sold or returned (back to the store's stock). The point of sale owes,
 * per line, what a sale of the sold quantity at the line's unit price would
 * total (`lineTotal`: quantity in base units, price per piece / kg / metre,
 * kg and metre lines rounded half up). Goods that stay at the point of sale
 * are returned and left again on the new consignment of the same visit, so a
 * consignment is always settled whole. Pure: no database.
 */
export interface ConsignedLine {
  sku_id: string;
  unit: Unit;
  /** Base units of the SKU (grams, pieces, millimetres). */
  quantity: number;
  /** Minor units per piece / kg / metre, like a sale line's. */
  unit_price: number;
}

export interface ReportedLine {
  sku_id: string;
  sold_quantity: number;
  returned_quantity: number;
}

export interface SettledLine extends ReportedLine {
  unit_price: number;
}

export type SettlementPlan =
  | { ok: true; lines: SettledLine[]; amount_owed: number; returned: Array<{ sku_id: string; quantity: number }> }
  | { ok: false; errors: Array<{ path: string; message: string }> };

export function planSettlement(consigned: ConsignedLine[], reported: ReportedLine[]): SettlementPlan {
  const errors: Array<{ path: string; message: string }> = [];
  const byId = new Map(consigned.map((line) => [line.sku_id, line]));
  const seen = new Set<string>();
  reported.forEach((line, index) => {
    const path = `/body/settlement/lines/${index}`;
    const left = byId.get(line.sku_id);
    if (seen.has(line.sku_id)) errors.push({ path: `${path}/sku_id`, message: 'SKU reported twice' });
    seen.add(line.sku_id);
    if (!left) {
      errors.push({ path: `${path}/sku_id`, message: 'SKU is not on this consignment' });
      return;
    }
    if (line.sold_quantity + line.returned_quantity !== left.quantity) {
      errors.push({
        path,
        message: `sold (${line.sold_quantity}) + returned (${line.returned_quantity}) must equal the ${left.quantity} left on consignment`,
      });
    }
  });
  for (const line of consigned) {
    if (!seen.has(line.sku_id)) errors.push({ path: '/body/settlement/lines', message: `SKU ${line.sku_id} on the consignment is not reported` });
  }
  if (errors.length > 0) return { ok: false, errors };

  const lines = reported
    .map((line) => ({ ...line, unit_price: byId.get(line.sku_id)!.unit_price }))
    .sort((a, b) => (a.sku_id < b.sku_id ? -1 : a.sku_id > b.sku_id ? 1 : 0));
  const sold = lines.filter((line) => line.sold_quantity > 0).map((line) => ({ unit: byId.get(line.sku_id)!.unit, quantity: line.sold_quantity, unit_price: line.unit_price }));
  if (amountErrors(sold).length > 0) return { ok: false, errors: [{ path: '/body/settlement/lines', message: 'amount owed is too large' }] };
  const amountOwed = sold.reduce((sum, line) => sum + lineTotal(line.unit, line.quantity, line.unit_price), 0);
  return {
    ok: true,
    lines,
    amount_owed: amountOwed,
    returned: lines.filter((line) => line.returned_quantity > 0).map((line) => ({ sku_id: line.sku_id, quantity: line.returned_quantity })),
  };
}
