import { defineTask } from './task.js';

/** Removes expired idempotency records (owner-run function; the app role sees one tenant at a time). */
export const purgeIdempotencyKeys = defineTask<Record<string, never>>({
  name: 'idempotency.purge',
  async handle(_data, ctx) {
    let removed = 0;
    for (;;) {
      const result = await ctx.ownerPool.query<{ removed: number }>('SELECT purge_expired_idempotency_keys(10000) AS removed');
      const batch = Number(result.rows[0]?.removed ?? 0);
      removed += batch;
      if (batch < 10000) break;
    }
    ctx.logger.info({ removed }, 'expired idempotency keys purged');
  },
});
