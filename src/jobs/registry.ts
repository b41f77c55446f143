import { integrityNightly } from '../integrity/nightlyJob.js';
import { purgeIdempotencyKeys } from './housekeeping.js';
import type { Config } from '../config.js';
import { recoverOrder, sweepStuckOrders } from '../orders/recoverOrderJob.js';
import { submitOrder } from '../orders/submitOrderJob.js';
import type { TaskDefinition } from './task.js';
import { sweepPieceReservations } from '../pieces/sweepJob.js';
import { stockSnapshotsNightly } from '../inventory/snapshotJob.js';

/**
 * Every task the worker runs. A part adds its own here (its handler lives in
 * its folder, e.g. src/orders/submitOrderJob.ts).
 */
export const allTasks: TaskDefinition[] = [purgeIdempotencyKeys, integrityNightly, sweepPieceReservations, submitOrder, recoverOrder, sweepStuckOrders, stockSnapshotsNightly];

/**
 * Periodic jobs (graphile-worker crontab syntax, UTC). `jobKey` makes two
 * worker processes enqueue one job per tick, not two. Slots for nightly stock
 * snapshots and the daily analytics rollup: add a line and a task above.
 */
export const crontabLines: string[] = [
  '17 * * * * idempotency.purge ?max=1&jobKey=cron:idempotency.purge',
  '30 2 * * * integrity.run ?max=1&jobKey=cron:integrity.run',
  '10 0 * * * stock.snapshots ?max=1&jobKey=cron:stock.snapshots',
  '* * * * * pieces.reservations.sweep ?max=1&jobKey=cron:pieces.reservations.sweep',
];

export const crontab = crontabLines.join('\n');

/**
 * Jobs enqueued by every worker on a timer finer than cron's minute (job key:
 * however many workers, one waiting job). The stuck-order sweep runs at half
 * the stuck threshold, so an order is recovered at most 1.5× that late.
 */
export function periodicJobs(config: Config): Array<{ task: string; everyMs: number }> {
  return [{ task: 'orders.sweep', everyMs: Math.min(60_000, Math.max(200, (config.ordersStuckAfterSeconds * 1000) / 2)) }];
}
