import type { TenantPrincipal } from '../core/auth.js';
import { roleHas } from '../core/permissions.js';
import type { SettlementRow } from './settlements.table.js';

/**
 * The figures of a settlement a blind count does not show: what the drawer
 * should hold (`expected_cash`), how far the count is from it (`variance`),
 * and the day's movements it is worked out from — the float is known to the
 * till (it is handed over), and float + these movements would give the
 * expected cash back.
 */
export const BLIND_FIGURES = ['cash_sales', 'cash_voids', 'cash_returns', 'payments_in', 'payments_out', 'other_cash', 'expected_cash', 'variance'] as const;

export type BlindFigure = (typeof BLIND_FIGURES)[number];

/** A settlement as an answer shows it: its blind figures null for a caller that may not read them. */
export type SettlementView = Omit<SettlementRow, BlindFigure> & { [K in BlindFigure]: number | null };

/**
 * A settlement as `principal` — the caller of this request, not whoever
 * stored an answer being replayed — may see it. A role without
 * `settlements.expected.read` (the cashier) gets the blind figures as null:
 * the blind count of retail, always on. Everything is computed and stored
 * as before; only the answer is redacted.
 */
export function settlementAsSeenBy(principal: TenantPrincipal, settlement: SettlementRow): SettlementView {
  if (roleHas(principal.role, 'settlements.expected.read')) return settlement;
  const blind: SettlementView = { ...settlement };
  for (const figure of BLIND_FIGURES) blind[figure] = null;
  return blind;
}
