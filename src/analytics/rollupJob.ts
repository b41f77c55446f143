import { jobCommand } from '../jobs/jobCommand.js';
import { defineTask } from '../jobs/task.js';
import { rollupDailySales, SALE_HAPPENED } from './rollupDailySales.js';
import { forEachTenant } from '../jobs/eachTenant.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Yesterday in UTC: the day that has just closed when the nightly run starts. */
export function previousUtcDay(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 1)).toISOString().slice(0, 10);
}

/**
 * The day a run is for: the one it names, else the UTC day before its cron
 * tick (a tick the worker missed while it was down is backfilled when it
 * starts again, and that run is for the day before the tick, not before now),
 * else yesterday.
 */
export function rollupDayOf(data: { date?: unknown; _cron?: { ts?: unknown } } | null | undefined, now: Date): string {
  if (typeof data?.date === 'string' && DATE.test(data.date)) return data.date;
  const tick = typeof data?._cron?.ts === 'string' ? new Date(data._cron.ts) : undefined;
  return previousUtcDay(tick && !Number.isNaN(tick.getTime()) ? tick : now);
}

/**
 * `analytics.rollup` (nightly, or `{ date: 'YYYY-MM-DD' }` for one day): for
 * every sale recorded or voided that day, the day it happened is rolled up
 * again — that day itself, and earlier days that got a late-synced offline
 * sale or a void — one command per tenant and day under its row-level
 * security.
 */
export const rollupDailySalesJob = defineTask<{ date?: string; _cron?: { ts?: string } }>({
  name: 'analytics.rollup',
  maxAttempts: 3,
  async handle(data, ctx) {
    const day = rollupDayOf(data, new Date());
    const { rows } = await ctx.ownerPool.query<{ tenant_id: string; day: string }>(
      `SELECT DISTINCT s.tenant_id, to_char((${SALE_HAPPENED} AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day
       FROM sales s
       WHERE (s.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
          OR (s.voided_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.voided_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
       ORDER BY 1, 2`,
      [day],
    );
    await forEachTenant(rows, (row) => row.tenant_id, ({ tenant_id: tenantId, day: happened }) =>
      jobCommand(ctx, tenantId, 'analytics.rollup', async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, happened) }), { date: happened }),
    );
    ctx.logger.info({ date: day, days: rows.length }, 'daily sales rolled up');
  },
});
