import type { IntegrityCheck } from '../integrity/check.js';

/** Invariants of workshop pieces, checked by the integrity runner. */
export const pieceChecks: IntegrityCheck[] = [
  {
    name: 'piece_stock_matches_balance',
    severity: 'critical',
    description: 'The stock balance of every piece-tracked SKU in a store equals the sum of its live pieces (not deleted, in stock or reserved).',
    sql: `
      WITH live AS (
        SELECT tenant_id, store_id, sku_id, sum(quantity) AS quantity
        FROM pieces
        WHERE deleted_by_op IS NULL AND status IN ('in_stock', 'reserved') AND ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, store_id, sku_id
      ), balances AS (
        SELECT b.tenant_id, b.store_id, b.sku_id, b.quantity
        FROM stock_balances b JOIN skus s ON s.tenant_id = b.tenant_id AND s.id = b.sku_id
        WHERE s.tracks_pieces AND ($1::uuid IS NULL OR b.tenant_id = $1)
      )
      SELECT coalesce(b.tenant_id, l.tenant_id) AS tenant_id,
             'stock:' || coalesce(b.store_id, l.store_id) || '/' || coalesce(b.sku_id, l.sku_id) AS subject,
             jsonb_build_object('store_id', coalesce(b.store_id, l.store_id), 'sku_id', coalesce(b.sku_id, l.sku_id),
                                'balance', coalesce(b.quantity, 0), 'live_pieces', coalesce(l.quantity, 0)) AS detail
      FROM balances b FULL JOIN live l ON l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
      WHERE coalesce(b.quantity, 0) <> coalesce(l.quantity, 0)`,
  },
  {
    name: 'piece_consumed_by_reverted_or_live_operation',
    severity: 'warning',
    description: 'A piece consumed by an operation (a cut or combine) was consumed by one that is not reverted; a reverted operation left none of the pieces it created live (they are deleted by its revert).',
    sql: `
      SELECT p.tenant_id, 'piece:' || p.id AS subject,
             jsonb_build_object('consumed_by_op', p.consumed_by_op, 'created_by_op', p.created_by_op, 'status', p.status,
                                'reverted_by', coalesce(c.reverted_by, o.reverted_by)) AS detail
      FROM pieces p
      LEFT JOIN operations c ON c.tenant_id = p.tenant_id AND c.id = p.consumed_by_op
      JOIN operations o ON o.tenant_id = p.tenant_id AND o.id = p.created_by_op
      WHERE ($1::uuid IS NULL OR p.tenant_id = $1)
        AND ((p.consumed_by_op IS NOT NULL AND c.reverted_by IS NOT NULL)
          OR (o.reverted_by IS NOT NULL AND p.deleted_by_op IS DISTINCT FROM o.reverted_by))`,
  },
  {
    name: 'piece_sold_by_completed_sale',
    severity: 'critical',
    description:
      'A sold piece was sold by a completed (not voided) sale of its store whose line of its SKU names it; a voided sale left none of its pieces sold.',
    sql: `
      SELECT p.tenant_id, 'piece:' || p.id AS subject,
             jsonb_build_object('sold_by_op', p.sold_by_op, 'status', p.status, 'sale_id', s.id, 'sale_status', s.status) AS detail
      FROM pieces p
      LEFT JOIN sales s ON s.tenant_id = p.tenant_id AND s.op_id = p.sold_by_op
      WHERE ($1::uuid IS NULL OR p.tenant_id = $1) AND p.sold_by_op IS NOT NULL
        AND (s.id IS NULL OR s.status <> 'completed' OR s.store_id <> p.store_id
          OR NOT EXISTS (SELECT 1 FROM sale_items i
                         WHERE i.tenant_id = s.tenant_id AND i.sale_id = s.id AND i.sku_id = p.sku_id AND p.id = ANY (i.piece_ids)))`,
  },
];
