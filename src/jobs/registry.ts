import { integrityNightly } from '../integrity/nightlyJob.js';
import { purgeIdempotencyKeys } from './housekeeping.js';
import type { Config } from '../config.js';
import { pollOrder, recoverOrder, sweepStuckOrders } from '../orders/recoverOrderJob.js';
import { submitOrder } from '../orders/submitOrderJob.js';
import { cancelAtProvider } from '../orders/cancelAtProviderJob.js';
import type { CronItem } from 'graphile-worker';
import type { TaskDefinition } from './task.js';
import { sweepPieceReservations } from '../pieces/sweepJob.js';
import { stockSnapshotsNightly } from '../inventory/snapshotJob.js';
import { rollupDailySalesJob } from '../analytics/rollupJob.js';

/**
 * Every task the worker runs. A part adds its own here (its handler lives in
 * its folder, e.g. src/orders/submitOrderJob.ts).
 */
export const allTasks: TaskDefinition[] = [purgeIdempotencyKeys, integrityNightly, sweepPieceReservations, submitOrder, recoverOrder, pollOrder, cancelAtProvider, sweepStuckOrders, stockSnapshotsNightly, rollupDailySalesJob];

/** How far back a starting worker runs the nightly checks it missed: the last night's tick, whenever it starts. */
const INTEGRITY_BACKFILL_MS = 25 * 60 * 60 * 1000;

/** How far back a starting worker runs the nightly rollups it missed. */
const ANALYTICS_BACKFILL_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Periodic jobs (UTC). Given to graphile-worker as parsed items, not crontab
 * text: its crontab syntax does not allow the dots in our task names. The
 * cron identifier makes graphile-worker enqueue one job per tick however many
 * workers run. Add a line here (and its task above) for new periodic work,
 * e.g. the daily analytics rollup.
 */
export const cronItems: CronItem[] = [
  { task: 'idempotency.purge', match: '17 * * * *', options: { backfillPeriod: 0, maxAttempts: 1, jobKey: 'cron:idempotency.purge' } },
  { task: 'stock.snapshots', match: '10 0 * * *', options: { backfillPeriod: 0, jobKey: 'cron:stock.snapshots' } },
  // A night missed while no worker ran (a deploy or restart at 00:20) is
  // backfilled when one starts again, so the figures catch up then rather
  // than the next night (each run catches up every change since the last
  // one, so the first backfilled tick does the work and the others find
  // nothing new: redundant, but cheap). No job key, as before.
  { task: 'analytics.rollup', match: '20 0 * * *', options: { backfillPeriod: ANALYTICS_BACKFILL_MS } },
  // A night's checks missed while no worker ran (a deploy or restart at
  // 02:30) are run when one starts again, within a day (the job key makes
  // the ticks of several missed nights one run): a night without checks
  // went unseen until the next one.
  { task: 'integrity.run', match: '30 2 * * *', options: { backfillPeriod: INTEGRITY_BACKFILL_MS, jobKey: 'cron:integrity.run' } },
  { task: 'pieces.reservations.sweep', match: '* * * * *', options: { backfillPeriod: 0, maxAttempts: 1, jobKey: 'cron:pieces.reservations.sweep' } },
];

/**
 * Whether a job key is a periodic job's: its cron item's (`cron:<task>`) or a
 * timer's (the task name). The next tick reuses that key, so a retry must not.
 */
export function isPeriodicKey(key: string, task: string): boolean {
  return key === `cron:${task}` || key === task;
}

/**
 * Jobs enqueued by every worker on a timer finer than cron's minute (job key:
 * however many workers, one waiting job). The stuck-order sweep runs at half
 * the stuck threshold, so an order is recovered at most 1.5× that late.
 */
export function periodicJobs(config: Config): Array<{ task: string; everyMs: number }> {
  return [{ task: 'orders.sweep', everyMs: Math.min(60_000, Math.max(200, (config.ordersStuckAfterSeconds * 1000) / 2)) }];
}
