import { jobCommand } from '../jobs/jobCommand.js';
import { defineTask, PermanentJobError } from '../jobs/task.js';
import { isDayText } from '../http/schemas.js';
import { rollupDailySales, SALE_DAY } from './rollupDailySales.js';
import { forEachTenant } from '../jobs/eachTenant.js';
import { catchUpDailySales, type CatchUpResult } from './catchUpDailySales.js';


/**
 * `analytics.rollup`. Scheduled (nightly, no `date`): for every tenant with a
 * store, one command that catches its figures up with every change to its
 * sales since its last run (catchUpDailySales) — whatever day a change
 * happened on and however long ago the last run was. With
 * `{ date: 'YYYY-MM-DD' }`: for every sale recorded, voided or partly
 * returned that (UTC) day, the day it counts on (SALE_DAY: its money's day,
 * or without money its store's day it happened, in the store's time zone)
 * is rolled up again — that day itself, and earlier days that got a
 * late-synced offline sale, a void or a return — one command per tenant and
 * day under its row-level security. (A return used to be left out: its
 * sale's day kept its revenue before the return until the nightly catch-up.)
 */
export const rollupDailySalesJob = defineTask<{ date?: string }>({
  name: 'analytics.rollup',
  maxAttempts: 3,
  async handle(data, ctx) {
    // A day asked for that is not one (a typo, "yesterday", February 30th)
    // is the asker's mistake: given up at once with the reason, never taken
    // as the scheduled run, nor retried into the same database error.
    if (data?.date !== undefined && (typeof data.date !== 'string' || !isDayText(data.date))) {
      throw new PermanentJobError(`${JSON.stringify(data.date)} is not a day: name one as YYYY-MM-DD`);
    }
    const day = data?.date;
    if (day === undefined) {
      const { rows: tenants } = await ctx.ownerPool.query<{ tenant_id: string }>('SELECT DISTINCT tenant_id FROM stores ORDER BY 1');
      const results = await forEachTenant(tenants, (row) => row.tenant_id, ({ tenant_id: tenantId }) =>
        jobCommand(ctx, tenantId, 'analytics.rollup', async (cmd) => ({ status: 200, body: await catchUpDailySales(cmd) })),
      );
      const days = results.reduce((sum, outcome) => sum + (outcome.body as CatchUpResult).days.length, 0);
      ctx.logger.info({ tenants: tenants.length, days }, 'daily sales caught up');
      return;
    }
    const { rows } = await ctx.ownerPool.query<{ tenant_id: string; day: string }>(
      `SELECT DISTINCT s.tenant_id, to_char(${SALE_DAY}, 'YYYY-MM-DD') AS day
       FROM sales s JOIN stores st ON st.tenant_id = s.tenant_id AND st.id = s.store_id
       WHERE (s.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
          OR (s.voided_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND s.voided_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
          -- partly returned that day (each return, not only the sale's latest: returned_at)
          OR s.id IN (SELECT r.sale_id FROM sale_returns r
                      WHERE r.created_at >= ($1::date)::timestamp AT TIME ZONE 'UTC' AND r.created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC')
       ORDER BY 1, 2`,
      [day],
    );
    await forEachTenant(rows, (row) => row.tenant_id, ({ tenant_id: tenantId, day: happened }) =>
      jobCommand(ctx, tenantId, 'analytics.rollup', async (cmd) => ({ status: 200, body: await rollupDailySales(cmd, happened) }), { date: happened }),
    );
    ctx.logger.info({ date: day, days: rows.length }, 'daily sales rolled up');
  },
});
