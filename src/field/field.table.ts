/** Row shapes of the field tables, as the API returns them. */
export interface PointOfSaleRow {
  id: string;
  name: string;
  store_id: string;
  party_id: string;
  latitude: number;
  longitude: number;
  last_visit_at: Date | null;
  last_visit_id: string | null;
  op_id: string;
  created_at: Date;
}

export interface VisitRow {
  id: string;
  point_of_sale_id: string;
  store_id: string;
  agent_token_id: string;
  scheduled_for: Date;
  status: 'scheduled' | 'completed';
  completed_at: Date | null;
  completed_by_op: string | null;
  completed_latitude: number | null;
  completed_longitude: number | null;
  completed_distance_m: number | null;
  /** The device's time of the completion, as sent (null: none sent). */
  client_created_at: Date | null;
  op_id: string;
  created_at: Date;
}

export interface ConsignmentLineRow {
  sku_id: string;
  quantity: number;
  unit_price: number;
  /** Left on a visit queued offline when the store was short: the part not in its stock (the ledger took quantity − this). */
  shortfall_quantity: number;
}

export interface ConsignmentView {
  id: string;
  visit_id: string;
  point_of_sale_id: string;
  store_id: string;
  status: 'open' | 'settled';
  settled_by_op: string | null;
  op_id: string;
  created_at: Date;
  lines: ConsignmentLineRow[];
}

export interface SettlementView {
  id: string;
  consignment_id: string;
  visit_id: string;
  amount_owed: number;
  /** The money-ledger entry posting the amount owed (null when nothing was sold). */
  journal_entry_id: string | null;
  op_id: string;
  created_at: Date;
  lines: Array<{ sku_id: string; sold_quantity: number; returned_quantity: number; unit_price: number }>;
}

/**
 * A completion queued offline whose settlement was not recorded: its
 * consignment had been settled by another operation meanwhile.
 */
export interface SettlementConflictView {
  consignment_id: string;
  /** The settlement recorded for the consignment, and its operation. */
  settlement_id: string;
  settled_by_op: string;
  /** The `consignment_settled_twice` review item a person decides on. */
  review_item_id: string;
}

/** What completing a visit returns, fresh or replayed. */
export interface VisitCompletion {
  visit: VisitRow;
  consignment: ConsignmentView | null;
  settlement: SettlementView | null;
  /** Only on a completion whose settlement was not recorded (absent otherwise). */
  settlement_conflict?: SettlementConflictView;
}
