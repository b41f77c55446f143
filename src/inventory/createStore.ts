import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, maybeOne, one, type Tx } from '../core/db.js';
import { AppError, notFound, validationFailed } from '../core/errors.js';
import { assertExpectedVersion, type ExpectedVersions } from '../core/expectedVersions.js';
import { newId } from '../core/ids.js';
import { PG, pgCode } from '../core/pgErrors.js';
import { SALE_DAY, SALE_FIGURES } from '../analytics/rollupDailySales.js';
import type { StoreRow } from './inventory.table.js';
import { STORE_COLUMNS } from './queries.js';

/**
 * A time zone a store may take: a name in PostgreSQL's own zone list
 * (pg_timezone_names — the zones AT TIME ZONE knows, e.g. 'America/New_York',
 * 'UTC'), exactly as listed. Anything else is a 400 at `path`.
 */
async function assertKnownTimeZone(tx: Tx, timeZone: string, path: string): Promise<void> {
  const { known } = await one(tx, sql<{ known: boolean }>`SELECT is_known_time_zone(${timeZone}) AS known`);
  if (!known) throw validationFailed(path, `is not a time zone PostgreSQL knows (an IANA name such as "America/New_York", or "UTC")`);
}

export async function createStore(cmd: Command, input: { code: string; name: string; time_zone?: string }): Promise<StoreRow> {
  const id = newId();
  const timeZone = input.time_zone ?? 'UTC';
  await assertKnownTimeZone(cmd.tx, timeZone, '/body/time_zone');
  try {
    const store = await one(
      cmd.tx,
      sql<StoreRow>`
        INSERT INTO stores (tenant_id, id, code, name, time_zone, op_id) VALUES (${cmd.tenantId}, ${id}, ${input.code}, ${input.name}, ${timeZone}, ${cmd.opId})
        RETURNING ${STORE_COLUMNS}`,
    );
    cmd.storeId = id;
    cmd.touch('stores', id);
    cmd.audit({ subjectType: 'store', subjectId: id, after: store });
    return store;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION) {
      throw new AppError('already_exists', `a store with code "${input.code}" already exists`, { cause: error });
    }
    throw error;
  }
}

/**
 * A store's "today" in `timeZone` must not be before its latest counted day
 * (a settlement of any status: a rejected count's day stays closed too, and
 * is recounted). Money arriving after a count is booked on the first day not
 * counted (open_business_date_on), and a day can be counted only once it has
 * started in the store's zone: a store whose today (in a zone far ahead, say
 * UTC+14) was counted, moved to a zone whose today is a day or two earlier
 * (UTC−11), books its next sales on the counted day + 1 — a day its new
 * clock has not reached, so that cash could not be counted for two or three
 * days. The change is refused instead (409 `conflict`, nothing changed): a
 * business date stays the store's own day, one its clock has reached. It is
 * allowed from the first moment of the counted day in the new zone
 * (`allowed_from`). The store row is locked (FOR NO KEY UPDATE, by the
 * caller) and a count reads the zone FOR SHARE (submitSettlement), which
 * conflict: a count submitted meanwhile is either seen here or checked
 * against the new zone.
 */
async function assertTodayNotBeforeLatestCount(cmd: Command, storeId: string, timeZone: string): Promise<void> {
  const ahead = await maybeOne(
    cmd.tx,
    sql<{ latest: string; today: string; allowed_from: Date }>`
      SELECT to_char(c.latest, 'YYYY-MM-DD') AS latest, to_char(store_day(${timeZone}, now()), 'YYYY-MM-DD') AS today,
             c.latest::timestamp AT TIME ZONE ${timeZone} AS allowed_from
      FROM (SELECT max(business_date) AS latest FROM settlements WHERE tenant_id = ${cmd.tenantId} AND store_id = ${storeId}) c
      WHERE c.latest > store_day(${timeZone}, now())`,
  );
  if (!ahead) return;
  throw new AppError(
    'conflict',
    `the store's latest count is of ${ahead.latest}, after its today in ${timeZone} (${ahead.today}): money it takes next would be booked on a day ` +
      `that has not started there and could not be counted; the change is possible from ${ahead.allowed_from.toISOString()}`,
    { extra: { latest_counted_day: ahead.latest, today_in_time_zone: ahead.today, allowed_from: ahead.allowed_from.toISOString() } },
  );
}

/**
 * Changes a store's time zone — not to one whose today is before the store's
 * latest counted day (assertTodayNotBeforeLatestCount: 409, nothing changed).
 * What is booked stays booked: journal entries keep their business_date and
 * settlements their day (a counted day stays closed; open_business_date
 * moves new money past the latest count). From the change on, moments
 * become days in the new zone. The store's daily sales figures are derived
 * from its sales, so they are recomputed in the new zone in this same
 * command, by the rollup's rule (SALE_DAY): every day that has figures or
 * sales (a day that no longer has any gets zeros). A sale with money keeps
 * counting on its entry's day; only a sale without an entry (a total of 0)
 * moves, to the new zone's day it happened. Rollups of the tenant and their
 * catch-up take turns with this (the store row is locked here; they read the
 * zones FOR SHARE), and so do counts (they read the zone FOR SHARE).
 *
 * The lock is FOR NO KEY UPDATE, not FOR UPDATE: every sale's foreign-key
 * check takes FOR KEY SHARE on its store row, which FOR UPDATE conflicts
 * with, so while the recompute (a GROUP BY over every sale of the store)
 * ran, every sale of the store waited — and behind it, in the tenant's
 * group-commit lane, every sale of every store of the tenant. Sales now run
 * on. One that reads the zone before this commits (postJournals) books its
 * money in the old zone, as if it came just before the change (what is
 * booked stays booked); one that commits after the recompute's snapshot is
 * not counted by these figures, which keep that snapshot (computed_snapshot):
 * the catch-up recomputes its day, and daily_sales_rollup_matches_sales does
 * not report it meanwhile. What must not interleave with the change still
 * conflicts with this lock: a count (FOR SHARE), a rollup and its catch-up
 * (FOR SHARE: the catch-up reads the changes in the new zone and sees these
 * figures), another change of the zone (FOR NO KEY UPDATE).
 */
