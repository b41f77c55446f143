import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne, one } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { PG, pgCode, pgConstraint } from '../core/pgErrors.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import { getTenantSettings } from '../tenancy/updateTenantSettings.js';
import { drawerMovements, SETTLEMENT_COLUMNS } from './queries.js';
import { computeSettlement } from './settlementMath.js';
import type { SettlementRow } from './settlements.table.js';

export interface SettlementInput {
  store_id: string;
  /** 'YYYY-MM-DD': the store's day (in its time zone); not after its today. */
  business_date: string;
  declared_cash: number;
  note?: string | undefined;
}

/**
 * Submit: the expected cash (tenant float + the day's drawer movements from the
 * ledger), the declared cash and the variance, recorded in one transaction. A
 * store-day may have one settlement submitted or approved at a time (database
 * unique index): a second submission is `409 already_exists` until the first
 * is rejected.
 */
export async function submitSettlement(cmd: Command, input: SettlementInput): Promise<SettlementRow> {
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  // "Today" is the store's: the day on its wall clock (store_day, its time zone).
  // Its zone is read FOR SHARE, kept until this count commits: a change of
  // the zone (which locks the store row FOR UPDATE, then refuses a zone whose
  // today is before the latest count) waits for this count and sees it, or
  // this waits for the change and checks the day against the new zone. Read
  // plainly, both went through: a count of a day the new zone has not reached.
  const today = await one(
    cmd.tx,
    sql<{ today: string; time_zone: string }>`
      SELECT to_char(store_day(time_zone, now()), 'YYYY-MM-DD') AS today, time_zone FROM stores
      WHERE tenant_id = ${cmd.tenantId} AND id = ${input.store_id} FOR SHARE`,
  );
  if (input.business_date > today.today) {
    throw new AppError('validation_failed', 'a day can only be settled once it has started', {
      errors: [{ path: '/body/business_date', message: `is after today (${today.today}, ${today.time_zone})` }],
    });
  }
  // Entries of this store-day hold a shared lock on it while they are written
  // (open_business_date, migration 0802): wait for them, and make later ones
  // move to the next day, so the figures below are final.
  await sql`SELECT pg_advisory_xact_lock(settlement_day_lock_key(${cmd.tenantId}::uuid, ${input.store_id}::uuid, ${input.business_date}::date))`.execute(cmd.tx);
  // A recount (the day's earlier count was rejected) is checked against the
  // same figures as the first count — its float too: the drawer started the
  // day with that float, whatever the setting says since.
  const counted = await maybeOne(
    cmd.tx,
    sql<{ float_amount: number }>`
      SELECT float_amount FROM settlements
      WHERE tenant_id = ${cmd.tenantId} AND store_id = ${input.store_id} AND business_date = ${input.business_date}::date
      ORDER BY created_at, id LIMIT 1`,
  );
  const float = counted ? counted.float_amount : ((await getTenantSettings(cmd.tx, cmd.tenantId)).settlement_float ?? 0);
  const movements = { float, ...(await drawerMovements(cmd.tx, cmd.tenantId, input.store_id, input.business_date)) };
  const figures = computeSettlement(movements, input.declared_cash);
  const id = newId();
  try {
    const settlement = await one(
      cmd.tx,
      sql<SettlementRow>`
        INSERT INTO settlements (tenant_id, id, store_id, business_date, float_amount, cash_sales, cash_voids, cash_returns, payments_in, payments_out,
                                 other_cash, expected_cash, declared_cash, variance, note, submitted_by, op_id)
        VALUES (${cmd.tenantId}, ${id}, ${input.store_id}, ${input.business_date}::date, ${movements.float}, ${movements.cashSales},
                ${movements.cashVoids}, ${movements.cashReturns}, ${movements.paymentsIn}, ${movements.paymentsOut}, ${movements.otherCash},
                ${figures.expected_cash}, ${figures.declared_cash}, ${figures.variance}, ${input.note ?? null}, ${cmd.actor}, ${cmd.opId})
        RETURNING ${SETTLEMENT_COLUMNS}`,
    );
    cmd.storeId = input.store_id;
    cmd.touch('settlements', id);
    cmd.audit({ subjectType: 'settlement', subjectId: id, after: settlement });
    return settlement;
  } catch (error) {
    if (pgCode(error) === PG.UNIQUE_VIOLATION && pgConstraint(error)?.startsWith('settlements_one_')) {
      throw new AppError('already_exists', `store ${input.store_id} already has a submitted or approved settlement for ${input.business_date}`, { cause: error });
    }
    throw error;
  }
}
