import type { TransferStatus } from './transferState.js';

export interface TransferRow {
  id: string;
  source_store_id: string;
  destination_store_id: string;
  status: TransferStatus;
  version: number;
  note: string | null;
  requested_by: string;
  approved_by: string | null;
  approved_at: Date | null;
  received_by: string | null;
  received_at: Date | null;
  cancelled_by: string | null;
  cancelled_at: Date | null;
  op_id: string;
  created_at: Date;
  items: Array<{ sku_id: string; quantity: number; quantity_in_transit: number; quantity_received: number | null }>;
}
