import { defineTask } from '../jobs/task.js';
import { takeAllStockSnapshots } from './takeStockSnapshots.js';

/** Nightly: daily stock balance snapshots for every tenant holding stock (see takeStockSnapshots). */
export const stockSnapshotsNightly = defineTask<Record<string, unknown>>({
  name: 'stock.snapshots',
  maxAttempts: 3,
  async handle(_data, ctx) {
    const results = await takeAllStockSnapshots(ctx.db, ctx.principal, ctx.correlationId);
    ctx.logger.info({ tenants: results.length, snapshots: results.reduce((sum, result) => sum + result.snapshots_written, 0) }, 'stock snapshots taken');
  },
});
