-- Up Migration
-- Selling workshop pieces. A sale line of a piece-tracked SKU names the pieces
-- it sells (sale_items.piece_ids); the sale marks them sold (pieces.sold_by_op
-- = the sale's operation) and takes their sum from stock in the same
-- transaction, so stock of a piece-tracked SKU stays = Σ its live pieces.
-- A void finds the pieces by that operation id (never by time) and returns them.

-- The pieces a line named, in the order given ('{}' for SKUs that do not track
-- pieces). An offline sale may name a piece that was no longer available when
-- it synced: that piece is listed here but not sold (its quantity is the line's
-- shortfall_quantity); the pieces actually sold are those with sold_by_op = the sale's op.
ALTER TABLE sale_items ADD COLUMN piece_ids uuid[] NOT NULL DEFAULT '{}';

-- A void looks up the pieces its sale sold.
CREATE INDEX pieces_sold_by_op_idx ON pieces (tenant_id, sold_by_op) WHERE sold_by_op IS NOT NULL;

-- Whether a SKU tracks pieces decides how its stock may move (pieces commands
-- only); it never changes once the SKU exists, so the sale path may cache it.
CREATE TRIGGER skus_tracks_pieces_fixed BEFORE UPDATE ON skus
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tracks_pieces');
