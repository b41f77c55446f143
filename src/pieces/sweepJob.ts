import { defineTask } from '../jobs/task.js';
import { sweepExpiredPieceReservations } from './sweepExpiredReservations.js';

/** Releases expired piece reservations of every tenant (scheduled every minute in src/jobs/registry.ts). */
export const sweepPieceReservations = defineTask<Record<string, never>>({
  name: 'pieces.reservations.sweep',
  async handle(_data, ctx) {
    const released = await sweepExpiredPieceReservations(ctx.db, { principal: ctx.principal, correlationId: ctx.correlationId });
    if (released > 0) ctx.logger.info({ released }, 'expired piece reservations released');
  },
});
