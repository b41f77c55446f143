import type { SettlementStatus } from './settlementMath.js';

export interface SettlementRow {
  id: string;
  store_id: string;
  business_date: string;
  status: SettlementStatus;
  version: number;
  float_amount: number;
  cash_sales: number;
  cash_voids: number;
  cash_returns: number;
  payments_in: number;
  payments_out: number;
  other_cash: number;
  expected_cash: number;
  declared_cash: number;
  variance: number;
  note: string | null;
  submitted_by: string;
  decided_by: string | null;
  decided_at: Date | null;
  decision_note: string | null;
  op_id: string;
  created_at: Date;
}
