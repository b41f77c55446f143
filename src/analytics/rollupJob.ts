import { jobCommand } from '../jobs/jobCommand.js';
import { defineTask } from '../jobs/task.js';
import { rollupDailySales, SALE_HAPPENED } from './rollupDailySales.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Yesterday in UTC: the day that has just closed when the nightly run starts. */
export function previousUtcDay(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 1)).toISOString().slice(0, 10);
}

/**
 * `analytics.rollup` (nightly, or `{ date: 'YYYY-MM-DD' }` for one day): for
 * every sale recorded or voided that day, the day it happened is rolled up
 * again — that day itself, and earlier days that got a late-synced offline
 * sale or a void — one command per tenant and day under its row-level
 * security.
 */
export const rollupDailySalesJob = defineTask<{ date?: string }>({
  name: 'analytics.rollup',
  maxAttempts: 3,
  async handle(data, ctx) {
    const day = typeof data?.date === 'string' && DATE.test(data.date) ? data.date : previousUtcDay(new Date());
    const { rows } = await ctx.ownerPool.query<{ tenant_id: string; day: string }>(
      `SELECT DISTINCT s.tenant_id, to_char((${SALE_HAPPENED} AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day
       FROM sales s
       WHERE (s.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
          OR (s.voided_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.voided_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
       ORDER BY 1, 2`,
      [day],
    );
    for (const { tenant_id: tenantId, day: happened } of rows) {
      await jobCommand(ctx, tenantId, 'analytics.rollup', async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, happened) }), { date: happened });
    }
    ctx.logger.info({ date: day, days: rows.length }, 'daily sales rolled up');
  },
});
