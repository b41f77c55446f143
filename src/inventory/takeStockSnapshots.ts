import { sql, type RawBuilder } from 'kysely';
import { all, andIf, lockNamed, one, type Db } from '../core/db.js';
import { runCommand, type Command } from '../core/command.js';
import { fingerprintRequest } from '../core/command.js';
import type { Principal } from '../core/auth.js';
import { newId } from '../core/ids.js';
import { forEachTenant } from '../jobs/eachTenant.js';

/**
 * A UTC day is snapshotted only once it ended at least this long ago: a
 * transaction that started before midnight could still be committing ledger
 * rows stamped before it (statement_timeout and idle_in_transaction timeouts
 * bound a transaction's life far below this).
 */
export const SNAPSHOT_SETTLE_MINUTES = 10;

export interface SnapshotResult {
  /** Last day snapshotted (YYYY-MM-DD), or null when nothing was due. */
  through: string | null;
  snapshots_written: number;
}

/**
 * Writes the daily balance snapshots of the command's tenant for every day
 * after its latest snapshot up to `through` (default: the last UTC day that
 * ended SNAPSHOT_SETTLE_MINUTES ago), in one set-based statement:
 *
 *   snapshot(pair, D) = latest earlier snapshot of the pair
 *                       + running sum of the pair's ledger rows per day.
 *
 * Only (store, SKU, day) with ledger rows get a row; a pair's latest snapshot
 * on or before a day is its balance at the end of that day. Idempotent: days
 * already snapshotted are skipped.
 *
 * Runs of one tenant are serialized: the nightly job and a manager's
 * `POST /v1/stock/snapshots` at once would otherwise both read the same
 * latest snapshot, and the later INSERT would add the earlier run's rows to
 * its own sums (days counted twice, in rows that are never rewritten). The
 * transaction-scoped advisory lock is taken before the bounds are read, so a
 * run that waited reads the bounds the other run left (READ COMMITTED: each
 * statement sees what committed before it started). As a second wall, the
 * base of every sum is the latest snapshot before the run's first day, so
 * rows committed while the run is under way cannot change what it computes.
 */
export async function takeStockSnapshots(cmd: Command, through?: string): Promise<SnapshotResult> {
  const { tx, tenantId, opId } = cmd;
  await lockNamed(tx, `stock-snapshots/${tenantId}`);
  const bounds = await one(
    tx,
    sql<{ from_date: string | null; through_date: string }>`
      SELECT (SELECT max(snapshot_date) + 1 FROM stock_snapshots WHERE tenant_id = ${tenantId}) AS from_date,
             least(coalesce(${through ?? null}::date, 'infinity'::date),
                   ((now() - make_interval(mins => ${SNAPSHOT_SETTLE_MINUTES})) AT TIME ZONE 'UTC')::date - 1) AS through_date`,
  );
  if (bounds.from_date !== null && bounds.from_date > bounds.through_date) return { through: null, snapshots_written: 0 };
  const written = await all(
    tx,
    sql<{ n: number }>`
      WITH daily AS (${ledgerDays(tenantId, bounds.from_date, bounds.through_date)}), inserted AS (
        INSERT INTO stock_snapshots (tenant_id, store_id, sku_id, snapshot_date, quantity, op_id)
        SELECT ${tenantId}, d.store_id, d.sku_id, d.day,
               coalesce(base.quantity, 0) + sum(d.change) OVER (PARTITION BY d.store_id, d.sku_id ORDER BY d.day),
               ${opId}
        FROM daily d
        LEFT JOIN LATERAL (
          SELECT s.quantity FROM stock_snapshots s
          WHERE s.tenant_id = ${tenantId} AND s.store_id = d.store_id AND s.sku_id = d.sku_id
            AND s.snapshot_date < coalesce(${bounds.from_date}::date, '-infinity')
          ORDER BY s.snapshot_date DESC LIMIT 1
        ) base ON true
        ON CONFLICT DO NOTHING
        RETURNING 1
      )
      SELECT count(*)::int AS n FROM inserted`,
  );
  const count = written[0]?.n ?? 0;
  cmd.touch('stock_snapshots', `${bounds.from_date ?? 'start'}..${bounds.through_date}`, 'created');
  cmd.audit({ subjectType: 'stock_snapshots', subjectId: bounds.through_date, after: { from: bounds.from_date, through: bounds.through_date, written: count } });
  return { through: bounds.through_date, snapshots_written: count };
}

/**
 * The change of each store and SKU of the tenant on each UTC day from `from`
 * (null: from its first ledger row) through `through`, summed from the
 * ledger (`store_id, sku_id, day, change`): the days a snapshot run writes.
 *
 * The lower bound is written only when there is one (andIf), never as
 * `coalesce(<from>, '-infinity')`: in a generic plan (a prepared statement
 * reused, a pooler, plan_cache_mode = force_generic_plan) that COALESCE is
 * not folded to a constant, and under row-level security PostgreSQL does not
 * take it as an index bound (it trusts CASE, not COALESCE, not to leak rows
 * before the policy) — the nightly run read every tenant's whole ledger to
 * sum one day (src/inventory/stockHistoryPlans.int.spec.ts).
 */
export function ledgerDays(tenantId: string, from: string | null, through: string): RawBuilder<{ store_id: string; sku_id: string; day: string; change: number }> {
  return sql`
    SELECT store_id, sku_id, (created_at AT TIME ZONE 'UTC')::date AS day, sum(quantity_change) AS change
    FROM stock_ledger
    WHERE tenant_id = ${tenantId}
      ${andIf(from, (day) => sql`created_at >= (${day}::date)::timestamp AT TIME ZONE 'UTC'`)}
      AND created_at < ((${through}::date + 1)::timestamp AT TIME ZONE 'UTC')
    GROUP BY 1, 2, 3`;
}

/**
 * Runs takeStockSnapshots for every tenant holding stock, each as its own
 * operation, one tenant's failure not stopping the others (forEachTenant).
 * For the nightly job; `POST /v1/stock/snapshots` runs it for one tenant now.
 * Needs a pool as the app role, like every command. `principal` is who the
 * operations name as their actor (the job's: `worker`).
 */
export async function takeAllStockSnapshots(
  db: Db,
  principal: Principal,
  correlationId = `snapshots-${newId()}`,
): Promise<Array<{ tenantId: string } & SnapshotResult>> {
  const tenants = await all(db, sql<{ id: string }>`SELECT tenants_with_stock() AS id`);
  return forEachTenant(tenants, (tenant) => tenant.id, async ({ id: tenantId }) => {
    const outcome = await runCommand(
      db,
      { tenantId, principal, correlationId, fingerprint: fingerprintRequest('JOB', 'stock.snapshot', { tenantId }) },
      { type: 'stock.snapshot' },
      async (cmd) => ({ status: 200, body: await takeStockSnapshots(cmd) }),
    );
    return { tenantId, ...(outcome.body as SnapshotResult) };
  });
}
