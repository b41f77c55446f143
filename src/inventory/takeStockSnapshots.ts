import { sql, type RawBuilder } from 'kysely';
import { all, andIf, lockNamed, one, type Db, type Executor } from '../core/db.js';
import { fingerprintRequest, runCommand, type Command, type CommandInput, type CommandOutcome, type CommandSpec } from '../core/command.js';
import { assert } from '../core/errors.js';
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
 * How many UTC days one step of a snapshot run sums, at most: each step is
 * its own command (one transaction), so no statement reads more than this
 * many days of the ledger, however long the tenant went without a run (a
 * first run over years of history, a worker down for weeks). One day: no
 * step does more than the nightly run of a day does.
 */
export const SNAPSHOT_STEP_DAYS = 1;

/**
 * The last day a run may snapshot (YYYY-MM-DD): `through`, but at the latest
 * the last UTC day that ended SNAPSHOT_SETTLE_MINUTES ago (by the database's
 * clock). A run fixes it once, before its first step, so every step goes up
 * to the same day.
 */
export async function snapshotBound(db: Executor, through?: string): Promise<string> {
  const bound = await one(
    db,
    sql<{ day: string }>`
      SELECT least(coalesce(${through ?? null}::date, 'infinity'::date),
                   ((now() - make_interval(mins => ${SNAPSHOT_SETTLE_MINUTES})) AT TIME ZONE 'UTC')::date - 1)::text AS day`,
  );
  return bound.day;
}

/**
 * Where the next step of a tenant's run starts and ends (SQL): `after_last`,
 * the day after its latest snapshot (null: none yet); `through_date`, the
 * run's last day (`through`, at the latest the last that ended
 * SNAPSHOT_SETTLE_MINUTES ago); `from_date`, the first day on or after
 * `after_last` with a ledger row (null: none) — the days between have no
 * change to snapshot, so a gap without movements costs nothing; `step_through`,
 * the last day of this step (`days` days from `from_date`, at most
 * `through_date`).
 *
 * `from_date` is each pair's first ledger row from `after_last` on, found by
 * index (stock_ledger_history_idx, one probe per pair of the tenant), never a
 * read of the ledger since the gap began. Its lower bound is a CASE, not a
 * COALESCE, for the reason stockAsOf gives (under row-level security only a
 * CASE is taken as an index condition). stockHistoryPlans.int.spec.ts.
 */
export function snapshotStepBounds(
  tenantId: string,
  through: string | undefined,
  days: number,
): RawBuilder<{ after_last: string | null; through_date: string; from_date: string | null; step_through: string | null }> {
  return sql`
    WITH last AS (
      SELECT max(snapshot_date) AS day FROM stock_snapshots WHERE tenant_id = ${tenantId}
    ), bound AS (
      SELECT least(coalesce(${through ?? null}::date, 'infinity'::date),
                   ((now() - make_interval(mins => ${SNAPSHOT_SETTLE_MINUTES})) AT TIME ZONE 'UTC')::date - 1) AS day
    ), first AS (
      SELECT (min(f.created_at) AT TIME ZONE 'UTC')::date AS day
      FROM stock_balances b
      CROSS JOIN LATERAL (
        SELECT l.created_at FROM stock_ledger l
        WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
          AND l.created_at >= CASE WHEN (SELECT day FROM last) IS NULL THEN '-infinity'::timestamptz
                                   ELSE ((SELECT day FROM last) + 1)::timestamp AT TIME ZONE 'UTC' END
        ORDER BY l.created_at LIMIT 1
      ) f
      WHERE b.tenant_id = ${tenantId}
    )
    SELECT ((SELECT day FROM last) + 1)::text AS after_last, (SELECT day FROM bound)::text AS through_date,
           (SELECT day FROM first)::text AS from_date,
           least((SELECT day FROM first) + ${days}::int - 1, (SELECT day FROM bound))::text AS step_through`;
}

/**
 * One step of a tenant's snapshot run: writes the daily balance snapshots of
 * the command's tenant for at most `days` days (SNAPSHOT_STEP_DAYS) after
 * its latest snapshot, up to `through` (default: the last UTC day that ended
 * SNAPSHOT_SETTLE_MINUTES ago), in one set-based statement:
 *
 *   snapshot(pair, D) = latest earlier snapshot of the pair
 *                       + running sum of the pair's ledger rows per day.
 *
 * Only (store, SKU, day) with ledger rows get a row; a pair's latest snapshot
 * on or before a day is its balance at the end of that day. Idempotent: days
 * already snapshotted are skipped. The answer's `through` is the last day
 * this step went up to (null: every day up to `through` was already taken);
 * it is `through` (its bound) once nothing is left. A step writes whole days
 * in its one transaction, so a day is snapshotted completely or not at all,
 * and a run stopped between steps (a crash, a deploy) is continued by the
 * next run from its latest snapshot. takeStockSnapshotsInSteps runs the steps.
 *
 * Runs of one tenant are serialized: the nightly job and a manager's
 * `POST /v1/stock/snapshots` at once would otherwise both read the same
 * latest snapshot, and the later INSERT would add the earlier run's rows to
 * its own sums (days counted twice, in rows that are never rewritten). The
 * transaction-scoped advisory lock is taken before the bounds are read, so a
 * run that waited reads the bounds the other run left (READ COMMITTED: each
 * statement sees what committed before it started). As a second wall, the
 * base of every sum is the latest snapshot before the step's first day, so
 * rows committed while the step is under way cannot change what it computes.
 */
