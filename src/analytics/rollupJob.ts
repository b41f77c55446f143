import { jobCommand } from '../jobs/jobCommand.js';
import { defineTask } from '../jobs/task.js';
import { rollupDailySales } from './rollupDailySales.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Yesterday in UTC: the day that has just closed when the nightly run starts. */
export function previousUtcDay(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 1)).toISOString().slice(0, 10);
}

/**
 * `analytics.rollup` (nightly, or `{ date: 'YYYY-MM-DD' }` for one day):
 * daily sales figures for every tenant that sold that day, one command per
 * tenant under its row-level security.
 */
export const rollupDailySalesJob = defineTask<{ date?: string }>({
  name: 'analytics.rollup',
  maxAttempts: 3,
  async handle(data, ctx) {
    const day = typeof data?.date === 'string' && DATE.test(data.date) ? data.date : previousUtcDay(new Date());
    const { rows } = await ctx.ownerPool.query<{ tenant_id: string }>(
      `SELECT DISTINCT tenant_id FROM sales
       WHERE created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'`,
      [day],
    );
    for (const { tenant_id: tenantId } of rows) {
      await jobCommand(ctx, tenantId, 'analytics.rollup', async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, day) }), { date: day });
    }
    ctx.logger.info({ date: day, tenants: rows.length }, 'daily sales rolled up');
  },
});
