import { integrityNightly } from '../integrity/nightlyJob.js';
import { purgeIdempotencyKeys } from './housekeeping.js';
import type { TaskDefinition } from './task.js';
import { sweepPieceReservations } from '../pieces/sweepJob.js';

/**
 * Every task the worker runs. A part adds its own here (its handler lives in
 * its folder, e.g. src/orders/submitOrderJob.ts).
 */
export const allTasks: TaskDefinition[] = [purgeIdempotencyKeys, integrityNightly, sweepPieceReservations];

/**
 * Periodic jobs (graphile-worker crontab syntax, UTC). `jobKey` makes two
 * worker processes enqueue one job per tick, not two. Slots for nightly stock
 * snapshots and the daily analytics rollup: add a line and a task above.
 */
export const crontabLines: string[] = [
  '17 * * * * idempotency.purge ?max=1&jobKey=cron:idempotency.purge',
  '30 2 * * * integrity.run ?max=1&jobKey=cron:integrity.run',
  '* * * * * pieces.reservations.sweep ?max=1&jobKey=cron:pieces.reservations.sweep',
];

export const crontab = crontabLines.join('\n');