export async function takeStockSnapshots(cmd: Command, through?: string, days: number = SNAPSHOT_STEP_DAYS): Promise<SnapshotResult> {
  assert(Number.isInteger(days) && days >= 1, 'a snapshot step sums at least one day');
  const { tx, tenantId, opId } = cmd;
  await lockNamed(tx, `stock-snapshots/${tenantId}`);
  const bounds = await one(tx, snapshotStepBounds(tenantId, through, days));
  if (bounds.after_last !== null && bounds.after_last > bounds.through_date) return { through: null, snapshots_written: 0 };
  let count = 0;
  let reached = bounds.through_date;
  // The days this step sums: from the first with a ledger row, SNAPSHOT_STEP_DAYS at most (none: no movement up to the bound).
  let summed: { from: string; through: string } | null = null;
  if (bounds.from_date !== null && bounds.step_through !== null && bounds.from_date <= bounds.through_date) {
    reached = bounds.step_through;
    summed = { from: bounds.from_date, through: reached };
    const written = await all(
      tx,
      sql<{ n: number }>`
        WITH daily AS (${ledgerDays(tenantId, bounds.from_date, reached)}), inserted AS (
          INSERT INTO stock_snapshots (tenant_id, store_id, sku_id, snapshot_date, quantity, op_id)
          SELECT ${tenantId}, d.store_id, d.sku_id, d.day,
                 coalesce(base.quantity, 0) + sum(d.change) OVER (PARTITION BY d.store_id, d.sku_id ORDER BY d.day),
                 ${opId}
          FROM daily d
          LEFT JOIN LATERAL (
            SELECT s.quantity FROM stock_snapshots s
            WHERE s.tenant_id = ${tenantId} AND s.store_id = d.store_id AND s.sku_id = d.sku_id
              AND s.snapshot_date < ${bounds.from_date}::date
            ORDER BY s.snapshot_date DESC LIMIT 1
          ) base ON true
          ON CONFLICT DO NOTHING
          RETURNING 1
        )
        SELECT count(*)::int AS n FROM inserted`,
    );
    count = written[0]?.n ?? 0;
  }
  const from = bounds.after_last ?? bounds.from_date ?? 'start';
  cmd.touch('stock_snapshots', `${from}..${reached}`, 'created');
  cmd.audit({ subjectType: 'stock_snapshots', subjectId: reached, after: { from: bounds.after_last, through: reached, written: count, summed } });
  return { through: reached, snapshots_written: count };
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

/** The command each step of a snapshot run is (`stock.snapshot`). */
export const SNAPSHOT_COMMAND: CommandSpec = { type: 'stock.snapshot' };

/**
 * A tenant's snapshot run, in steps (takeStockSnapshots), each its own
 * command and transaction, up to `through` (at the latest the last day that
 * ended SNAPSHOT_SETTLE_MINUTES ago, fixed before the first step:
 * snapshotBound): however many days are due, no statement sums more than
 * SNAPSHOT_STEP_DAYS of them. The answer is the run's: the last day it went
 * up to (null when every day up to the bound was already taken) and the rows
 * all its steps wrote.
 *
 * The steps are commands without a key. With an Idempotency-Key (`input`),
 * one more step runs as the keyed command (it normally finds nothing left)
 * and its answer, the run's, is the one stored for replay; the caller holds
 * the key for the whole run (holdingIdempotencyKey), on the connection `db`.
 * A run stopped between steps leaves complete days behind; run again, it
 * continues after them.
 */
export async function takeStockSnapshotsInSteps(db: Db, input: CommandInput, through?: string): Promise<CommandOutcome> {
  const bound = await snapshotBound(db, through);
  const unkeyed: CommandInput = { ...input, idempotencyKey: undefined, formerIdempotencyKeys: undefined };
  let reached: string | null = null;
  let written = 0;
  let last: CommandOutcome | undefined;
  for (;;) {
    last = await runCommand(db, unkeyed, SNAPSHOT_COMMAND, async (cmd) => ({ status: 200, body: await takeStockSnapshots(cmd, bound) }));
    const step = last.body as SnapshotResult;
    written += step.snapshots_written;
    reached = step.through ?? reached;
    if (step.through === null || step.through === bound) break;
    // A step that stops short of the bound wrote its first day (one with ledger rows): the next starts after it.
    assert(step.snapshots_written > 0, `snapshot step up to ${step.through} (bound ${bound}) wrote nothing`);
  }
  if (input.idempotencyKey === undefined) return { ...last, body: { through: reached, snapshots_written: written } satisfies SnapshotResult };
  return runCommand(db, input, SNAPSHOT_COMMAND, async (cmd) => {
    const step = await takeStockSnapshots(cmd, bound);
    return { status: 200, body: { through: step.through ?? reached, snapshots_written: written + step.snapshots_written } satisfies SnapshotResult };
  });
}

/**
 * Runs takeStockSnapshotsInSteps for every tenant holding stock, each step
 * its own operation, one tenant's failure not stopping the others
 * (forEachTenant). For the nightly job; `POST /v1/stock/snapshots` runs it
 * for one tenant now. Needs a pool as the app role, like every command.
 * `principal` is who the operations name as their actor (the job's: `worker`).
 */
export async function takeAllStockSnapshots(
  db: Db,
  principal: Principal,
  correlationId = `snapshots-${newId()}`,
): Promise<Array<{ tenantId: string } & SnapshotResult>> {
  const tenants = await all(db, sql<{ id: string }>`SELECT tenants_with_stock() AS id`);
  return forEachTenant(tenants, (tenant) => tenant.id, async ({ id: tenantId }) => {
    const outcome = await takeStockSnapshotsInSteps(db, { tenantId, principal, correlationId, fingerprint: fingerprintRequest('JOB', 'stock.snapshot', { tenantId }) });
    return { tenantId, ...(outcome.body as SnapshotResult) };
  });
}