async function changeTimeZone(cmd: Command, before: StoreRow, timeZone: string, version: number): Promise<StoreRow> {
  const storeId = before.id;
  if (before.time_zone === timeZone) return before;
  await assertTodayNotBeforeLatestCount(cmd, storeId, timeZone);
  const store = await one(
    cmd.tx,
    sql<StoreRow>`UPDATE stores SET time_zone = ${timeZone}, version = ${version} WHERE tenant_id = ${cmd.tenantId} AND id = ${storeId} RETURNING ${STORE_COLUMNS}`,
  );
  // st: the store row as updated above (its new zone). (This comment is kept
  // out of the statement: pg_stat_activity shows a statement's first 1 kB,
  // and a test watching the recompute wait looks for its INSERT there.)
  const recomputed = await all(
    cmd.tx,
    sql<{ business_date: string }>`
      WITH day AS (
        SELECT ${sql.raw(SALE_DAY)} AS business_date, ${sql.raw(SALE_FIGURES)}
        FROM sales s JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
        WHERE s.tenant_id = ${cmd.tenantId} AND s.store_id = ${storeId}
        GROUP BY 1
      ), every_day AS (
        SELECT * FROM day
        UNION ALL
        SELECT r.business_date, 0, 0, 0 FROM daily_sales_rollups r
        WHERE r.tenant_id = ${cmd.tenantId} AND r.store_id = ${storeId} AND r.business_date NOT IN (SELECT business_date FROM day)
      )
      INSERT INTO daily_sales_rollups (tenant_id, id, store_id, business_date, sales_count, voided_count, revenue, op_id, computed_by_op, computed_snapshot)
      SELECT ${cmd.tenantId}, gen_random_uuid(), ${storeId}, d.business_date, d.sales_count, d.voided_count, d.revenue, ${cmd.opId}, ${cmd.opId},
             pg_current_snapshot()
      FROM every_day d
      ORDER BY d.business_date
      ON CONFLICT (tenant_id, store_id, business_date) DO UPDATE
        SET sales_count = EXCLUDED.sales_count, voided_count = EXCLUDED.voided_count, revenue = EXCLUDED.revenue,
            computed_by_op = EXCLUDED.computed_by_op, computed_at = now(), computed_snapshot = EXCLUDED.computed_snapshot
      RETURNING business_date::text AS business_date`,
  );
  cmd.touch('stores', storeId, 'updated');
  for (const row of recomputed) cmd.touch('daily_sales_rollups', `${storeId}/${row.business_date}`, 'updated');
  cmd.audit({ subjectType: 'store', subjectId: storeId, before, after: { ...store, daily_sales_recomputed: recomputed.length } });
  return store;
}

/**
 * PATCH /v1/stores/{id}: its name and/or its time zone (changeTimeZone), in
 * one transaction under the store row's lock (FOR NO KEY UPDATE: see
 * changeTimeZone) — a zone refused (409) changes the name neither. Each
 * change is audited on its own (`before`, `after`); the same values change
 * nothing. `expected` (If-Match): the versions the caller changes it from —
 * another is 412 version_conflict, nothing changed. A PATCH that changes
 * something moves the version on by 1, whether it changes one field or both.
 */
export async function updateStore(
  cmd: Command,
  storeId: string,
  input: { name?: string | undefined; time_zone?: string | undefined },
  expected?: ExpectedVersions,
): Promise<StoreRow> {
  if (input.time_zone !== undefined) await assertKnownTimeZone(cmd.tx, input.time_zone, '/body/time_zone');
  let store = await maybeOne(cmd.tx, sql<StoreRow>`SELECT ${STORE_COLUMNS} FROM stores WHERE tenant_id = ${cmd.tenantId} AND id = ${storeId} FOR NO KEY UPDATE`);
  if (!store) throw notFound('store');
  cmd.storeId = store.id;
  assertExpectedVersion(expected, store.version, 'store');
  const next = store.version + 1;
  if (input.name !== undefined && input.name !== store.name) {
    const before = store;
    store = await one(cmd.tx, sql<StoreRow>`UPDATE stores SET name = ${input.name}, version = ${next} WHERE tenant_id = ${cmd.tenantId} AND id = ${storeId} RETURNING ${STORE_COLUMNS}`);
    cmd.touch('stores', storeId, 'updated');
    cmd.audit({ subjectType: 'store', subjectId: storeId, before, after: store });
  }
  return input.time_zone === undefined ? store : changeTimeZone(cmd, store, input.time_zone, next);
}
