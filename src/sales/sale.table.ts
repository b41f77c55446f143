/** Row and API shapes of the sales tables. */

/**
 * The moment a void took place, as SQL over a `sales` row aliased `s`: the
 * till's time when a till queued it (void_client_created_at), else when it
 * was recorded (voided_at). A return the till made before it (its
 * client_created_at strictly earlier) is recorded after the void as a fact;
 * the integrity check sale_return_matches_lines holds every after_void return
 * to the same expression.
 */
export const VOID_MOMENT_SQL = 'coalesce(s.void_client_created_at, s.voided_at)';

export type PaymentMethod = 'cash' | 'card' | 'mobile' | 'credit';
export type SaleType = 'regular' | 'bulk';
export type SaleSource = 'online' | 'offline';
export type SaleStatus = 'completed' | 'voided';

export interface SaleItemView {
  id: string;
  line_number: number;
  sku_id: string;
  /** Base units of the SKU. */
  quantity: number;
  /** Minor units per kg / piece / metre. */
  unit_price: number;
  line_total: number;
  /** Offline sales only: quantity that was not in stock when synced. */
  shortfall_quantity: number;
  /** Piece-tracked SKUs: the pieces the line named ([] otherwise). */
  piece_ids: string[];
}

/** The sale as the API returns it (`GET /v1/sales/{id}`, and every sale command). */
export interface SaleView {
  id: string;
  op_id: string;
  store_id: string;
  receipt_number: number;
  status: SaleStatus;
  payment_method: PaymentMethod;
  sale_type: SaleType;
  source: SaleSource;
  customer_id: string | null;
  total: number;
  client_created_at: Date | string | null;
  created_at: Date | string;
  voided_at: Date | string | null;
  voided_by_op: string | null;
  void_reason: string | null;
  /** When the till voided it (sent with a void it queued offline), or null; `voided_at` is when the void was recorded. */
  void_client_created_at: Date | string | null;
  items: SaleItemView[];
  /** Minor units its partial returns took back so far (0 for a new sale). */
  returned_total: number;
  /** Its partial returns, oldest first ([] for a new sale). */
  returns: SaleReturnView[];
}

/** A partial return of a sale (POST /v1/sales/{id}/returns, and each of a sale's `returns`). */
export interface SaleReturnView {
  id: string;
  op_id: string;
  sale_id: string;
  return_number: number;
  reason: string;
  refund_total: number;
  client_created_at: Date | string | null;
  created_at: Date | string;
  /**
   * A return the till made (client_created_at) before the sale was voided and
   * sent after the void: recorded with no stock or money effect (the void
   * reversed the sale), a review item opened for the till's cash.
   */
  after_void: boolean;
  /** `piece_ids`: the workshop pieces the line took back ([] for a line without pieces). */
  lines: Array<{ sale_item_id: string; line_number: number; sku_id: string; quantity: number; refund: number; piece_ids: string[] }>;
}

/** The body of POST /v1/sales (and of each item of POST /v1/sync/sales, without its key). */
export interface SaleInput {
  store_id: string;
  payment_method: PaymentMethod;
  /**
   * `quantity` is required for SKUs that do not track pieces; a line of a
   * piece-tracked SKU names its pieces instead (`quantity`, if sent, must be their sum).
   */
  items: Array<{ sku_id: string; quantity?: number | undefined; unit_price: number; piece_ids?: string[] | undefined }>;
  customer_id?: string | undefined;
  client_created_at?: string | undefined;
  sale_type?: SaleType | undefined;
  /** A reservation (its `op_id`) whose pieces this sale may sell: see lockPiecesForSale. */
  reservation_op_id?: string | undefined;
}
