import type { IntegrityCheck } from '../integrity/check.js';

/** Stock invariants (DESIGN.md principle 2: balances are the lock, ledgers are the history). */
export const inventoryChecks: IntegrityCheck[] = [
  {
    name: 'stock_ledger_matches_balance',
    severity: 'critical',
    description: 'Every stock balance equals the sum of its ledger rows, and no ledger rows are left without their balance row.',
    // A FULL JOIN: ledger rows whose balance row is gone (an orphan the
    // foreign key normally prevents) are found too, with balance null.
    sql: `
      SELECT coalesce(b.tenant_id, l.tenant_id) AS tenant_id,
             coalesce(b.store_id, l.store_id) || '/' || coalesce(b.sku_id, l.sku_id) AS subject,
             jsonb_build_object('store_id', coalesce(b.store_id, l.store_id), 'sku_id', coalesce(b.sku_id, l.sku_id),
                                'balance', b.quantity, 'ledger_sum', coalesce(l.total, 0)) AS detail
      FROM (SELECT tenant_id, store_id, sku_id, quantity FROM stock_balances WHERE ($1::uuid IS NULL OR tenant_id = $1)) b
      FULL JOIN (
        SELECT tenant_id, store_id, sku_id, sum(quantity_change) AS total
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY tenant_id, store_id, sku_id
      ) l ON l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
      WHERE b.quantity IS DISTINCT FROM coalesce(l.total, 0)`,
  },
  {
    name: 'stock_ledger_running_totals',
    severity: 'critical',
    description:
      'Every stock ledger row\'s quantity_after is the sum of its pair\'s changes up to and including it (rows in id order, the order they were applied), so the history GET …/ledger shows is the stock as it was. Reported once per store and SKU, at the first row that is off.',
    // One pass in the order of stock_ledger_balance_idx (tenant, store, SKU, id): no sort.
    sql: `
      WITH chain AS (
        SELECT tenant_id, store_id, sku_id, id, quantity_after,
               sum(quantity_change) OVER (PARTITION BY tenant_id, store_id, sku_id ORDER BY id) AS running
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
      )
      SELECT DISTINCT ON (tenant_id, store_id, sku_id)
             tenant_id, store_id || '/' || sku_id AS subject,
             jsonb_build_object('store_id', store_id, 'sku_id', sku_id, 'ledger_id', id, 'quantity_after', quantity_after, 'running_sum', running) AS detail
      FROM chain WHERE quantity_after <> running
      ORDER BY tenant_id, store_id, sku_id, id`,
  },
  {
    name: 'stock_not_negative',
    severity: 'critical',
    description: 'No stock balance is below zero (the CHECK constraint is the last defence; this finds it dropped or bypassed).',
    sql: `
      SELECT b.tenant_id, b.store_id || '/' || b.sku_id AS subject,
             jsonb_build_object('store_id', b.store_id, 'sku_id', b.sku_id, 'quantity', b.quantity) AS detail
      FROM stock_balances b
      WHERE ($1::uuid IS NULL OR b.tenant_id = $1) AND b.quantity < 0`,
  },
  {
    name: 'stock_snapshot_matches_ledger',
    severity: 'critical',
    description:
      'Every daily stock snapshot (store, SKU, UTC day) equals the sum of that pair\'s ledger rows up to the end of its day, so stock "as of" a moment, read from the snapshot, is what the ledger says.',
    // One pass over the ledger: per pair and UTC day its change, then the
    // running sum (the balance at the end of each day that has ledger rows:
    // the only days a snapshot is written for), joined to the snapshots.
    sql: `
      WITH daily AS (
        SELECT tenant_id, store_id, sku_id, (created_at AT TIME ZONE 'UTC')::date AS day, sum(quantity_change) AS change
        FROM stock_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1)
        GROUP BY 1, 2, 3, 4
      ), running AS (
        SELECT tenant_id, store_id, sku_id, day, sum(change) OVER (PARTITION BY tenant_id, store_id, sku_id ORDER BY day) AS quantity
        FROM daily
      )
      SELECT s.tenant_id, s.store_id || '/' || s.sku_id || '/' || s.snapshot_date AS subject,
             jsonb_build_object('store_id', s.store_id, 'sku_id', s.sku_id, 'snapshot_date', s.snapshot_date,
                                'snapshot', s.quantity, 'ledger', r.quantity) AS detail
      FROM stock_snapshots s
      LEFT JOIN running r ON r.tenant_id = s.tenant_id AND r.store_id = s.store_id AND r.sku_id = s.sku_id AND r.day = s.snapshot_date
      WHERE ($1::uuid IS NULL OR s.tenant_id = $1) AND s.quantity IS DISTINCT FROM r.quantity`,
  },
];
